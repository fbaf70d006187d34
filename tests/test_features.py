"""Feature engineering: causality, train/serve parity, warm-up, golden values, gaps, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from builders import random_walk_prices as make_prices  # the same walk these tests were written on
from builders import shared_prices

from cryptosentinel import features as F
from cryptosentinel.config import DataValidationError
from cryptosentinel.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    FEATURE_WINDOWS,
    MARKET_COLUMNS,
    SERVING_HISTORY_BARS,
    WARMUP_BARS,
    build_features,
    feature_schema,
    history_bars_needed,
    lookback_bars,
    market_features,
    validate_features,
)

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def prices():
    return make_prices(("bitcoin", "ethereum", "solana"), bars=1000, seed=1)


@pytest.fixture(scope="module")
def features(prices):
    return build_features(prices)


# --- shape, keys, warm-up -------------------------------------------------------------------------

def test_output_is_keyed_sorted_and_float(features, prices):
    assert list(features.columns) == ["coin", "ts", *FEATURE_NAMES, "missing_bars"]
    assert all(features[n].dtype == np.float64 for n in FEATURE_NAMES)
    assert features.missing_bars.dtype == np.int64
    assert str(features.ts.dtype) == "datetime64[ns, UTC]"
    assert not features.duplicated(["coin", "ts"]).any()
    assert features.equals(features.sort_values(["coin", "ts"]).reset_index(drop=True))
    assert np.isfinite(features[FEATURE_NAMES].to_numpy()).all()
    validate_features(features)


def test_warmup_rows_are_dropped_not_filled(features, prices):
    for coin, group in prices.groupby("coin"):
        got = features[features.coin == coin]
        assert len(got) == len(group) - WARMUP_BARS
        assert got.ts.iloc[0] == group.ts.iloc[WARMUP_BARS]


def test_warmup_derives_from_the_window_table():
    assert max(lookback_bars(n) for n in FEATURE_NAMES) == WARMUP_BARS
    assert max(max(w, default=0) for w in FEATURE_WINDOWS.values()) <= WARMUP_BARS
    # the slowest chain: EMA26 seeded at bar 25, converged, then the 9-bar signal converged
    k26 = math.ceil(math.log(F.SEED_WEIGHT) / math.log(1 - 2 / 27))
    k9 = math.ceil(math.log(F.SEED_WEIGHT) / math.log(1 - 2 / 10))
    assert 25 + k26 + k9 == WARMUP_BARS
    assert lookback_bars("rsi_14") == 14 + math.ceil(math.log(F.SEED_WEIGHT) / math.log(13 / 14))
    assert SERVING_HISTORY_BARS == history_bars_needed(1) == WARMUP_BARS + 1


def test_short_history_gives_no_rows():
    short = make_prices(bars=WARMUP_BARS)
    out = build_features(short)
    assert len(out) == 0 and list(out.columns) == ["coin", "ts", *FEATURE_NAMES, "missing_bars"]


def test_feature_version_tracks_the_spec(monkeypatch):
    assert len(FEATURE_VERSION) == 12 and F._feature_version() == FEATURE_VERSION
    monkeypatch.setattr(F, "FEATURE_CODE_VERSION", "changed")
    assert F._feature_version() != FEATURE_VERSION
    monkeypatch.undo()
    monkeypatch.setitem(F.FEATURE_WINDOWS, "rsi_14", (15,))
    assert F._feature_version() != FEATURE_VERSION


# --- causality ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cut_offset", [0, 1, 57, 300])
def test_future_rows_never_change_past_features(prices, cut_offset):
    cut = prices.ts.iloc[WARMUP_BARS + cut_offset]
    past = build_features(prices[prices.ts <= cut])
    rng = np.random.default_rng(cut_offset)
    future = prices[prices.ts > cut].copy()
    future["close"] *= rng.uniform(0.2, 5.0, len(future))  # arbitrary, even absurd, future values
    future["high"] = future["close"] * 2
    future["low"] = future["close"] / 2
    future["volume"] = rng.choice([0.0, 1e12], len(future))
    future = future.drop(future.index[::7])  # and gaps
    extended = build_features(pd.concat([prices[prices.ts <= cut], future]))
    pd.testing.assert_frame_equal(past, extended[extended.ts <= cut].reset_index(drop=True))


def test_each_row_uses_only_its_past(prices):
    """Recomputing on the history up to t reproduces row t exactly, for a sample of t."""
    full = build_features(prices).set_index(["coin", "ts"])
    for t in prices.ts.iloc[[WARMUP_BARS, WARMUP_BARS + 10, 777, 999]]:
        upto = build_features(prices[prices.ts <= t]).set_index(["coin", "ts"])
        last = upto.xs(t, level="ts")
        pd.testing.assert_frame_equal(last, full.xs(t, level="ts"))


# --- train/serve parity ---------------------------------------------------------------------------

def serve_rows(prices, end, rows=1):
    """What serving does: the last history_bars_needed(rows) bars per coin up to `end`."""
    hist = prices[prices.ts <= end].groupby("coin").tail(history_bars_needed(rows))
    return build_features(hist)


@pytest.mark.parametrize("end_offset", [0, 1, 200, 490])
def test_serving_history_reproduces_full_history(prices, features, end_offset):
    end = prices.ts.iloc[WARMUP_BARS + end_offset]
    served = serve_rows(prices, end)
    assert len(served) == prices.coin.nunique()
    full = features[features.ts == end].reset_index(drop=True)
    pd.testing.assert_frame_equal(served[["coin", "ts", "missing_bars"]], full[["coin", "ts", "missing_bars"]])
    np.testing.assert_allclose(served[FEATURE_NAMES].to_numpy(), full[FEATURE_NAMES].to_numpy(), rtol=0, atol=1e-9)


def test_serving_several_rows(prices, features):
    end = prices.ts.iloc[-1]
    served = serve_rows(prices, end, rows=24)
    assert len(served) == 24 * prices.coin.nunique()
    full = features.groupby("coin").tail(24).reset_index(drop=True)
    np.testing.assert_allclose(served[FEATURE_NAMES].to_numpy(), full[FEATURE_NAMES].to_numpy(), rtol=0, atol=1e-9)


OWN = ["coin", "ts", *F._COIN_NAMES, "hour", "dow", "hour_sin", "hour_cos", "dow_sin", "dow_cos", "missing_bars"]
MARKET = [n for n in FEATURE_NAMES if F.FEATURE_SPEC[n][0] == "market"]  # mkt_ret_1, mkt_ret_24, mkt_vol_24, excess_ret_24


def test_a_coins_own_features_do_not_depend_on_the_other_coins(prices, features):
    """Only the market features depend on which coins are in the frame (they are the market)."""
    alone = build_features(prices[prices.coin.isin(["bitcoin", "solana"])])
    sol_alone = alone[alone.coin == "solana"].reset_index(drop=True)
    sol = features[features.coin == "solana"].reset_index(drop=True)
    pd.testing.assert_frame_equal(sol_alone[OWN], sol[OWN])
    assert not np.allclose(sol_alone.mkt_ret_1, sol.mkt_ret_1)


@pytest.mark.shared_data
def test_serving_parity_on_real_data(shared_data):
    real = shared_prices(shared_data)  # read_csv_snapshot drops the open last candles
    full = build_features(real)
    ends = real.ts.drop_duplicates().sort_values().iloc[[3000, 3700, 11000, 23500]]  # incl. just after gaps
    worst = 0.0
    for end in ends:
        served = serve_rows(real, end)
        expected = full[full.ts == end].reset_index(drop=True)
        assert len(served) == len(expected) == 8
        diff = np.abs(served[FEATURE_NAMES].to_numpy() - expected[FEATURE_NAMES].to_numpy()).max()
        worst = max(worst, diff)
    assert worst <= 1e-9, worst


# --- golden values --------------------------------------------------------------------------------

def test_golden_log_return_and_rsi():
    p = make_prices(("bitcoin",), bars=WARMUP_BARS + 3)
    p.loc[WARMUP_BARS - 1:WARMUP_BARS + 2, "close"] = [100.0, 110.0, 99.0, 99.0]
    out = build_features(p)
    np.testing.assert_allclose(out.ret_1, [math.log(1.1), math.log(0.9), 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(out.roc_24.iloc[0], p.close.iloc[WARMUP_BARS] / p.close.iloc[WARMUP_BARS - 24] - 1,
                               rtol=1e-13)
    rising = make_prices(("bitcoin",), bars=WARMUP_BARS + 5).assign(close=lambda d: 1.0 + 0.01 * np.arange(len(d)))
    rising[["high", "low"]] = np.c_[rising.close * 1.01, rising.close * 0.99]
    out = build_features(rising)
    assert (out.rsi_14 == 100.0).all()
    assert (out.drawdown_168 == 0.0).all()
    assert (out.macd_12_26 > 0).all() and (out.close_sma_24 > 0).all()
    np.testing.assert_allclose(out.atr_14, 0.02, rtol=0.05)  # a 2% bar range, Wilder-averaged


def test_golden_flat_price():
    p = make_prices(("bitcoin",), bars=WARMUP_BARS + 2)
    p[["open", "high", "low", "close"]] = 42.0
    p["volume"] = 10.0
    out = build_features(p)
    for name, value in {"ret_1": 0.0, "vol_24": 0.0, "macd_hist": 0.0, "bb_pct_b_20": 0.5, "bb_width_20": 0.0,
                        "close_sma_168": 0.0, "drawdown_168": 0.0, "atr_14": 0.0, "volume_z_24": 0.0,
                        "volume_ratio_24_168": 0.0, "volume_change_1": 0.0}.items():
        np.testing.assert_allclose(out[name], value, rtol=0, atol=1e-12, err_msg=name)


def test_golden_calendar_and_market():
    p = make_prices(("bitcoin", "ethereum"), bars=WARMUP_BARS + 48, start="2024-01-01")  # a Monday
    out = build_features(p)
    first = out.iloc[0]
    ts = p.ts.iloc[WARMUP_BARS]
    assert first.hour == ts.hour and first.dow == ts.dayofweek
    np.testing.assert_allclose(first.hour_sin, math.sin(2 * math.pi * ts.hour / 24), atol=1e-15)
    np.testing.assert_allclose(first.dow_cos, math.cos(2 * math.pi * ts.dayofweek / 7), atol=1e-15)
    btc = out[out.coin == "bitcoin"].reset_index(drop=True)
    eth = out[out.coin == "ethereum"].reset_index(drop=True)
    # the market: the equal-weighted mean of the two coins' one-bar log returns, summed over the window
    log_close = {c: np.log(g.close.to_numpy()) for c, g in p.groupby("coin")}
    m1 = (np.diff(log_close["bitcoin"]) + np.diff(log_close["ethereum"])) / 2  # m1[k] is the return at bar k + 1
    t = np.arange(WARMUP_BARS, WARMUP_BARS + 48)
    np.testing.assert_allclose(eth.mkt_ret_1, m1[t - 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(eth.mkt_ret_24, [m1[k - 24:k].sum() for k in t], rtol=0, atol=1e-13)
    np.testing.assert_allclose(eth.mkt_vol_24, [m1[k - 24:k].std() for k in t], rtol=1e-9, atol=0)
    np.testing.assert_array_equal(btc[MARKET[:-1]], eth[MARKET[:-1]])  # mkt_*: one market for every coin
    np.testing.assert_allclose(eth.excess_ret_24, eth.ret_24 - eth.mkt_ret_24, atol=1e-15)
    np.testing.assert_allclose(btc.excess_ret_24 + eth.excess_ret_24, 0.0, atol=1e-13)


# --- gaps and granularity -------------------------------------------------------------------------

def test_gaps_are_flagged_not_filled(prices):
    gap = prices.ts.iloc[[700, 701]]
    holed = prices[~((prices.coin == "ethereum") & prices.ts.isin(gap))]
    out = build_features(holed)
    eth = out[out.coin == "ethereum"].set_index("ts")
    assert not eth.index.isin(gap).any()  # no invented rows
    assert eth.missing_bars.max() == 2
    spanning = eth.missing_bars > 0
    assert spanning.sum() == F.GAP_WINDOW  # the rows whose 168-bar look-back spans the hole
    assert eth.index[spanning][0] == prices.ts.iloc[702]
    # the bar after the gap: ret_1 spans the missing hours (bar sequence), and is flagged
    after = prices[(prices.coin == "ethereum")].set_index("ts").close
    np.testing.assert_allclose(eth.loc[prices.ts.iloc[702], "ret_1"],
                               math.log(after[prices.ts.iloc[702]] / after[prices.ts.iloc[699]]), rtol=1e-13)
    # other coins keep every row and their own features; their market at the hole is the coins present
    sol = out[out.coin == "solana"].reset_index(drop=True)
    full_sol = build_features(prices).query("coin == 'solana'").reset_index(drop=True)
    pd.testing.assert_frame_equal(sol[OWN], full_sol[OWN])
    at = sol.ts == prices.ts.iloc[700]
    np.testing.assert_allclose(sol.mkt_ret_1[at], out[(out.ts == prices.ts.iloc[700]) & (out.coin != "ethereum")]
                               .ret_1.mean(), rtol=0, atol=1e-15)


def test_rows_without_a_bitcoin_bar_are_kept(prices):
    missing_ts = prices.ts.iloc[800]
    out = build_features(prices[~((prices.coin == "bitcoin") & (prices.ts == missing_ts))])
    assert (out.ts == missing_ts).sum() == 2  # ethereum and solana
    assert len(out) == 3 * (1000 - WARMUP_BARS) - 1
    assert np.isfinite(out[FEATURE_NAMES].to_numpy()).all()


def test_daily_granularity():
    daily = make_prices(bars=WARMUP_BARS + 30, freq="D")
    out = build_features(daily.drop(daily.index[WARMUP_BARS + 10]))
    assert (out.hour == 0).all() and set(out.dow) <= set(range(7))
    assert out.missing_bars.max() == 1  # one missing day on bitcoin


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns=["close"]), "lacks columns ['close']"),
    (lambda d: d.assign(ts=d.ts.dt.tz_localize(None)), "time-zone-aware"),
    (lambda d: d.assign(close=d.close.where(d.index != 7, np.nan)), "'close' must be finite and > 0: 1 rows, e.g. index 7"),
    (lambda d: d.assign(close=d.close.where(d.index != 9, np.inf)), "index 9"),
    (lambda d: d.assign(volume=d.volume.where(d.index != 4, -1.0)), "'volume' must be finite and >= 0"),
    (lambda d: d.assign(volume=d.volume.astype(str)), "'volume' must be numeric"),
    (lambda d: pd.concat([d, d.iloc[[11]]]), "duplicate (coin, ts)"),
    (lambda d: d.assign(granularity=np.where(d.index % 2 == 0, "1h", "1d")), "one granularity"),
    (lambda d: d.assign(coin=d.coin.where(d.index != 3, None)), "coin ids"),
])
def test_build_features_rejects_bad_prices(prices, mutate, message):
    with pytest.raises(DataValidationError) as err:
        build_features(mutate(prices))
    assert message in str(err.value)


def test_missing_high_low_fall_back_to_close_range(prices):
    out = build_features(prices.assign(high=np.nan, low=np.nan))
    assert np.isfinite(out.atr_14).all() and (out.atr_14 > 0).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.assign(rsi_14=d.rsi_14.where(d.index != 5, np.nan)),
     "column 'rsi_14': 1 row(s) fail check 'not_nullable' (index 5)"),
    (lambda d: d.assign(ret_24=d.ret_24.where(~d.index.isin([3, 8]), np.inf)),
     "column 'ret_24': 2 row(s) fail check 'finite' (index 3, 8)"),
    (lambda d: d.assign(vol_24=d.vol_24.where(d.index != 2, -np.inf)), "column 'vol_24'"),
    (lambda d: d.astype({"macd_hist": "float32"}), "column 'macd_hist': check \"dtype('float64')\""),
    (lambda d: d.assign(ret_1=d.ret_1.astype(object)), "column 'ret_1'"),
    (lambda d: d.drop(columns=["atr_14", "hour"]), "missing column(s) ['atr_14', 'hour']"),
    (lambda d: d.assign(rsi_14=d.rsi_14.where(d.index != 1, 101.0)), "column 'rsi_14': 1 row(s) fail check 'in_range"),
    (lambda d: d.assign(hour_sin=2.0), "column 'hour_sin'"),
    (lambda d: pd.concat([d, d.iloc[[0]]], ignore_index=True), "multiple_fields_uniqueness"),
])
def test_validate_features_rejects_bad_batches(features, mutate, message):
    with pytest.raises(DataValidationError) as err:
        validate_features(mutate(features.copy()))
    assert message in str(err.value)


def test_validate_features_returns_the_frame(features):
    assert validate_features(features) is features
    assert feature_schema.name == "features"
    with pytest.raises(DataValidationError, match="must be a DataFrame"):
        validate_features(features.to_numpy())


def test_rows_are_exactly_the_per_coin_outputs_whatever_the_holes(prices):
    """Coins are written in place: every row past the warm-up is kept and is exactly the per-coin family
    output, whatever coin follows and wherever one coin's holes are (start, middle, last row)."""
    btc_ts = prices.ts[prices.coin == "bitcoin"]
    holes = btc_ts.iloc[[WARMUP_BARS + 1, WARMUP_BARS + 200, WARMUP_BARS + 201, len(btc_ts) - 1]]
    holed = prices[~((prices.coin == "bitcoin") & prices.ts.isin(holes))]
    out = build_features(holed)
    for coin, group in holed.groupby("coin"):
        ref = F._coin_features(*(group[k].to_numpy(np.float64) for k in ("high", "low", "close", "volume")))
        got = out[out.coin == coin]
        assert len(got) == len(group) - WARMUP_BARS
        for name in F._COIN_NAMES:
            np.testing.assert_array_equal(got[name].to_numpy(), ref[name][WARMUP_BARS:], err_msg=name)


# --- the market once, the coins in parts --------------------------------------------------------------

@pytest.mark.parametrize("parts", [[["bitcoin"], ["ethereum"], ["solana"]], [["bitcoin", "solana"], ["ethereum"]]])
def test_parts_on_the_market_series_give_the_whole_builds_rows_byte_for_byte(prices, parts):
    """With holes in one coin and a 3-day outage (a warm-up restart) in another, each part built on the market
    series of every coin has exactly the whole build's rows of its coins."""
    hour = pd.Timedelta(hours=1)
    btc = prices.ts[prices.coin == "bitcoin"]
    holed = prices[~((prices.coin == "bitcoin") & prices.ts.isin(btc.iloc[[WARMUP_BARS + 5, 600, 601]]))]
    outage = (holed.coin == "solana") & holed.ts.between(btc.iloc[300], btc.iloc[300] + 3 * 24 * hour)
    frame = holed[~outage].reset_index(drop=True)
    whole = build_features(frame)
    restarted = whole[(whole.coin == "solana") & (whole.ts > btc.iloc[300])]
    assert len(restarted) and restarted.ts.iloc[0] > btc.iloc[300] + (3 * 24 + WARMUP_BARS) * hour
    series = market_features(frame)
    assert list(series.columns) == ["ts", *MARKET_COLUMNS] and series.ts.is_monotonic_increasing
    got = pd.concat([build_features(frame[frame.coin.isin(p)], market=series) for p in parts])
    got = got.sort_values(["coin", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, whole, check_exact=True)


def test_a_market_series_that_misses_the_parts_bars_is_refused(prices):
    series = market_features(prices[prices.ts < prices.ts.iloc[WARMUP_BARS + 50]])
    part = prices[prices.coin == "ethereum"]
    with pytest.raises(DataValidationError, match="lacks the bars of"):
        build_features(part, market=series)
    with pytest.raises(DataValidationError, match="strictly increasing"):
        build_features(part, market=market_features(prices).iloc[::-1])
    with pytest.raises(DataValidationError, match="must be a `market_features` frame"):
        build_features(part, market=market_features(prices).drop(columns="ts"))
