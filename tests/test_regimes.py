"""Market regimes: recovery of constructed regimes, names from centres, determinism, JSON round trip, fit-window
scaling, current regime, error by regime, causal labelling, and the real hourly coins."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, local_store, shared_prices, simulated_prices
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from cryptosentinel.config import DataValidationError
from cryptosentinel.features import FEATURE_VERSION
from cryptosentinel.regime_outputs import (
    CURRENT_LOOKBACK,
    fig_explained_variance,
    fig_pca_scatter,
    fig_regime_price,
    latest_regimes,
)
from cryptosentinel.regimes import (
    REGIME_FEATURES,
    RegimeModel,
    current_regimes,
    error_by_regime,
    fit_pca,
    fit_regimes,
    label_causally,
    name_centres,
    regime_name,
)

pytestmark = pytest.mark.model

# raw-unit centres of four clearly separated regimes: two volatility levels x two trends
CALM_UP = dict(vol_24=0.004, vol_168=0.005, ret_24=0.01, ret_168=0.15, close_sma_168=0.06, drawdown_168=-0.02,
               rsi_14=60.0)
CALM_DOWN = dict(vol_24=0.004, vol_168=0.005, ret_24=-0.01, ret_168=-0.15, close_sma_168=-0.06, drawdown_168=-0.12,
                 rsi_14=40.0)
VOL_UP = dict(vol_24=0.03, vol_168=0.035, ret_24=0.01, ret_168=0.15, close_sma_168=0.06, drawdown_168=-0.05,
              rsi_14=60.0)
VOL_DOWN = dict(vol_24=0.03, vol_168=0.035, ret_24=-0.01, ret_168=-0.15, close_sma_168=-0.06, drawdown_168=-0.2,
                rsi_14=40.0)
FOUR = {"calm uptrend": CALM_UP, "calm downtrend": CALM_DOWN, "high-vol rally": VOL_UP, "volatile sell-off": VOL_DOWN}


def regime_frame(blocks, bars=300, coins=("bitcoin", "ethereum"), seed=0, noise=0.05, start="2024-01-01"):
    """Feature rows in blocks of `bars` around raw centres; `blocks` is a list of (truth, centre), same for every
    coin but rotated by one block per coin. Has a `truth` column."""
    rng = np.random.default_rng(seed)
    frames = []
    for c, coin in enumerate(coins):
        order = blocks[c % len(blocks):] + blocks[:c % len(blocks)]
        parts = [pd.DataFrame({f: v * (1 + noise * rng.standard_normal(bars)) for f, v in centre.items()})
                 .assign(truth=name) for name, centre in order]
        part = pd.concat(parts, ignore_index=True)
        part.insert(0, "ts", pd.date_range(start, periods=len(part), freq="h", tz="UTC"))
        part.insert(0, "coin", coin)
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def four():
    return regime_frame(list(FOUR.items()))


@pytest.fixture(scope="module")
def sim_features():
    end = pd.Timestamp("2024-01-01", tz="UTC")
    prices = simulated_prices(["bitcoin", "ethereum"], end - pd.Timedelta(days=60), end, seed=3)
    return prices, feature_frame(prices)


# --- constructed regimes --------------------------------------------------------------------------------------

def test_four_separated_regimes_are_recovered_and_named_from_their_centres(four):
    model = fit_regimes(four, seed=0)
    assert model.k == 4
    assert model.criterion["name"] == "silhouette" and model.criterion["chosen_k"] == 4
    assert max(model.criterion["scores"], key=model.criterion["scores"].get) == "4"
    labels = model.label(four)
    assert (labels["regime"] == four["truth"]).all()  # every bar in its own regime, under its right name
    table = model.centres_table().set_index("regime")
    assert table.loc["volatile sell-off", "vol_score"] > 0 > table.loc["volatile sell-off", "trend_score"]
    assert table.loc["calm uptrend", "vol_score"] < 0 < table.loc["calm uptrend", "trend_score"]
    # the centres in raw units sit where the blocks were built
    assert table.loc["volatile sell-off", "vol_24"] == pytest.approx(0.03, rel=0.05)
    assert table.loc["calm uptrend", "ret_168"] == pytest.approx(0.15, rel=0.05)
    assert list(table["vol_score"]) == sorted(table["vol_score"])  # regime_id 0 is the calmest


def test_two_regimes_calm_uptrend_and_volatile_selloff():
    frame = regime_frame([("calm uptrend", CALM_UP), ("volatile sell-off", VOL_DOWN)], bars=400, seed=1)
    model = fit_regimes(frame, seed=1)
    assert model.k == 2
    assert model.names == ["calm uptrend", "volatile sell-off"]
    assert (model.label(frame)["regime"] == frame["truth"]).all()


def test_labels_and_model_are_deterministic_for_a_seed(four, sim_features):
    _, feats = sim_features
    for frame in (four, feats):
        a, b = fit_regimes(frame, seed=7), fit_regimes(frame, seed=7)
        np.testing.assert_array_equal(a.centres, b.centres)
        assert a.names == b.names and a.criterion == b.criterion
        pd.testing.assert_frame_equal(a.label(frame), b.label(frame))


def test_label_output_shape_and_row_independence(sim_features):
    _, feats = sim_features
    model = fit_regimes(feats, k=3, seed=0)
    labels = model.label(feats)
    assert list(labels.columns) == ["coin", "ts", "regime_id", "regime", "distance"]
    assert labels.index.equals(feats.index)
    assert labels["ts"].dtype == feats["ts"].dtype
    assert (labels["distance"] >= 0).all()
    assert set(labels["regime_id"]) <= set(range(model.k))
    some = feats.sample(40, random_state=0)
    pd.testing.assert_frame_equal(model.label(some), labels.loc[some.index])  # a label reads its own row only
    empty = model.label(feats.iloc[:0])
    assert empty.empty and list(empty.columns) == list(labels.columns)


# --- naming ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("vol", "trend", "name"), [
    (1.0, -1.0, "volatile sell-off"), (1.0, 1.0, "high-vol rally"), (1.0, 0.0, "volatile chop"),
    (-1.0, -1.0, "calm downtrend"), (-1.0, 1.0, "calm uptrend"), (-1.0, 0.2, "quiet range")])
def test_regime_name_grid(vol, trend, name):
    assert regime_name(vol, trend) == name


def test_duplicate_names_are_disambiguated_along_the_axis_that_differs_more():
    names = name_centres([0.8, 2.0, -1.0], [-1.0, -1.2, 0.0])  # two sell-offs differing mostly in volatility
    assert names == ["volatile sell-off (lower vol)", "volatile sell-off (higher vol)", "quiet range"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(-3, 3)), min_size=1, max_size=8))
def test_names_are_always_unique_and_start_with_the_grid_name(centres):
    vol, trend = zip(*centres, strict=True)
    names = name_centres(vol, trend)
    assert len(set(names)) == len(names)
    assert all(n.startswith(regime_name(v, t)) for n, v, t in zip(names, vol, trend, strict=True))


# --- scaling, serialisation --------------------------------------------------------------------------------

def test_scaler_comes_from_the_fit_window_only(four):
    cut = four["ts"].iloc[450]
    later = four["ts"] > cut
    changed = four.assign(vol_24=np.where(later, four["vol_24"] * 40, four["vol_24"]),
                          ret_168=np.where(later, -0.9, four["ret_168"]))
    for scaling in ("coin", "pooled"):
        a = fit_regimes(four, k=2, seed=0, end=cut, scaling=scaling)
        b = fit_regimes(changed, k=2, seed=0, end=cut, scaling=scaling)
        c = fit_regimes(four[~later], k=2, seed=0, scaling=scaling)
        for other in (b, c):
            np.testing.assert_array_equal(a.means, other.means)
            np.testing.assert_array_equal(a.stds, other.stds)
            np.testing.assert_array_equal(a.centres, other.centres)
            assert a.coin_means.keys() == other.coin_means.keys()
            for coin in a.coin_means:
                np.testing.assert_array_equal(a.coin_means[coin], other.coin_means[coin])
                np.testing.assert_array_equal(a.coin_stds[coin], other.coin_stds[coin])
        assert a.fit_window["end"] == cut.isoformat()
        assert a.fit_window["rows"] == int((~later).sum())


def test_per_coin_scaling_ignores_a_coins_usual_volatility(four):
    # ethereum twice as volatile in every regime: with per-coin scalers its labels do not move
    louder = four.assign(**{c: np.where(four["coin"] == "ethereum", four[c] * 2, four[c]) for c in ("vol_24", "vol_168")})
    base = fit_regimes(four, k=4, seed=0).label(four)
    moved = fit_regimes(louder, k=4, seed=0).label(louder)
    assert (base["regime"] == moved["regime"]).all()


def test_unknown_coin_uses_the_pooled_scaler(four, caplog):
    model = fit_regimes(four, k=4, seed=0)
    stranger = four[four["coin"] == "bitcoin"].assign(coin="newcoin")
    with caplog.at_level("WARNING", logger="cryptosentinel.regimes"):
        labels = model.label(stranger)
    assert (labels["regime"] == stranger["truth"]).mean() > 0.9  # same populations: the pooled scaler fits
    assert "['newcoin']" in caplog.text and "falling back to the pooled statistics" in caplog.text


@pytest.mark.parametrize("scaling", ["coin", "pooled"])
def test_json_round_trip_gives_identical_labels(sim_features, scaling):
    _, feats = sim_features
    model = fit_regimes(feats, seed=0, scaling=scaling)
    text = json.dumps(model.to_dict())
    data = json.loads(text)
    assert data["feature_version"] == FEATURE_VERSION
    assert data["features"] == list(REGIME_FEATURES)
    assert data["k"] == model.k and len(data["centres"]) == model.k
    assert set(data["criterion"]["scores"]) == {"2", "3", "4", "5", "6"}
    again = RegimeModel.from_dict(data)
    pd.testing.assert_frame_equal(again.label(feats), model.label(feats))
    assert again.to_dict() == data


def test_from_dict_rejects_broken_descriptions(four):
    good = fit_regimes(four, k=2, seed=0).to_dict()
    with pytest.raises(DataValidationError, match="not a RegimeModel"):
        RegimeModel.from_dict({"k": 2})
    with pytest.raises(DataValidationError, match="lacks"):
        RegimeModel.from_dict({key: v for key, v in good.items() if key != "centres"})
    with pytest.raises(DataValidationError, match="inconsistent"):
        RegimeModel.from_dict({**good, "stds": good["stds"][:-1]})
    with pytest.raises(DataValidationError, match="format"):
        RegimeModel.from_dict({**good, "format": 99})


def test_bad_inputs_raise_clear_errors(four):
    with pytest.raises(DataValidationError, match="rsi_14"):
        fit_regimes(four.drop(columns="rsi_14"))
    with pytest.raises(DataValidationError, match="NaN"):
        fit_regimes(four.assign(ret_24=np.where(four.index == 5, np.nan, four["ret_24"])))
    with pytest.raises(DataValidationError, match="scaling"):
        fit_regimes(four, scaling="per-ts")
    with pytest.raises(DataValidationError, match="k must be"):
        fit_regimes(four, k=True)


# --- current regime, error by regime, causal labels ---------------------------------------------------------

def test_current_regimes_since_is_the_start_of_the_last_run(four):
    model = fit_regimes(four, k=4, seed=0)
    btc = four[four["coin"] == "bitcoin"].reset_index(drop=True)  # blocks of 300 in FOUR's order
    eth = four[four["coin"] == "ethereum"].reset_index(drop=True)  # rotated: starts with calm downtrend
    recent = pd.concat([btc.iloc[:700], eth.iloc[:350]])
    now = current_regimes(model, recent.sample(frac=1, random_state=0))  # row order does not matter
    assert sorted(now) == ["bitcoin", "ethereum"]
    assert now["bitcoin"]["regime"] == "high-vol rally"
    assert now["bitcoin"]["since"] == btc["ts"][600].isoformat()
    assert now["bitcoin"]["bars"] == 100 and now["bitcoin"]["run_may_be_longer"] is False
    assert now["bitcoin"]["as_of"] == btc["ts"][699].isoformat()
    assert now["ethereum"]["regime"] == "high-vol rally"
    assert now["ethereum"]["since"] == eth["ts"][300].isoformat()
    assert isinstance(now["bitcoin"]["regime_id"], int)
    json.dumps(now)  # API-ready
    one_row = current_regimes(model, btc.iloc[[650]])
    assert one_row["bitcoin"]["since"] == btc["ts"][650].isoformat() and one_row["bitcoin"]["run_may_be_longer"]


def test_current_regimes_tolerance_bridges_short_interruptions(four):
    model = fit_regimes(four, k=4, seed=0)
    btc = four[four["coin"] == "bitcoin"].reset_index(drop=True).iloc[:750].copy()
    odd = list(CALM_DOWN.values())
    btc.loc[[680, 681, 720], list(CALM_DOWN)] = [odd, odd, odd]  # bars 600-749 are a high-vol rally
    assert current_regimes(model, btc)["bitcoin"]["since"] == btc["ts"][721].isoformat()
    assert current_regimes(model, btc, tolerance=1)["bitcoin"]["since"] == btc["ts"][682].isoformat()
    bridged = current_regimes(model, btc, tolerance=2)["bitcoin"]
    assert bridged["since"] == btc["ts"][600].isoformat() and bridged["bars"] == 150
    assert bridged["regime"] == "high-vol rally"


def test_error_by_regime_on_a_hand_made_case():
    ts = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    labels = pd.DataFrame({"coin": ["bitcoin"] * 3 + ["ethereum"] * 3, "ts": list(ts) * 2,
                           "regime_id": [0, 1, 1, 0, 0, 1], "regime": ["calm", "storm", "storm", "calm", "calm", "storm"]})
    errors = pd.concat([
        labels[["coin", "ts"]].assign(model="xgb", abs_error=[1.0, 4.0, 6.0, 2.0, 3.0, 8.0]),
        labels[["coin", "ts"]].assign(model="naive", abs_error=[5.0] * 6),
        pd.DataFrame({"coin": ["bitcoin"], "ts": [ts[0] + pd.Timedelta(hours=9)], "model": ["xgb"], "abs_error": [1e6]}),
    ], ignore_index=True)
    out = error_by_regime(errors, labels)
    assert list(out.columns) == ["model", "regime_id", "regime", "mean_abs_error", "count", "share"]
    got = out.set_index(["model", "regime"])
    assert got.loc[("xgb", "calm"), "mean_abs_error"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert got.loc[("xgb", "storm"), "mean_abs_error"] == pytest.approx(6.0)  # (4 + 6 + 8) / 3
    assert got.loc[("naive", "storm"), "mean_abs_error"] == pytest.approx(5.0)
    assert got["count"].tolist() == [3, 3, 3, 3]  # the unlabelled error row is left out
    assert got.loc[("xgb", "calm"), "share"] == pytest.approx(0.5)
    plain = error_by_regime(errors.drop(columns="model"), labels).set_index("regime")
    assert plain.loc["calm", "count"] == 6 and plain.loc["calm", "mean_abs_error"] == pytest.approx(3.5)
    with pytest.raises(DataValidationError, match="duplicate"):
        error_by_regime(errors, pd.concat([labels, labels]))
    with pytest.raises(DataValidationError, match="abs_error"):
        error_by_regime(errors.drop(columns="abs_error"), labels)


def test_label_causally_fits_on_the_past_only(four):
    out = label_causally(four, refit_every="10D", min_history="20D", k=2, seed=0)
    assert (out["fit_end"] < out["ts"]).all()
    assert out["ts"].min() == four["ts"].min() + pd.Timedelta("20D")
    first = out["fit_end"].min()
    block = out[out["fit_end"] == first]
    past = four[four["ts"] <= first]
    expected = fit_regimes(past, k=2, seed=0).label(four.loc[block.index])
    pd.testing.assert_frame_equal(block.drop(columns="fit_end"), expected)
    # the future does not change what was labelled before it
    cut = out["ts"].quantile(0.5)
    shorter = label_causally(four[four["ts"] <= cut], refit_every="10D", min_history="20D", k=2, seed=0)
    pd.testing.assert_frame_equal(shorter, out[out["ts"] <= cut])


# --- PCA and figures ---------------------------------------------------------------------------------------

def test_pca_variance_and_loadings(sim_features):
    _, feats = sim_features
    pca = fit_pca(feats)
    assert pca.cumulative[-1] == pytest.approx(1.0)
    assert np.all(np.diff(pca.explained_variance_ratio) <= 1e-12)
    table = pca.variance_table()
    assert list(table.columns) == ["component", "explained_variance_ratio", "cumulative"]
    part = fit_pca(feats, 0.8)
    assert part.cumulative[-1] >= 0.8 > (part.cumulative[-2] if part.n_components > 1 else 0)
    top = pca.top_loadings(2, 3)
    assert len(top) == 6 and (top.groupby("component")["loading"].apply(lambda s: s.abs().is_monotonic_decreasing)).all()
    with pytest.raises(DataValidationError):
        fit_pca(feats, 2.5)


def test_figures_are_agg_safe(sim_features):
    prices, feats = sim_features
    model = fit_regimes(feats, k=3, seed=0)
    labels = model.label(feats)
    pca = fit_pca(feats, 5)
    for fig in (fig_explained_variance(pca), fig_pca_scatter(pca, feats, labels, max_points=500),
                fig_regime_price(prices, labels, "bitcoin")):
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # renders without pyplot or a display


def test_latest_regimes_reads_the_last_recorded_model_and_recent_features(sim_features, tmp_path):
    from cryptosentinel.store import features_group

    _, feats = sim_features
    store = local_store(tmp_path / "store.sqlite")
    try:
        assert latest_regimes(store, ["bitcoin"]) == {}  # no model recorded yet
        model = fit_regimes(feats, k=3, seed=0)
        store.record_run("regimes", model.to_dict())
        assert latest_regimes(store, ["bitcoin"]) == {}  # no features stored yet
        store.upsert(features_group(store), feats)
        now = latest_regimes(store, ["bitcoin", "ethereum"])
        recent = feats[feats["ts"] >= feats.groupby("coin")["ts"].max().min() - CURRENT_LOOKBACK]
        assert now == current_regimes(model, recent)
        assert sorted(now) == ["bitcoin", "ethereum"] and all(v["regime"] in model.names for v in now.values())
        assert sorted(latest_regimes(store, ["bitcoin"])) == ["bitcoin"]
    finally:
        store.close()


# --- the real hourly coins ---------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_real_hourly_coins(shared_data):
    prices = shared_prices(shared_data)
    feats = feature_frame(prices)
    pca = fit_pca(feats)
    assert pca.explained_variance_ratio.sum() <= 1 + 1e-9
    assert np.all(pca.explained_variance_ratio >= 0)  # exact linear combinations (macd_hist, ...) explain 0
    model = fit_regimes(feats, seed=42)
    assert 2 <= model.k <= 6 and len(set(model.names)) == model.k
    labels = model.label(feats)
    assert labels["regime"].nunique() == model.k
    now = current_regimes(model, feats.groupby("coin").tail(24 * 14))
    assert sorted(now) == sorted(prices["coin"].unique())
    assert all(v["regime"] in model.names and v["since"] <= v["as_of"] for v in now.values())
    again = RegimeModel.from_dict(json.loads(json.dumps(model.to_dict())))
    pd.testing.assert_frame_equal(again.label(feats), labels)
