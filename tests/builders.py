"""Shared test data builders: the one place tests get price frames, feature frames, a filled local store and the
real CSV snapshots in ../shared/data from. Each goes through the project's own code (the simulator, `build_features`,
`LocalStore`, `read_csv_snapshot`), so the tests read data the way the package does."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptosentinel.features import build_features
from cryptosentinel.snapshots import read_csv_snapshot
from cryptosentinel.sources import load_prices, simulate_prices
from cryptosentinel.store import PRICES, features_group
from cryptosentinel.store_local import LocalStore

HOURLY = "hourly_binance_spot"  # the Binance hourly klines in ../shared/data
DAILY = "daily_coingecko"  # the CoinGecko daily exports in ../shared/data


def simulated_prices(coins: Iterable[str] = ("bitcoin", "ethereum"), start: Any = "2024-01-01",
                     end: Any = "2024-02-01", freq: str = "1h", seed: int = 42) -> pd.DataFrame:
    """Raw-schema prices from the project's simulator (`cryptosentinel.sources.simulate_prices`)."""
    return simulate_prices(list(coins), start, end, freq=freq, seed=seed)


def synthetic_prices(coins: Iterable[str] | None = None, **kw: Any) -> tuple[pd.DataFrame, dict]:
    """`load_prices("synthetic", ...)`: the simulator as ingest calls it, with its source record."""
    return load_prices("synthetic", None if coins is None else list(coins), **kw)


def random_walk_prices(coins: Iterable[str] = ("bitcoin", "ethereum"), bars: int = 900, seed: int = 0,
                       vol: float = 0.01, level: float = 50.0, step: float = 7.0, start: Any = "2024-01-01",
                       freq: str = "h") -> pd.DataFrame:
    """A plain random walk in the raw layout, for feature tests that must not depend on the simulator's dynamics.

    Coin i starts near `level * step**i`; each bar's log return is N(0, vol); high/low wrap open and close.
    `freq` is a pandas frequency ("h" hourly, "D" daily)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, coin in enumerate(coins):
        close = level * step**i * np.exp(np.cumsum(rng.normal(0, vol, bars)))
        open_ = np.r_[close[0], close[:-1]]
        frames.append(pd.DataFrame({
            "coin": coin, "ts": pd.date_range(start, periods=bars, freq=freq, tz="UTC"), "open": open_,
            "high": np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, bars))),
            "low": np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, bars))),
            "close": close, "volume": rng.lognormal(8, 0.7, bars), "market_cap": np.nan, "source": "test",
            "granularity": "1h" if freq == "h" else "1d"}))
    return pd.concat(frames, ignore_index=True)


def feature_frame(prices: pd.DataFrame, with_close: bool = False, **kw: Any) -> pd.DataFrame:
    """`build_features(prices, **kw)`; `with_close=True` adds each bar's close (the layout training labels from)."""
    feats = build_features(prices, **kw)
    if with_close:
        feats = feats.merge(prices[["coin", "ts", "close"]], on=["coin", "ts"], how="left")
    return feats


def local_store(path: str | Path, prices: pd.DataFrame | None = None,
                features: pd.DataFrame | None = None) -> LocalStore:
    """An open `LocalStore` at `path` holding `prices` (in PRICES) and `features` (in the current feature group).

    Use it as a context manager (`with local_store(...) as store:`) or close it yourself."""
    store = LocalStore(Path(path))
    if prices is not None:
        store.upsert(PRICES, prices)
    if features is not None:
        store.upsert(features_group(store), features)
    return store


def shared_snapshot(shared_data: Path, folder: str = HOURLY, coins: Iterable[str] | None = None):
    """The `CsvLoad` of one snapshot folder (or file) in ../shared/data, read by `read_csv_snapshot`."""
    return read_csv_snapshot(Path(shared_data) / folder, coins=None if coins is None else list(coins))


def shared_prices(shared_data: Path, folder: str = HOURLY, coins: Iterable[str] | None = None) -> pd.DataFrame:
    """Raw-schema prices of ../shared/data read in place by `read_csv_snapshot` (Binance's open last candle dropped)."""
    return shared_snapshot(shared_data, folder, coins).frame
