"""Indicator values agree with TA-Lib (the reference) within 1e-6 after the warm-up, on real and generated data."""

import numpy as np
import pytest
import talib
from builders import random_walk_prices, shared_prices

from cryptosentinel.features import WARMUP_BARS, build_features

pytestmark = pytest.mark.code

TOL = 1e-6


def make_prices(coins, bars, seed, vol, level):
    return random_walk_prices(coins, bars, seed, vol, level=level, step=3.0, start="2023-06-01")


def talib_reference(high, low, c):
    """The features, computed straight from TA-Lib on one coin's full history (NaN in the warm-up)."""
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, matype=0)
    r = np.r_[np.nan, np.diff(np.log(c))]
    vol = {n: np.r_[np.nan, talib.STDDEV(r[1:], n, 1.0)] for n in (24, 168)}
    return {
        "rsi_14": talib.RSI(c, 14),
        "macd_12_26": macd / c, "macd_signal_9": signal / c, "macd_hist": hist / c,
        "bb_pct_b_20": (c - lower) / (upper - lower), "bb_width_20": (upper - lower) / middle,
        "atr_14": talib.ATR(high, low, c, 14) / c,
        "close_sma_24": c / talib.SMA(c, 24) - 1, "close_sma_168": c / talib.SMA(c, 168) - 1,
        "ema_ratio_12_26": talib.EMA(c, 12) / talib.EMA(c, 26) - 1,
        "roc_24": talib.ROCR(c, 24) - 1, "drawdown_168": c / talib.MAX(c, 168) - 1,
        "vol_24": vol[24], "vol_168": vol[168],
    }


def compare(prices, features):
    """Largest |ours - TA-Lib| per feature over all coins and all rows past the warm-up."""
    worst: dict[str, float] = {}
    for coin, group in prices.sort_values(["coin", "ts"]).groupby("coin"):
        ours = features[features.coin == coin]
        past_warmup = group.ts.iloc[WARMUP_BARS:]
        kept = past_warmup.isin(ours.ts).to_numpy()  # every bar past the warm-up (no gap here exceeds a day)
        assert kept.sum() == len(ours) == len(past_warmup)
        ref = talib_reference(*(group[k].to_numpy(np.float64) for k in ("high", "low", "close")))
        for name, values in ref.items():
            expected = values[WARMUP_BARS:][kept]
            assert np.isfinite(expected).all(), (coin, name)
            worst[name] = max(worst.get(name, 0.0), float(np.abs(ours[name].to_numpy() - expected).max()))
    return worst


@pytest.mark.parametrize("seed, vol, level", [(0, 0.01, 100.0), (1, 0.03, 0.0004), (2, 0.002, 65000.0),
                                              (3, 0.05, 1.0)])
def test_indicators_match_talib_on_generated_data(seed, vol, level):
    prices = make_prices(("bitcoin", "ethereum", "dogecoin"), bars=1500, seed=seed, vol=vol, level=level)
    worst = compare(prices, build_features(prices))
    assert max(worst.values()) <= TOL, {k: v for k, v in worst.items() if v > TOL}


@pytest.mark.data  # the real snapshot: a data check as well as a unit one
@pytest.mark.shared_data
def test_indicators_match_talib_on_real_data(shared_data):
    prices = shared_prices(shared_data)  # read_csv_snapshot drops each coin's partial last candle
    features = build_features(prices)
    # bitcoin's file ends an hour before the others: those rows are kept all the same (no gap exceeds a day)
    assert len(features) == len(prices) - 8 * WARMUP_BARS
    worst = compare(prices, features)
    assert set(worst) >= {"rsi_14", "macd_12_26", "macd_signal_9", "macd_hist", "bb_pct_b_20", "atr_14"}
    assert max(worst.values()) <= TOL, {k: v for k, v in worst.items() if v > TOL}


def test_bollinger_uses_population_std_like_talib():
    """Our band width uses ddof=0 as TA-Lib does; pandas' default ddof=1 would be sqrt(20/19) wider."""
    prices = make_prices(("bitcoin",), bars=WARMUP_BARS + 50, seed=5, vol=0.01, level=10.0)
    ours = build_features(prices).bb_width_20.to_numpy()
    close = prices.close
    mid = close.rolling(20).mean()
    ddof0 = (4 * close.rolling(20).std(ddof=0) / mid).to_numpy()[WARMUP_BARS:]
    ddof1 = (4 * close.rolling(20).std(ddof=1) / mid).to_numpy()[WARMUP_BARS:]
    np.testing.assert_allclose(ours, ddof0, rtol=1e-9)
    assert not np.allclose(ours, ddof1, rtol=1e-3)
