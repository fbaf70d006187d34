"""Benchmark: build_features on the 8 real hourly coins against TA-Lib, side by side.

Run from the repo root: `.venv/bin/python benchmarks/bench_features.py`. Reads ../shared/data in place and
writes reports/bench/features.json.

Jobs (each the median of REPEATS rounds; the jobs run interleaved within a round so that machine load hits
them alike; one warm-up round first, which also pays any JIT or cache loading):

* `ours`: `build_features(prices)` on the canonical stacked frame sorted by (coin, ts): input checks, all
  35 features, the market of the coins present, calendar, the keyed output frame (each run's rows past the
  warm-up; a coin's run restarts after a gap longer than `MAX_GAP`).
* `talib_same_set` (like for like): `talib_build_features(prices)` below, a TA-Lib implementation of the
  same 35 features from the same stacked frame to the same keyed frame. TA-Lib computes every indicator it
  has a function for (LN, MOM, STDDEV, RSI, MACD, BBANDS, SMA, EMA, ROCP, MAX, NATR, SUM), called per run on
  contiguous float64 arrays; NumPy does the per-row arithmetic that makes them scale-free, writing into
  the output block. The market columns come from an equal-weighted index of the coins present at each bar
  (laid out wide, one column per coin: the mean of the one-bar log returns of the coins whose previous bar
  is not older than the market's previous bar; TA-Lib SUM and STDDEV over the index's own bars, restarting
  after a gap longer than `MAX_GAP`), taken by timestamp; the calendar columns are derived from the
  timestamps, `missing_bars` counted. It checks nothing (its input is known to be clean), so it is a
  lower bound for a TA-Lib feature step. Its values (every column, keys and `missing_bars`) are checked
  against `build_features` before timing.
* `talib_core` (the old yardstick, not like for like): eight TA-Lib calls per coin, RSI(14), MACD(12,26,9),
  BBANDS(20,2), ATR(14), SMA(24), SMA(168), EMA(12), EMA(26), from the same stacked frame into one float64
  block of twelve columns aligned with the input rows. No normalisation, join, calendar or keyed frame.
* `talib_core_kernel`: the same eight calls on per-coin arrays split beforehand (TA-Lib's bare time).

`first_call_seconds` times the first `build_features` call in this process (imports excluded), which
includes loading the compiled kernels.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
import pandas as pd
import talib
from _common import SHARED, write_result

from cryptosentinel import features as F

REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
TICKERS = {"BTC": "bitcoin", "ETH": "ethereum", "SOL": "solana", "ADA": "cardano", "XRP": "ripple",
           "DOGE": "dogecoin", "LTC": "litecoin", "BNB": "binancecoin"}
CORE_OUTPUTS = 12  # rsi, macd x3, bbands x3, atr, sma x2, ema x2
STEP_NS = 3_600 * 10**9


def load() -> pd.DataFrame:
    frames = []
    for path in sorted(SHARED.glob("*USDT_1h.csv")):
        raw = pd.read_csv(path).iloc[:-1]  # the last candle was still open
        frames.append(pd.DataFrame({
            "coin": TICKERS[path.name.split("USDT")[0]], "ts": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
            "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"],
            "volume": raw["volume"], "market_cap": np.nan, "source": "binance", "granularity": "1h"}))
    return pd.concat(frames).sort_values(["coin", "ts"], ignore_index=True)


# --- like for like: the same 35 features with TA-Lib ---------------------------------------------------

def _talib_coin(high: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, w: int,
                dst: dict[str, np.ndarray]) -> None:
    """One coin's features for bars w.. written into the `dst` column views (all TA-Lib outputs full length)."""
    cw = c[w:]
    logc = talib.LN(c)
    for n in F.RETURN_WINDOWS:
        dst[f"ret_{n}"][:] = talib.MOM(logc, n)[w:]
    r1 = talib.MOM(logc, 1)
    for n in F.VOL_WINDOWS:
        dst[f"vol_{n}"][:] = talib.STDDEV(r1, n, 1.0)[w:]
    dst["rsi_14"][:] = talib.RSI(c, F.RSI_WINDOW)[w:]
    macd, signal, hist = talib.MACD(c, F.MACD_FAST, F.MACD_SLOW, F.MACD_SIGNAL)
    np.divide(macd[w:], cw, out=dst["macd_12_26"])
    np.divide(signal[w:], cw, out=dst["macd_signal_9"])
    np.divide(hist[w:], cw, out=dst["macd_hist"])
    upper, middle, lower = (x[w:] for x in talib.BBANDS(c, F.BB_WINDOW, F.BB_STDS, F.BB_STDS, matype=0))
    width = upper - lower
    pct_b = dst["bb_pct_b_20"]
    pct_b.fill(0.5)  # a flat window: the bands collapse onto the price
    np.divide(np.subtract(cw, lower), width, out=pct_b, where=width > 0)
    np.divide(width, middle, out=dst["bb_width_20"])
    for n in F.SMA_WINDOWS:
        col = dst[f"close_sma_{n}"]
        np.divide(cw, talib.SMA(c, n)[w:], out=col)
        col -= 1.0
    col = dst["ema_ratio_12_26"]
    np.divide(talib.EMA(c, F.MACD_FAST)[w:], talib.EMA(c, F.MACD_SLOW)[w:], out=col)
    col -= 1.0
    dst["roc_24"][:] = talib.ROCP(c, F.ROC_WINDOW)[w:]
    long, skip = F.MOM_WINDOWS
    dst["mom_168_24"][:] = talib.MOM(logc, long - skip)[w - skip:len(c) - skip]
    col = dst["drawdown_168"]
    np.divide(cw, talib.MAX(c, F.DRAWDOWN_WINDOW)[w:], out=col)
    col -= 1.0
    col = dst["atr_14"]
    np.multiply(talib.NATR(np.fmax(high, c), np.fmin(low, c), c, F.ATR_WINDOW)[w:], 0.01, out=col)
    short, long = F.VOLUME_WINDOWS
    vw = v[w:]
    mean = {n: talib.SMA(v, n)[w:] for n in (short, long)}
    for n in (short, long):
        sd = talib.STDDEV(v, n, 1.0)[w:]
        z = dst[f"volume_z_{n}"]
        z.fill(0.0)  # constant volume over the window
        np.divide(np.subtract(vw, mean[n]), sd, out=z, where=sd > 0)
    lo = mean[long] * F.VOLUME_FLOOR
    dead = mean[long] == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dst["volume_ratio_24_168"]
        np.log(np.maximum(mean[short], lo) / np.maximum(mean[long], lo), out=ratio)
        change = dst["volume_change_1"]
        np.log(np.maximum(vw, lo) / np.maximum(v[w - 1:-1], lo), out=change)
    ratio[dead] = 0.0
    change[dead] = 0.0


def _talib_market(code: np.ndarray, ts_ns: np.ndarray, logc: np.ndarray, run_start: np.ndarray,
                  gap_ns: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The equal-weighted market of the coins present: its bar times and its features at each.

    Laid out wide (one column per coin): at each market bar, the mean of the one-bar log returns of the coins
    whose previous bar is not older than the market's previous bar (all coins with a return there, if none is),
    then TA-Lib SUM and STDDEV over the market's own bars, NaN within a market run's first n - 1 bars.
    """
    r1 = talib.MOM(logc, 1)  # across the whole stacked array: the first bar of every run is masked out below
    r1[run_start] = np.nan
    inside = np.flatnonzero(~np.isnan(r1))
    times, t_idx = np.unique(ts_ns[inside], return_inverse=True)
    c_idx = code[inside]
    ret = np.full((len(times), int(code[-1]) + 1), np.nan)
    prev = np.zeros(ret.shape, dtype=np.int64)
    ret[t_idx, c_idx] = r1[inside]
    prev[t_idx, c_idx] = ts_ns[inside - 1]  # the coin's previous bar (same coin: a run's first bar is not inside)
    present = ~np.isnan(ret)
    fresh = present & (prev >= np.r_[times[0], times[:-1]][:, None])
    use = np.where(fresh.any(axis=1)[:, None], fresh, present)
    m1 = np.where(use, ret, 0.0).sum(axis=1) / use.sum(axis=1)
    new = np.r_[True, np.diff(times) - STEP_NS > gap_ns]
    age = np.arange(len(times)) - np.maximum.accumulate(np.where(new, np.arange(len(times)), 0))
    market = {}
    for n in F.MARKET_RETURN_WINDOWS:
        market[f"mkt_ret_{n}"] = m1.copy() if n == 1 else talib.SUM(m1, n)
    market[f"mkt_vol_{F.MARKET_VOL_WINDOW}"] = talib.STDDEV(m1, F.MARKET_VOL_WINDOW, 1.0)
    for name in market:
        market[name][age < F.FEATURE_WINDOWS[name][0] - 1] = np.nan
    return times, market


def talib_build_features(prices: pd.DataFrame, *, max_gap: pd.Timedelta = F.MAX_GAP) -> pd.DataFrame:
    """The keyed feature frame of `build_features`, computed with TA-Lib (input assumed sorted by (coin, ts))."""
    w = F.WARMUP_BARS
    gap_ns = int(pd.Timedelta(max_gap).value)
    coin = prices["coin"].to_numpy(dtype=object)
    ts = prices["ts"].array
    ts_ns = ts.asi8
    high, low, close, volume = (prices[k].to_numpy(np.float64) for k in ("high", "low", "close", "volume"))
    # runs: each coin's bars, cut after every gap longer than max_gap; each run's bars past the warm-up give rows
    new_coin = np.r_[False, coin[1:] != coin[:-1]]
    run_start = new_coin | (np.r_[0, np.diff(ts_ns)] - STEP_NS > gap_ns)
    run_start[0] = True
    starts = np.flatnonzero(run_start)
    ends = np.r_[starts[1:], len(coin)]
    counts = np.maximum(ends - starts - w, 0)
    offsets = np.r_[0, np.cumsum(counts)]
    rows = np.concatenate([np.arange(s + w, e) for s, e in zip(starts, ends, strict=True) if e - s > w]
                          or [np.arange(0)])
    out = np.empty((offsets[-1], len(F.FEATURE_NAMES)), order="F")
    col = {name: j for j, name in enumerate(F.FEATURE_NAMES)}
    per_coin = [name for name in F.FEATURE_NAMES if F.FEATURE_SPEC[name][0] not in ("calendar", "market")]
    for i in np.flatnonzero(counts):
        s, e, r0, r1 = starts[i], ends[i], offsets[i], offsets[i + 1]
        _talib_coin(high[s:e], low[s:e], close[s:e], volume[s:e], w,
                    {name: out[r0:r1, col[name]] for name in per_coin})
    times, market = _talib_market(np.cumsum(new_coin), ts_ns, talib.LN(close), run_start, gap_ns)
    hours = times // (3_600 * 10**9)  # the calendar of the market's bars, taken with the market columns
    hour, dow = hours % 24, (hours // 24 + 3) % 7
    market["hour"], market["dow"] = hour.astype(np.float64), dow.astype(np.float64)
    market["hour_sin"], market["hour_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    market["dow_sin"], market["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
    row_ns = ts_ns[rows]
    pos = np.searchsorted(times, row_ns)  # a row's bar has a one-bar return inside its run: a market bar
    for name, values in market.items():
        np.take(values, pos, out=out[:, col[name]])
    np.subtract(out[:, col["ret_24"]], out[:, col["mkt_ret_24"]], out=out[:, col["excess_ret_24"]])
    gap = F.GAP_WINDOW
    missing = (row_ns - ts_ns[rows - gap] - gap * STEP_NS + STEP_NS // 2) // STEP_NS  # bars, rounded
    frame = pd.DataFrame(out, columns=F.FEATURE_NAMES, copy=False)
    frame.insert(0, "ts", pd.Series(ts[rows], copy=False))
    frame.insert(0, "coin", coin[rows])
    frame["missing_bars"] = missing
    return frame


# --- the old yardstick: eight core TA-Lib indicators ----------------------------------------------------

def talib_core_indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> list[np.ndarray]:
    rsi = talib.RSI(close, 14)
    macd = talib.MACD(close, 12, 26, 9)
    bbands = talib.BBANDS(close, 20, 2.0, 2.0, matype=0)
    atr = talib.ATR(high, low, close, 14)
    mas = [talib.SMA(close, 24), talib.SMA(close, 168), talib.EMA(close, 12), talib.EMA(close, 26)]
    return [rsi, *macd, *bbands, atr, *mas]


def talib_core(prices: pd.DataFrame) -> np.ndarray:
    coin = prices["coin"].to_numpy(dtype=object)
    high, low, close = (prices[c].to_numpy(np.float64) for c in ("high", "low", "close"))
    starts = np.flatnonzero(np.r_[True, coin[1:] != coin[:-1]])
    ends = np.r_[starts[1:], len(coin)]
    out = np.empty((len(coin), CORE_OUTPUTS), order="F")
    for s, e in zip(starts, ends, strict=True):
        for j, values in enumerate(talib_core_indicators(high[s:e], low[s:e], close[s:e])):
            out[s:e, j] = values
    return out


def check_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """Largest |difference| between the two frames' features (columns, keys and missing_bars must be equal)."""
    if list(ours.columns) != list(theirs.columns):
        raise AssertionError(f"columns differ: {list(ours.columns)} vs {list(theirs.columns)}")
    pd.testing.assert_frame_equal(ours[["coin", "ts", "missing_bars"]], theirs[["coin", "ts", "missing_bars"]])
    diff = np.abs(ours[F.FEATURE_NAMES].to_numpy() - theirs[F.FEATURE_NAMES].to_numpy())  # NaN anywhere fails
    worst = float(diff.max())
    if not worst < 1e-6:
        by_column = dict(zip(F.FEATURE_NAMES, diff.max(axis=0), strict=True))
        raise AssertionError(f"talib_build_features differs from build_features by {worst}: {by_column}")
    return worst


def spread(times: list[float]) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(times, n=4)
    return {"median": statistics.median(times), "min": min(times), "q1": q1, "q3": q3, "max": max(times)}


def main() -> None:
    prices = load()
    t0 = time.perf_counter()
    ours = F.build_features(prices)
    first_call = time.perf_counter() - t0
    max_abs_diff = check_same(ours, talib_build_features(prices))
    per_coin = [tuple(g[c].to_numpy(np.float64).copy() for c in ("high", "low", "close"))
                for _, g in prices.groupby("coin", sort=True)]

    def talib_core_kernel() -> None:
        for high, low, close in per_coin:
            talib_core_indicators(high, low, close)

    jobs = {"ours": lambda: F.build_features(prices), "talib_same_set": lambda: talib_build_features(prices),
            "talib_core": lambda: talib_core(prices), "talib_core_kernel": talib_core_kernel}
    runs: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm-up round
        job()
    load_before = os.getloadavg()[0]
    for _ in range(REPEATS):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            runs[name].append(time.perf_counter() - t0)
    stats = {name: spread(times) for name, times in runs.items()}
    med = {name: s["median"] for name, s in stats.items()}
    like = med["ours"] / med["talib_same_set"]
    core = med["ours"] / med["talib_core"]
    result = {
        "rows_in": len(prices), "rows_out": len(ours), "coins": int(prices.coin.nunique()),
        "warmup_bars": F.WARMUP_BARS, "feature_version": F.FEATURE_VERSION,
        "feature_columns": len(F.FEATURE_NAMES), "talib_core_output_columns": CORE_OUTPUTS,
        "repeats": REPEATS, "statistic": "median of interleaved rounds",
        "ratio_like_for_like": like,  # ours / talib_same_set: the requirement is <= 2
        "ratio_core_indicators": core,  # ours / talib_core: 35 features vs 12 raw indicator columns
        "ratio_core_kernel": med["ours"] / med["talib_core_kernel"],
        "seconds": stats, "all_runs_seconds": runs, "first_call_seconds": first_call,
        "talib_same_set_max_abs_diff": max_abs_diff,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
                    "numpy": np.__version__, "pandas": pd.__version__, "talib": talib.__version__},
    }
    print(f"features benchmark: {len(prices):,} rows in, {len(ours):,} rows out, {len(F.FEATURE_NAMES)} features,"
          f" {REPEATS} rounds, load {load_before:.1f}")
    print(f"{'job':<19}{'median ms':>10}{'min':>8}{'q1':>8}{'q3':>8}{'max':>8}")
    for name, s in stats.items():
        print(f"{name:<19}" + "".join(f"{s[k] * 1e3:{10 if k == 'median' else 8}.1f}"
                                      for k in ("median", "min", "q1", "q3", "max")))
    print(f"like for like (35 features, same frame in and out): ours / talib_same_set = {like:.2f}")
    print(f"old yardstick (8 core TA-Lib indicators, 12 columns): ours / talib_core = {core:.2f}")
    print(f"first build_features call in this process: {first_call * 1e3:.0f} ms;"
          f" talib_same_set max |diff| vs ours = {max_abs_diff:.1e}")
    write_result("features", result)


if __name__ == "__main__":
    main()
