"""Property tests (hypothesis): scale-freeness, volume scaling, row order, causality."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptosentinel.features import FEATURE_NAMES, WARMUP_BARS, build_features

pytestmark = pytest.mark.data

VOLUME_FEATURES = [n for n in FEATURE_NAMES if n.startswith("volume_")]
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_prices(seed, vol, bars=WARMUP_BARS + 60, coins=("bitcoin", "ethereum")):
    rng = np.random.default_rng(seed)
    frames = []
    for i, coin in enumerate(coins):
        close = 20.0 * 4.0**i * np.exp(np.cumsum(rng.normal(0, vol, bars)))
        open_ = np.r_[close[0], close[:-1]]
        volume = rng.lognormal(6, 1.0, bars)
        volume[rng.random(bars) < 0.02] = 0.0  # some outage bars with no volume
        frames.append(pd.DataFrame({
            "coin": coin, "ts": pd.date_range("2022-03-01", periods=bars, freq="h", tz="UTC"), "open": open_,
            "high": np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, bars))),
            "low": np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, bars))),
            "close": close, "volume": volume, "granularity": "1h"}))
    return pd.concat(frames, ignore_index=True)


seeds = st.integers(0, 2**32 - 1)
vols = st.floats(0.001, 0.08)
factors = st.floats(1e-6, 1e6).filter(lambda x: x != 1.0)


def assert_features_close(a, b, names, rtol=1e-7, atol=1e-9):
    pd.testing.assert_frame_equal(a[["coin", "ts", "missing_bars"]], b[["coin", "ts", "missing_bars"]])
    for name in names:
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=rtol, atol=atol, err_msg=name)


@PROPS
@given(seed=seeds, vol=vols, factor=factors)
def test_price_features_are_scale_free(seed, vol, factor):
    prices = make_prices(seed, vol)
    scaled = prices.copy()
    scaled[["open", "high", "low", "close"]] *= factor
    assert_features_close(build_features(prices), build_features(scaled), FEATURE_NAMES)


@PROPS
@given(seed=seeds, vol=vols, factor=factors)
def test_volume_scaling_leaves_every_feature_unchanged(seed, vol, factor):
    prices = make_prices(seed, vol)
    base, scaled = build_features(prices), build_features(prices.assign(volume=prices.volume * factor))
    assert_features_close(base, scaled, VOLUME_FEATURES)
    others = [n for n in FEATURE_NAMES if n not in VOLUME_FEATURES]
    pd.testing.assert_frame_equal(base[others], scaled[others])


@PROPS
@given(seed=seeds, vol=vols, order_seed=seeds)
def test_row_order_does_not_matter(seed, vol, order_seed):
    prices = make_prices(seed, vol)
    shuffled = prices.sample(frac=1.0, random_state=np.random.RandomState(order_seed % 2**32))
    pd.testing.assert_frame_equal(build_features(prices), build_features(shuffled))


@PROPS
@given(seed=seeds, vol=vols, cut=st.integers(0, 59),
       future=st.lists(st.tuples(st.floats(1e-3, 1e3), st.floats(0, 1e9)), min_size=1, max_size=30))
def test_arbitrary_future_bars_do_not_change_the_past(seed, vol, cut, future):
    prices = make_prices(seed, vol)
    end = prices.ts.iloc[WARMUP_BARS + cut]
    past = prices[prices.ts <= end]
    rows = []
    for coin in ("bitcoin", "ethereum"):
        for k, (close, volume) in enumerate(future, start=1):
            rows.append({"coin": coin, "ts": end + pd.Timedelta(hours=k), "open": close, "high": close * 1.1,
                         "low": close * 0.9, "close": close, "volume": volume, "granularity": "1h"})
    extended = build_features(pd.concat([past, pd.DataFrame(rows)], ignore_index=True))
    pd.testing.assert_frame_equal(build_features(past), extended[extended.ts <= end].reset_index(drop=True))
