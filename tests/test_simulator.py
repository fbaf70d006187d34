"""The seeded market simulator: schema, determinism and the stylised facts of crypto returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptosentinel.config import DEFAULT_COINS, ConfigError
from cryptosentinel.ingest import validate_prices
from cryptosentinel.sources import COIN_PROFILES, REGIMES, simulate_prices, simulated_regimes

pytestmark = pytest.mark.data

COINS = list(DEFAULT_COINS)


@pytest.fixture(scope="module", params=[42, 7, 2024])
def year(request):
    """8 coins x 1 year of hourly bars, for three seeds."""
    seed = request.param
    return seed, simulate_prices(COINS, "2023-01-01", "2024-01-01", freq="1h", seed=seed)


def wide(df, col):
    return df.pivot(index="ts", columns="coin", values=col)


def returns(df):
    return np.log(wide(df, "close")).diff().dropna()


def test_schema_shape_and_labels(year):
    _, df = year
    out = validate_prices(df)
    assert len(out) == 8 * 365 * 24
    assert set(out["source"]) == {"synthetic"} and set(out["granularity"]) == {"1h"}
    assert out["ts"].min() == pd.Timestamp("2023-01-01", tz="UTC")
    assert out["ts"].max() == pd.Timestamp("2023-12-31 23:00", tz="UTC")
    assert (out["market_cap"] > 0).all()


def test_realistic_starting_prices():
    df = simulate_prices(COINS, "2024-01-01", "2024-01-02")
    first = df.groupby("coin")["open"].first()
    for coin in COINS:
        assert first[coin] == COIN_PROFILES[coin][0]
    assert 20_000 < first["bitcoin"] < 150_000 and first["dogecoin"] < 1


def test_same_seed_same_frame_other_seed_other_frame():
    a = simulate_prices(["bitcoin", "solana"], "2024-01-01", "2024-02-01", seed=5)
    pd.testing.assert_frame_equal(a, simulate_prices(["bitcoin", "solana"], "2024-01-01", "2024-02-01", seed=5))
    b = simulate_prices(["bitcoin", "solana"], "2024-01-01", "2024-02-01", seed=6)
    assert not np.allclose(a["close"], b["close"])


def test_fat_tails(year):
    _, df = year
    kurt = stats.kurtosis(returns(df), fisher=False)  # Pearson: 3 for a normal
    assert (kurt > 3).all(), kurt


def test_volatility_clustering(year):
    _, df = year
    r = returns(df)
    acf_abs = np.array([r[c].abs().autocorr(1) for c in r])
    acf_raw = np.array([r[c].autocorr(1) for c in r])
    assert (acf_abs > 0.05).all(), acf_abs  # |returns| cluster
    assert (np.abs(acf_raw) < acf_abs).all()  # while returns themselves barely do


def test_common_market_factor(year):
    _, df = year
    corr = returns(df).corr().to_numpy()
    pairs = corr[np.triu_indices(len(COINS), 1)]
    assert (pairs > 0.2).all(), pairs.min()


def test_volume_follows_the_size_of_moves(year):
    _, df = year
    r, v = returns(df), wide(df, "volume").iloc[1:]
    corr = [np.corrcoef(v[c], r[c].abs())[0, 1] for c in r]
    assert min(corr) > 0.15, corr


def test_bars_are_consistent(year):
    _, df = year
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    btc = df[df["coin"] == "bitcoin"]
    assert np.allclose(btc["open"].to_numpy()[1:], btc["close"].to_numpy()[:-1])  # open = previous close


@pytest.mark.parametrize("seed", [42, 7, 2024])
def test_regimes_switch_and_change_volatility(seed):
    df = simulate_prices(COINS, "2021-01-01", "2024-01-01", freq="1h", seed=seed)
    names = simulated_regimes("2021-01-01", "2024-01-01", seed=seed)  # the regimes that drove these years
    assert len(names) == df["ts"].nunique() and set(names) <= {r[0] for r in REGIMES}
    regime = names.map({r[0]: i for i, r in enumerate(REGIMES)}).to_numpy()
    switches = int((np.diff(regime) != 0).sum())
    assert 10 <= switches <= 600  # regimes last days to weeks
    assert set(np.unique(regime)) == set(range(len(REGIMES)))
    r = returns(df).abs().mean(axis=1).to_numpy()
    turbulent = regime[1:] == 2
    assert r[turbulent].mean() > 1.5 * r[~turbulent].mean()


def test_daily_bars_at_midnight():
    df = simulate_prices(["bitcoin", "ethereum"], "2024-01-01 05:00", "2024-03-01", freq="1d", seed=1)
    validate_prices(df)
    assert (df["ts"] == df["ts"].dt.normalize()).all()
    assert df["ts"].min() == pd.Timestamp("2024-01-02", tz="UTC") and df["granularity"].eq("1d").all()


def test_unknown_coin_gets_a_default_profile():
    df = simulate_prices(["shiba-inu"], "2024-01-01", "2024-01-03")
    assert len(df) == 48 and (df["close"] > 0).all()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="freq must be"):
        simulate_prices(["bitcoin"], freq="5m")
    with pytest.raises(ConfigError, match="empty window"):
        simulate_prices(["bitcoin"], "2024-01-02", "2024-01-01")
    with pytest.raises(ConfigError, match="at least one coin"):
        simulate_prices([])


def test_overlapping_windows_and_other_coin_sets_agree_bar_for_bar():
    """One path per seed: incremental ingests and backfills see one consistent history."""
    a = simulate_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-03-01", seed=3)
    b = simulate_prices(["ethereum", "solana", "bitcoin"], "2024-02-01", "2024-04-01", seed=3)
    key = ["coin", "ts"]
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(both) == 2 * 29 * 24
    for col in ("open", "high", "low", "close", "volume", "market_cap"):
        np.testing.assert_array_equal(both[f"{col}_a"], both[f"{col}_b"])


def test_outside_the_simulated_span_is_refused():
    with pytest.raises(ConfigError, match="the simulator covers"):
        simulate_prices(["bitcoin"], "2017-12-01", "2018-02-01")
