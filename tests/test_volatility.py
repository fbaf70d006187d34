"""Volatility forecasts (cryptosentinel.volatility): causal regressors, the target, planted volatility, gaps,
volatility bundles through save/load, and clear errors on bad input."""

import logging

import numpy as np
import pandas as pd
import pytest

from cryptosentinel.bundle import MODEL_FAMILIES, load_bundle, save_bundle
from cryptosentinel.config import ConfigError, DataValidationError
from cryptosentinel.sources import simulate_prices
from cryptosentinel.volatility import (
    VOL_BASELINES,
    VOL_FEATURES,
    VOL_LOOKBACK_BARS,
    VOL_MODELS,
    latest_volatility_inputs,
    model_regressors,
    realised_variance_target,
    train_volatility,
    volatility_features,
)

pytestmark = pytest.mark.code


def _prices(returns: np.ndarray, start: str = "2024-01-01", coin_names: list[str] | None = None) -> pd.DataFrame:
    "Hourly prices from a (bars x coins) array of log returns, with a high/low range around each bar."
    n, k = returns.shape
    ts = pd.date_range(start, periods=n, freq="h", tz="UTC")
    rng = np.random.default_rng(1)
    frames = []
    for j in range(k):
        close = 100 * np.exp(np.cumsum(returns[:, j]))
        open_ = np.r_[100.0, close[:-1]]
        wick = np.abs(returns[:, j]) * rng.uniform(0.2, 0.8, n)
        frames.append(pd.DataFrame({"coin": (coin_names or [f"c{i}" for i in range(k)])[j], "ts": ts, "open": open_,
                                    "high": np.maximum(open_, close) * np.exp(wick),
                                    "low": np.minimum(open_, close) * np.exp(-wick), "close": close,
                                    "volume": rng.uniform(50, 150, n)}))
    return pd.concat(frames, ignore_index=True)


def _garch_returns(n: int, k: int, seed: int, alpha: float = 0.06, beta: float = 0.93) -> np.ndarray:
    "GARCH(1,1) hourly returns with a slow variance component: volatility that clusters over days and weeks."
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k))
    slow = np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0).clip(-3, 3))  # slow random walk in log variance
    out, var = np.empty((n, k)), np.full(k, 1e-4)
    w = 1e-4 * (1 - alpha - beta)
    for i in range(n):
        out[i] = np.sqrt(var * slow[i]) * z[i]
        var = w + alpha * out[i] ** 2 / slow[i] + beta * var
    return out


def test_regressors_are_causal():
    prices = simulate_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-03-15")
    before = volatility_features(prices)
    cut = pd.Timestamp("2024-02-20", tz="UTC")
    shaken = prices.copy()
    later = shaken["ts"] > cut
    shaken.loc[later, ["open", "high", "low", "close"]] *= np.linspace(0.5, 2.0, later.sum())[:, None]
    shaken.loc[later, "volume"] *= 10
    after = volatility_features(shaken)
    keep = before["ts"] <= cut
    pd.testing.assert_frame_equal(before[keep].reset_index(drop=True), after[keep].reset_index(drop=True))
    assert not np.allclose(before.loc[~keep, "log_rv_d"], after.loc[~keep, "log_rv_d"], equal_nan=True)


def test_calendar_and_level_terms():
    "Weekend shares by hand, the quarterly level cut at a long gap, the leverage terms, and train/serve parity."
    prices = simulate_prices(["bitcoin", "solana"], "2024-01-01", "2024-06-01")
    f = volatility_features(prices, horizons=[24, 168, 6])
    at = f[f.coin == "bitcoin"].set_index("ts")
    fri = pd.Timestamp("2024-03-01 18:00", tz="UTC")  # a Friday: the next 24 bars 19:00 .. Sat 18:00 hold 19 Saturday ones
    assert at.loc[fri, "weekend_ahead_24"] == pytest.approx(19 / 24)
    assert at.loc[fri, "weekend_ahead_168"] == pytest.approx(48 / 168)  # any full week holds two weekend days
    assert at.loc[fri, "weekend_ahead_6"] == pytest.approx(1 / 6)  # 19:00 .. Sat 00:00
    assert at.loc[fri, "weekend_past"] == 0.0
    assert at.loc[pd.Timestamp("2024-03-04 05:00", tz="UTC"), "weekend_past"] == pytest.approx(18 / 24)  # Monday
    assert (f[["neg_ret_d", "neg_ret_w"]].dropna() <= 0).all().all()
    assert at[["log_rv_q", "log_rq_d", "harq_d"]].iloc[800:].notna().all().all()
    # the quarter is the mean squared return over what there is, from a month of history on
    btc = prices[prices.coin == "bitcoin"].sort_values("ts")
    r2 = np.diff(np.log(btc["close"].to_numpy())) ** 2
    assert at["log_rv_q"].iloc[1000] == pytest.approx(np.log(r2[:1000].mean()))
    assert at["log_rv_q"].iloc[3000] == pytest.approx(np.log(r2[3000 - 2160:3000].mean()))
    # serving reads the last VOL_LOOKBACK_BARS bars and gets the same regressors as the full history
    recent = prices[prices.ts > prices.ts.max() - pd.Timedelta(hours=VOL_LOOKBACK_BARS + 1)]
    now = latest_volatility_inputs(recent).set_index("coin")
    full = f.groupby("coin").tail(1).set_index("coin")
    cols = [c for c in (*VOL_FEATURES, "weekend_ahead_24", "weekend_ahead_168") if c != "ewma_var"]
    np.testing.assert_allclose(now[cols], full.loc[now.index, cols], rtol=1e-9)
    assert model_regressors("har_plus", 168)[-1] == "weekend_ahead_168"


def test_target_hand_example():
    close = [100.0, 101.0, 99.0, 99.5, 102.0, 101.0]
    prices = pd.DataFrame({"coin": "x", "ts": pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC"),
                           "open": close, "high": close, "low": close, "close": close, "volume": 1.0})
    rv = realised_variance_target(prices, 3)["rv"].to_numpy()
    r = np.diff(np.log(close))
    np.testing.assert_allclose(rv[:3], [r[0]**2 + r[1]**2 + r[2]**2, r[1]**2 + r[2]**2 + r[3]**2,
                                        r[2]**2 + r[3]**2 + r[4]**2])
    assert np.isnan(rv[3:]).all()
    holed = realised_variance_target(prices.drop(index=3), 2)  # bar 03:00 missing
    np.testing.assert_allclose(holed["rv"].to_numpy()[:1], [r[0]**2 + r[1]**2])
    assert holed["rv"][1:].isna().all()


def test_planted_volatility_beats_unconditional():
    prices = _prices(_garch_returns(24 * 240, 3, seed=7))
    run = train_volatility(prices, 24, n_folds=3)
    champ = run.champion
    assert champ in VOL_MODELS
    row = run.table.loc[champ]
    assert row["qlike_skill_unconditional"] > 0.10, run.table
    unc = run.predictions
    assert (unc["unconditional"] > 0).all()
    # the DM test against the unconditional variance itself
    from cryptosentinel.training import diebold_mariano, qlike
    d = qlike(unc["rv"], unc[champ]) - qlike(unc["rv"], unc["unconditional"])
    per_ts = pd.Series(d).groupby(unc["ts"].to_numpy()).mean().sort_index().to_numpy()
    assert diebold_mariano(per_ts, 24).pvalue < 0.05


def test_constant_variance_has_no_skill():
    rng = np.random.default_rng(11)
    prices = _prices(rng.normal(0, 0.01, (24 * 240, 3)))
    run = train_volatility(prices, 24, n_folds=3)
    from cryptosentinel.training import diebold_mariano, qlike
    p = run.predictions
    champ = run.champion
    skill = run.table.loc[champ, "qlike_skill_unconditional"]
    assert abs(skill) < 0.05, run.table
    d = qlike(p["rv"], p[champ]) - qlike(p["rv"], p["unconditional"])
    per_ts = pd.Series(d).groupby(p["ts"].to_numpy()).mean().sort_index().to_numpy()
    assert diebold_mariano(per_ts, 24).pvalue > 0.05


def test_gap_restarts_windows():
    prices = simulate_prices(["bitcoin", "solana"], "2024-01-01", "2024-04-01")
    gap = (prices.coin == "bitcoin") & prices.ts.between(pd.Timestamp("2024-02-01", tz="UTC"),
                                                         pd.Timestamp("2024-03-01", tz="UTC"), inclusive="left")
    f = volatility_features(prices[~gap])
    btc = f[(f.coin == "bitcoin") & (f.ts >= pd.Timestamp("2024-03-01", tz="UTC"))].reset_index(drop=True)
    assert btc.loc[:23, "log_rv_d"].isna().all() and btc.loc[24:, "log_rv_d"].notna().all()
    assert btc.loc[:167, ["log_rv_w", "vol_168_var", "log_volume_rel"]].isna().all().all()
    assert btc.loc[:719, "log_rv_m"].isna().all() and btc.loc[720:, "log_rv_m"].notna().all()  # a month to refill
    # solana keeps every row and its market term comes from the coins present (solana alone during the gap)
    sol = f[f.coin == "solana"]
    assert len(sol) == (prices.coin == "solana").sum()
    during = sol[sol.ts.between(pd.Timestamp("2024-02-05", tz="UTC"), pd.Timestamp("2024-02-25", tz="UTC"))]
    np.testing.assert_allclose(during["log_mkt_rv"], during["log_rv_d"])
    # max_gap larger than the gap: the windows run across it
    wide = volatility_features(prices[~gap], max_gap="40D")
    assert wide.loc[(wide.coin == "bitcoin") & (wide.ts == pd.Timestamp("2024-03-01 05:00", tz="UTC")),
                    "log_rv_d"].notna().all()


@pytest.mark.parametrize("horizon", [24, 168])
def test_volatility_bundle_round_trip(tmp_path, horizon):
    prices = simulate_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-04-15")
    run = train_volatility(prices, horizon, n_folds=2)
    assert "har_plus" in run.bundles and f"weekend_ahead_{horizon}" in run.bundles["har_plus"].feature_names
    now = latest_volatility_inputs(prices, ["bitcoin", "ethereum"])
    assert set(VOL_FEATURES) <= set(now.columns) and len(now) == 2
    for name, bundle in run.bundles.items():
        assert MODEL_FAMILIES[name] == "volatility" and bundle.task == "volatility"
        assert bundle.is_constant == (name in VOL_BASELINES)
        back = load_bundle(tmp_path / name, save_bundle(bundle, tmp_path / name, input_example=now))
        np.testing.assert_allclose(back.predict(now), bundle.predict(now))
        assert (back.predict(now) > 0).all()
        assert back.variance == bundle.variance
        assert {"qlike", "qlike_skill_best_baseline", "mz_r2", "dm_pvalue", "n"} <= set(back.metrics["overall"])


def test_bad_input_errors(caplog):
    prices = simulate_prices(["bitcoin"], "2024-01-01", "2024-01-10")
    with pytest.raises(DataValidationError, match=r"lack columns \['high', 'volume'\]"):
        volatility_features(prices.drop(columns=["high", "volume"]))
    with pytest.raises(DataValidationError, match="time-zone-aware"):
        volatility_features(prices.assign(ts=prices.ts.dt.tz_localize(None)))
    with pytest.raises(DataValidationError, match="duplicate"):
        volatility_features(pd.concat([prices, prices.head(1)]))
    for horizon in (0, -24, 2.5, "24", 10_000):
        with pytest.raises(ConfigError, match="unknown volatility horizon"):
            realised_variance_target(prices, horizon)
        with pytest.raises(ConfigError, match="unknown volatility horizon"):
            train_volatility(prices, horizon)
    with pytest.raises(ConfigError, match="unknown volatility models"):
        train_volatility(prices, 24, models=["garch"])
    with pytest.raises(DataValidationError, match="no usable rows"):
        train_volatility(prices, 24)  # 9 days: no monthly window ever fills
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.volatility"):
        assert latest_volatility_inputs(prices, ["dogecoin"]).empty
    assert "no bars for ['dogecoin']" in caplog.text
