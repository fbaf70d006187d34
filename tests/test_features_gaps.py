"""Features survive missing data: market features from the coins present, warm-up restarts after long gaps,
train/serve parity and no look-ahead in both cases (issue 9, item 8)."""

import logging
import math

import numpy as np
import pandas as pd
import pytest
from builders import random_walk_prices

from cryptosentinel import features as F
from cryptosentinel.features import (
    FEATURE_NAMES,
    MAX_GAP,
    WARMUP_BARS,
    build_features,
    history_bars_needed,
    history_start,
    validate_features,
)

pytestmark = pytest.mark.data

HOUR = pd.Timedelta(hours=1)
COINS = ("bitcoin", "ethereum", "solana")
BARS = 2 * WARMUP_BARS + 30 * 24 + 300
GAP_AT = WARMUP_BARS + 200  # bar index where ethereum's 30-day outage starts
OWN = [*F._COIN_NAMES, "missing_bars"]


def make_prices(coins=COINS, bars=BARS, seed=3, vol=0.01, freq="h"):
    return random_walk_prices(coins, bars, seed, vol, level=30.0, step=9.0, start="2024-03-01", freq=freq)


def drop(prices, coin, start, hours):
    """`prices` without `coin`'s bars in [start, start + hours)."""
    hole = (prices.coin == coin) & (prices.ts >= start) & (prices.ts < start + hours * HOUR)
    return prices[~hole].reset_index(drop=True)


@pytest.fixture(scope="module")
def prices():
    return make_prices()


@pytest.fixture(scope="module")
def ts(prices):
    return pd.Series(prices.ts.unique())


@pytest.fixture(scope="module")
def day_hole(prices, ts):
    """Bitcoin missing for a day (24 bars: a gap of exactly `MAX_GAP`, kept as a short gap)."""
    return drop(prices, "bitcoin", ts[WARMUP_BARS + 300], 24)


@pytest.fixture(scope="module")
def month_gap(prices, ts):
    """Ethereum offline for 30 days."""
    return drop(prices, "ethereum", ts[GAP_AT], 30 * 24)


@pytest.fixture(scope="module")
def no_bitcoin(prices):
    return prices[prices.coin != "bitcoin"].reset_index(drop=True)


def market_by_hand(prices, t, n):
    """mkt_ret_n at t: the sum over the last n market bars of the mean one-bar log return of the coins that
    have the bar and the one before it (no gaps among the market bars here)."""
    wide = np.log(prices.pivot(index="ts", columns="coin", values="close"))
    m1 = wide.diff().where(wide.notna() & wide.shift().notna()).mean(axis=1)
    return m1.loc[:t].iloc[-n:].sum(), m1


# --- bitcoin missing entirely -----------------------------------------------------------------------

def test_features_without_bitcoin(no_bitcoin):
    out = validate_features(build_features(no_bitcoin))
    assert set(out.coin) == {"ethereum", "solana"}
    assert len(out) == 2 * (BARS - WARMUP_BARS)
    eth = out[out.coin == "ethereum"].set_index("ts")
    sol = out[out.coin == "solana"].set_index("ts")
    np.testing.assert_allclose(eth.mkt_ret_1, (eth.ret_1 + sol.ret_1) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(eth.mkt_ret_24, (eth.ret_24 + sol.ret_24) / 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(eth.excess_ret_24, -sol.excess_ret_24, rtol=0, atol=1e-12)


def test_a_single_coin_is_its_own_market(prices):
    out = build_features(prices[prices.coin == "solana"])
    np.testing.assert_allclose(out.mkt_ret_1, out.ret_1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out.mkt_ret_24, out.ret_24, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.mkt_vol_24, out.vol_24, rtol=1e-9)


def test_market_coin_is_deprecated_and_ignored(prices, caplog):
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.features"):
        out = build_features(prices, market_coin="bitcoin")
    assert "deprecated" in caplog.text
    pd.testing.assert_frame_equal(out, build_features(prices))


# --- one coin missing for a day ----------------------------------------------------------------------

def test_other_coins_keep_their_rows_when_one_is_missing_for_a_day(prices, ts, day_hole):
    out = build_features(day_hole)
    hole = ts[WARMUP_BARS + 300:WARMUP_BARS + 324]
    for coin in ("ethereum", "solana"):
        got = out[out.coin == coin]
        assert len(got) == BARS - WARMUP_BARS and got.ts.isin(hole).sum() == 24
    btc = out[out.coin == "bitcoin"]
    assert len(btc) == BARS - WARMUP_BARS - 24  # a gap of exactly a day: no restart, flagged
    assert btc.missing_bars.max() == 24
    assert np.isfinite(out[FEATURE_NAMES].to_numpy()).all()
    # at the hole, the market is the two coins present; 24 bars on, it is made of them too
    for t in (hole.iloc[0], hole.iloc[10], hole.iloc[-1] + HOUR, hole.iloc[-1] + 30 * HOUR):
        at = out[out.ts == t].set_index("coin")
        for n in (1, 24):
            expected, _ = market_by_hand(day_hole, t, n)
            np.testing.assert_allclose(at[f"mkt_ret_{n}"], expected, rtol=0, atol=1e-12)
    t = hole.iloc[5]
    present = out[out.ts == t]
    np.testing.assert_allclose(present.mkt_ret_1, present.ret_1.mean(), rtol=0, atol=1e-15)
    _, m1 = market_by_hand(day_hole, t, 1)
    np.testing.assert_allclose(present.mkt_vol_24, m1.loc[:t].iloc[-24:].std(ddof=0), rtol=1e-9)
    # their own features do not change at all
    full = build_features(prices)
    for coin in ("ethereum", "solana"):
        pd.testing.assert_frame_equal(out.loc[out.coin == coin, OWN].reset_index(drop=True),
                                      full.loc[full.coin == coin, OWN].reset_index(drop=True))


def test_a_gap_just_longer_than_max_gap_restarts(prices, ts):
    out = build_features(drop(prices, "bitcoin", ts[WARMUP_BARS + 300], 25))
    btc = out[out.coin == "bitcoin"]
    assert len(btc) == 300 + (BARS - WARMUP_BARS - 325 - WARMUP_BARS)
    assert btc.ts[btc.ts > ts[WARMUP_BARS + 300]].iloc[0] == ts[WARMUP_BARS + 325 + WARMUP_BARS]
    kept = build_features(drop(prices, "bitcoin", ts[WARMUP_BARS + 300], 25), max_gap=pd.Timedelta(hours=25))
    assert len(kept[kept.coin == "bitcoin"]) == BARS - WARMUP_BARS - 25


def test_gaps_are_counted_in_bar_time_of_the_granularity():
    daily = make_prices(("bitcoin",), bars=2 * WARMUP_BARS + 50, freq="D")
    one = build_features(daily.drop(daily.index[WARMUP_BARS + 10]))  # one missing day: a 24 h gap, kept
    assert len(one) == WARMUP_BARS + 50 - 1 and one.missing_bars.max() == 1
    two = build_features(daily.drop(daily.index[[WARMUP_BARS + 10, WARMUP_BARS + 11]]))  # 48 h: restart
    assert len(two) == 10 + (WARMUP_BARS + 50 - 12 - WARMUP_BARS)
    assert len(build_features(daily.drop(daily.index[[WARMUP_BARS + 10, WARMUP_BARS + 11]]),
                              max_gap=pd.Timedelta(days=2))) == WARMUP_BARS + 50 - 2


# --- a 30-day gap ------------------------------------------------------------------------------------

def test_warmup_restarts_after_a_30_day_gap(prices, ts, month_gap):
    out = build_features(month_gap)
    back = ts[GAP_AT + 30 * 24]  # ethereum's first bar after the gap
    eth = out[out.coin == "ethereum"]
    before, after = eth[eth.ts < back], eth[eth.ts >= back]
    assert len(before) == GAP_AT - WARMUP_BARS
    assert len(after) == BARS - GAP_AT - 30 * 24 - WARMUP_BARS > 0  # rows kept after the restarted warm-up
    first = after.iloc[0]
    assert first.ts == back + WARMUP_BARS * HOUR
    close = month_gap[month_gap.coin == "ethereum"].set_index("ts").close
    assert first.ts - 24 * HOUR >= back
    np.testing.assert_allclose(first.ret_24, math.log(close[first.ts] / close[first.ts - 24 * HOUR]), rtol=1e-12)
    assert after.missing_bars.max() == 0  # no window reaches across the gap
    # every per-coin feature after the gap is what the bars after the gap alone give
    alone = month_gap[(month_gap.coin == "ethereum") & (month_gap.ts >= back)]
    ref = F._coin_features(*(alone[k].to_numpy(np.float64) for k in ("high", "low", "close", "volume")))
    for name in F._COIN_NAMES:
        np.testing.assert_array_equal(after[name].to_numpy(), ref[name][WARMUP_BARS:], err_msg=name)
    # the other coins lose nothing, and their market during the outage comes from the two present
    for coin in ("bitcoin", "solana"):
        assert (out.coin == coin).sum() == BARS - WARMUP_BARS
    during = out[out.ts == back - 100 * HOUR]
    np.testing.assert_allclose(during.mkt_ret_1, during.ret_1.mean(), rtol=0, atol=1e-15)
    assert np.isfinite(out[FEATURE_NAMES].to_numpy()).all()


def test_a_market_wide_outage_restarts_the_market(prices, ts):
    start = ts[GAP_AT]
    out = build_features(prices[~prices.ts.between(start, start + 30 * 24 * HOUR, inclusive="left")])
    assert np.isfinite(out[FEATURE_NAMES].to_numpy()).all()
    first = out[out.ts >= start].iloc[0]
    assert first.ts == start + (30 * 24 + WARMUP_BARS) * HOUR
    after = prices[prices.ts >= start + 30 * 24 * HOUR]
    expected, _ = market_by_hand(after, first.ts, 24)
    np.testing.assert_allclose(first.mkt_ret_24, expected, rtol=0, atol=1e-12)


# --- parity: a recomputation from the history a caller reads equals the full one ----------------------

SCENARIOS = ["complete", "no_bitcoin", "day_hole", "month_gap"]


@pytest.fixture(scope="module")
def scenario(request, prices, no_bitcoin, day_hole, month_gap):
    frame = {"complete": prices, "no_bitcoin": no_bitcoin, "day_hole": day_hole, "month_gap": month_gap}[request.param]
    return frame, build_features(frame)


def firsts(ts):
    """Bars to start recomputing from: the first row, around the day hole, around and after the 30-day gap."""
    return [ts[WARMUP_BARS], ts[WARMUP_BARS + 305], ts[WARMUP_BARS + 330], ts[GAP_AT + 1],
            ts[GAP_AT + 30 * 24 + 3], ts[GAP_AT + 30 * 24 + WARMUP_BARS - 1], ts[GAP_AT + 30 * 24 + WARMUP_BARS],
            ts[BARS - 1]]


def assert_same(part, full):
    part, full = part.reset_index(drop=True), full.reset_index(drop=True)
    pd.testing.assert_frame_equal(part[["coin", "ts", "missing_bars"]], full[["coin", "ts", "missing_bars"]])
    np.testing.assert_allclose(part[FEATURE_NAMES].to_numpy(), full[FEATURE_NAMES].to_numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
def test_reading_from_history_start_reproduces_the_full_history(scenario, ts):
    frame, full = scenario
    for first in firsts(ts):
        start = history_start(frame[["coin", "ts", "granularity"]], first)
        assert start <= first
        part = build_features(frame[frame.ts >= start])
        assert_same(part[part.ts >= first], full[full.ts >= first])


@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
def test_incremental_updates_equal_the_full_recomputation(scenario, ts):
    """What a scheduled job does: every few hours, recompute from its newest row, reading only the tail."""
    frame, full = scenario
    newest = ts[WARMUP_BARS - 1]
    built = []
    for now in [*ts[WARMUP_BARS + 290:WARMUP_BARS + 340:7], *ts[GAP_AT + 30 * 24 - 5:BARS:97], ts[BARS - 1]]:
        known = frame[frame.ts <= now]
        start = history_start(known[["coin", "ts"]], newest + HOUR)
        rows = build_features(known[known.ts >= start])
        built.append(rows[rows.ts > newest])
        newest = now
    assert_same(pd.concat(built).sort_values(["coin", "ts"]), full)  # every row, each computed once


@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
@pytest.mark.parametrize("rows", [1, 24])
def test_serving_tail_reproduces_the_full_history(scenario, ts, rows):
    """Serving reads each coin's last history_bars_needed(rows) bars up to `end`, and wants the rows of the
    latest `rows` bars (a coin whose newest rows are older, here ethereum during its outage, is stale)."""
    frame, full = scenario
    for end in firsts(ts):
        served = build_features(frame[frame.ts <= end].groupby("coin").tail(history_bars_needed(rows)))
        latest = end - rows * HOUR
        assert_same(served[served.ts > latest], full[(full.ts > latest) & (full.ts <= end)])


def test_history_start_finds_the_run_after_a_long_gap(month_gap, ts):
    back = ts[GAP_AT + 30 * 24]
    eth = month_gap[month_gap.coin == "ethereum"]
    assert history_start(eth, back + 10 * HOUR) == back
    assert history_start(eth, back + (WARMUP_BARS + 10) * HOUR) == back + 10 * HOUR
    assert history_start(month_gap, back + 10 * HOUR) == back + (10 - WARMUP_BARS) * HOUR  # the others need more
    assert history_start(eth, ts[0]) == ts[0]
    # a window of the stored bars is enough when the answer lands later than its start plus max_gap
    first = ts[GAP_AT + 30 * 24 + 100]
    exact = history_start(month_gap, first)
    for hours in (WARMUP_BARS + 30, 3 * WARMUP_BARS):
        window = month_gap[month_gap.ts >= first - hours * HOUR]
        assert history_start(window, first) == exact > first - hours * HOUR + MAX_GAP
    short = month_gap[month_gap.ts >= first - (WARMUP_BARS - 30) * HOUR]
    assert history_start(short, first) <= first - (WARMUP_BARS - 30) * HOUR + MAX_GAP  # too short: widen
    with pytest.raises(ValueError, match="non-negative"):
        history_start(eth, back, max_gap=pd.Timedelta(hours=-1))


# --- look-ahead: a future bar changes no earlier row ------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
@pytest.mark.parametrize("cut_at", [WARMUP_BARS + 305, WARMUP_BARS + 330, GAP_AT + 30 * 24 + WARMUP_BARS + 3])
@pytest.mark.parametrize("change", ["one_coin", "all_coins", "remove"])
def test_future_bars_change_no_earlier_row(scenario, ts, cut_at, change):
    frame, full = scenario
    cut = ts[cut_at]
    future = frame.ts > cut
    changed = frame.copy()
    if change == "one_coin":  # another coin's future moves the market: no earlier row of any coin may move
        sel = future & (frame.coin == "solana")
        changed.loc[sel, ["close", "high", "low"]] *= 5.0
    elif change == "all_coins":
        changed.loc[future, ["close", "high", "low"]] *= np.random.default_rng(cut_at).uniform(0.2, 5.0, (future.sum(), 1))
        changed.loc[future, "volume"] = 0.0
    else:  # a future outage, long enough to restart every coin
        changed = changed[~(future & (frame.ts < cut + 40 * HOUR))]
    again = build_features(changed)
    pd.testing.assert_frame_equal(full[full.ts <= cut].reset_index(drop=True),
                                  again[again.ts <= cut].reset_index(drop=True))
    past = build_features(frame[frame.ts <= cut])
    pd.testing.assert_frame_equal(past, full[full.ts <= cut].reset_index(drop=True))


def test_max_gap_default_and_version():
    assert MAX_GAP.total_seconds() == 24 * 3600
    assert F.FEATURE_CODE_VERSION == "2"
    with pytest.raises(ValueError, match="non-negative"):
        build_features(make_prices(bars=10), max_gap=pd.Timedelta(hours=-1))


# --- the gap limit is a setting of the pipeline ---------------------------------------------------------------

def test_the_pipeline_takes_the_gap_limit_from_settings(tmp_path, prices, ts):
    """`Settings.max_gap_hours` decides, in `update_features`, whether a 30-hour outage restarts the warm-up;
    an incremental update with the same setting equals the full recomputation."""
    from builders import local_store

    from cryptosentinel import pipelines as steps
    from cryptosentinel.config import Settings
    from cryptosentinel.store import PRICES, features_group

    holed = drop(prices, "bitcoin", ts[WARMUP_BARS + 300], 30)
    cut = ts[BARS - 100]
    for hours, restarts in ((24.0, True), (48.0, False)):
        settings = Settings(_env_file=None, data_dir=tmp_path / str(hours), coins=list(COINS), max_gap_hours=hours)
        with local_store(tmp_path / f"{hours}.sqlite", holed[holed.ts < cut]) as store:
            steps.update_features(store, settings=settings)
            store.upsert(PRICES, holed[holed.ts >= cut])
            run = steps.update_features(store, settings=settings)
            assert run["max_gap_hours"] == hours
            stored = store.read(features_group(store)).sort_values(["coin", "ts"]).reset_index(drop=True)
        full = build_features(holed, max_gap=pd.Timedelta(hours=hours)).sort_values(["coin", "ts"])
        pd.testing.assert_frame_equal(stored[full.columns], full.reset_index(drop=True), check_dtype=False,
                                      rtol=1e-9, atol=1e-12)
        btc = stored[stored.coin == "bitcoin"]
        assert (len(btc) == BARS - WARMUP_BARS - 30 - WARMUP_BARS) is restarts
