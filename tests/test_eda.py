"""Exploratory analysis: known properties of constructed frames are found, findings follow the numbers."""

import copy
import io
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from builders import shared_prices, simulated_prices
from matplotlib.figure import Figure

from cryptosentinel import eda, eda_summary
from cryptosentinel.config import DataValidationError

pytestmark = pytest.mark.data

COINS = ["bitcoin", "ethereum", "solana"]


def frame_from_returns(rets: dict, start="2024-01-01", freq="1h", volume=None, source="synthetic"):
    """A raw-schema price frame whose log returns per coin are `rets[coin]`."""
    parts = []
    for coin, r in rets.items():
        r = np.asarray(r, dtype=float)
        close = 100 * np.exp(np.cumsum(r))
        open_ = np.r_[100.0, close[:-1]]
        ts = pd.date_range(start, periods=len(r), freq=freq, tz="UTC")
        vol = np.full(len(r), 1000.0) if volume is None else np.asarray(volume[coin], dtype=float)
        parts.append(pd.DataFrame({
            "coin": coin, "ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999, "close": close, "volume": vol, "market_cap": np.nan,
            "source": source, "granularity": "1h" if freq == "1h" else "1d"}))
    return pd.concat(parts, ignore_index=True)


def garch_returns(n, omega=2e-6, alpha=0.12, beta=0.85, seed=1):
    """GARCH(1,1) returns with normal innovations: clustered volatility."""
    rng = np.random.default_rng(seed)
    eps, out, var = rng.standard_normal(n), np.empty(n), omega / (1 - alpha - beta)
    for i in range(n):
        out[i] = math.sqrt(var) * eps[i]
        var = omega + alpha * out[i] ** 2 + beta * var
    return out


@pytest.fixture(scope="module")
def iid():
    rng = np.random.default_rng(11)
    return frame_from_returns({c: rng.normal(0, 0.01, 3000) for c in COINS})


@pytest.fixture(scope="module")
def iid_summary(iid):
    return eda_summary.summarize(iid)


def text(summary) -> str:
    return "\n".join(eda_summary.findings(summary))


# --- returns and the grid ------------------------------------------------------------------------

def test_log_returns_leave_missing_bars_undefined_instead_of_spanning_them(iid):
    gapped = iid.drop(index=[10])
    r = eda.log_returns(gapped)
    assert len(r) == 2999 and r["bitcoin"].isna().sum() == 2
    assert r["ethereum"].notna().all()
    np.testing.assert_allclose(r["ethereum"], np.diff(np.log(iid.loc[iid.coin == "ethereum", "close"])))


def test_daily_returns_sum_the_hourly_ones(iid):
    daily = eda.log_returns(iid, "1d")
    hourly = eda.log_returns(iid)
    assert len(daily) == 124
    assert daily["bitcoin"].sum() == pytest.approx(hourly["bitcoin"].iloc[23:].sum())


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="volume"), "volume"),
    (lambda f: f.assign(ts=f["ts"].dt.tz_localize(None)), "UTC"),
    (lambda f: f.assign(close=np.where(f.index == 5, -1.0, f["close"])), "close must be > 0"),
    (lambda f: f.assign(granularity=np.where(f.index % 2 == 0, "1h", "1d")), "mixes granularities"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_unusable_frames_are_refused_with_the_reason(iid, change, message):
    with pytest.raises(DataValidationError, match=message):
        eda_summary.summarize(change(iid))


# --- distributions ---------------------------------------------------------------------------------

def test_iid_normal_returns_are_not_called_fat_tailed(iid_summary):
    stats = iid_summary["distribution"]["bar"]
    assert all(abs(v["excess_kurtosis"]) < 0.3 for v in stats.values())
    t = text(iid_summary)
    assert "fat-tailed" not in t and "look close to normal" in t


def test_student_t_returns_are_called_fat_tailed():
    rng = np.random.default_rng(3)
    summary = eda_summary.summarize(frame_from_returns({c: 0.01 * rng.standard_t(3, 4000) for c in COINS}))
    assert all(v["excess_kurtosis"] > 3 for v in summary["distribution"]["bar"].values())
    assert "Returns are fat-tailed: excess kurtosis of hourly returns ranges from" in text(summary)


# --- volatility clustering and autocorrelation -----------------------------------------------------

def test_iid_returns_show_no_clustering_and_no_autocorrelation(iid, iid_summary):
    table = eda.acf_table(eda.log_returns(iid), nlags=48)
    assert len(table) == 3 * 48
    assert (table["abs"].abs() < 2.5 * table["band"]).mean() > 0.97
    t = text(iid_summary)
    assert "No volatility clustering" in t
    assert "Returns themselves show no significant autocorrelation" in t


def test_garch_series_shows_volatility_clustering():
    frame = frame_from_returns({c: garch_returns(5000, seed=i) for i, c in enumerate(COINS)})
    summary = eda_summary.summarize(frame)
    for coin in COINS:
        assert summary["ljung_box"]["per_coin"][coin]["abs_p"] < 1e-6
        assert summary["autocorrelation"]["per_coin"][coin]["abs_lag1"] > 0.05
    assert "Volatility clusters: the autocorrelation of |returns| at lag 1 is" in text(summary)


def test_ljung_box_matches_statsmodels_acorr_ljungbox():
    from statsmodels.stats.diagnostic import acorr_ljungbox

    r = eda.log_returns(frame_from_returns({"bitcoin": garch_returns(3000)}))
    ours = eda.ljung_box(r, lags=24).loc["bitcoin"]
    theirs = acorr_ljungbox(r["bitcoin"].abs(), lags=[24])
    assert ours["abs_stat"] == pytest.approx(theirs["lb_stat"].iloc[0])
    assert ours["abs_p"] == pytest.approx(theirs["lb_pvalue"].iloc[0])


# --- seasonality -----------------------------------------------------------------------------------

def test_planted_hour_of_day_effect_is_found():
    rng = np.random.default_rng(5)
    n = 24 * 200
    hours = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC").hour.to_numpy()
    planted = rng.normal(0, 0.01, n) * np.where(hours == 14, 3.0, 1.0)
    volume = {"bitcoin": np.where(hours == 9, 3000.0, 1000.0) * rng.uniform(0.8, 1.2, n),
              "hourcoin": rng.uniform(800, 1200, n)}
    frame = frame_from_returns({"bitcoin": rng.normal(0, 0.01, n), "hourcoin": planted}, volume=volume)
    tests = eda.hour_weekday_tests(frame).set_index(["coin", "by", "variable"])
    assert tests.loc[("hourcoin", "hour", "abs_return"), "pvalue"] < 1e-6
    assert tests.loc[("hourcoin", "hour", "abs_return"), "peak"] == 14
    assert tests.loc[("bitcoin", "hour", "abs_return"), "pvalue"] > 0.01
    assert tests.loc[("bitcoin", "hour", "rel_volume"), "peak"] == 9
    summary = eda_summary.summarize(frame)
    assert summary["seasonality"]["hour"]["profile"]["abs_return"]["peak"] == 14
    t = text(summary)
    assert "Only the hourcoin" not in t  # n=2: "1 of 2 coins"
    assert "1 of 2 coins (hourcoin) shows an hour-of-day effect in |returns|" in t
    assert "mean |return| is highest at 14:00 UTC" in t
    assert "relative volume peaks at 09:00 UTC" in t


def test_daily_bars_are_analysed_by_weekday_only():
    rng = np.random.default_rng(8)
    frame = frame_from_returns({c: rng.normal(0, 0.03, 400) for c in COINS}, freq="1D")
    summary = eda_summary.summarize(frame)
    assert list(summary["seasonality"]) == ["weekday"]
    assert summary["meta"]["granularity"] == "1d"
    assert "hour" not in text(summary)
    assert len(eda.fig_hour_weekday(frame).axes) == 3


def test_short_and_single_coin_histories_are_summarised_with_fitting_words():
    rng = np.random.default_rng(9)
    short = frame_from_returns({c: rng.normal(0, 0.03, 45) for c in ["bitcoin", "ethereum"]}, freq="1D")
    summary = eda_summary.summarize(short)
    assert summary["autocorrelation"]["nlags"] == 14 and summary["ljung_box"]["lags"] == 14
    assert "With only 44 returns per coin these tests have little power." in text(summary)
    single = eda_summary.summarize(frame_from_returns({"bitcoin": 0.01 * rng.standard_t(3, 2000)}))
    t = text(single)
    assert "excess kurtosis of hourly returns is" in t and "for the coin" in t and "ranges" not in t.split("\n")[3]
    assert "Coins move" not in t  # one coin: nothing to correlate


# --- stationarity ----------------------------------------------------------------------------------

def test_random_walk_log_price_is_non_stationary_and_its_returns_stationary():
    rng = np.random.default_rng(21)
    frame = frame_from_returns({c: rng.normal(0, 0.01, 3000) for c in COINS})
    table = eda.stationarity_tests(frame)
    assert (table["adf_logprice_p"] > 0.05).all() and (table["kpss_logprice_p"] < 0.05).all()
    assert (table["adf_returns_p"] < 0.01).all() and (table["kpss_returns_p"] > 0.05).all()
    assert "Log prices are non-stationary (ADF p>0.05 for all 3 coins" in text(eda_summary.summarize(frame))


def test_stationary_log_price_is_not_called_non_stationary():
    rng = np.random.default_rng(4)
    x = np.zeros(3000)
    for i in range(1, 3000):  # AR(1) log price around a level: mean-reverting
        x[i] = 0.5 * x[i - 1] + rng.normal(0, 0.01)
    frame = frame_from_returns({"bitcoin": np.diff(np.r_[0.0, x])})
    summary = eda_summary.summarize(frame)
    assert summary["stationarity"]["per_coin"]["bitcoin"]["adf_logprice_p"] < 0.01
    t = text(summary)
    assert "Log prices look stationary" in t and "non-stationary" not in t


# --- data quality ----------------------------------------------------------------------------------

def test_removed_hour_duplicate_zero_volume_and_jump_are_reported(iid):
    broken = iid.drop(index=[100])  # bitcoin 2024-01-05 04:00
    broken = pd.concat([broken, broken.iloc[[5]]], ignore_index=True)
    broken.loc[200, "volume"] = 0.0
    eth = broken.index[broken["coin"] == "ethereum"]
    broken.loc[eth[500:], "close"] *= 1.5
    gaps = eda.gap_table(broken)
    assert gaps[["coin", "missing_bars"]].values.tolist() == [["bitcoin", 1]]
    assert gaps["last_before"].iloc[0] == pd.Timestamp("2024-01-05 03:00", tz="UTC")
    quality = eda.data_quality(broken)
    assert quality.loc["bitcoin", ["gaps", "missing_bars", "duplicates", "zero_volume"]].tolist() == [1, 1, 1, 1]
    assert quality.loc["ethereum", "outliers"] == 1 and quality.loc["solana", "outliers"] == 0
    outliers = eda.return_outliers(broken)
    assert outliers.iloc[0]["coin"] == "ethereum" and outliers.iloc[0]["log_return"] > 0.39
    t = text(eda_summary.summarize(broken))
    assert "bitcoin 1 (1 bar); no gaps in ethereum and solana" in t
    assert "1 duplicated timestamp (bitcoin 1)" in t and "1 zero-volume bar (bitcoin 1)" in t
    assert "1 return has a robust z-score above 10" in t


def test_clean_frame_reports_no_gaps(iid_summary):
    assert "No bars are missing against the hourly grid." in text(iid_summary)


# --- the summary and the findings ------------------------------------------------------------------

def test_summary_is_json_safe(iid_summary):
    again = json.loads(json.dumps(iid_summary, allow_nan=False))
    assert again == iid_summary
    assert iid_summary["meta"]["coins"] == COINS and iid_summary["meta"]["simulated"] is True


def test_findings_follow_the_numbers_not_the_data(iid_summary):
    s = copy.deepcopy(iid_summary)
    t = text(s)
    assert "fat-tailed" not in t and "Coins move almost independently" in t
    for coin, v in s["distribution"]["bar"].items():
        v.update(excess_kurtosis={"bitcoin": 8.1, "ethereum": 12.0, "solana": 25.3}[coin], jb_pvalue=0.0,
                 beyond_4sd_vs_normal=30.0)
    s["correlation"].update(mean_pairwise=0.72)
    for v in s["stationarity"]["per_coin"].values():
        v.update(adf_returns_p=0.4)
    t = text(s)
    assert ("Returns are fat-tailed: excess kurtosis of hourly returns ranges from 8.1 (bitcoin) to 25.3 (solana)"
            in t)
    assert "30 times as frequent as a normal model predicts" in t
    assert "Coins move together strongly: the mean pairwise correlation of returns is 0.72" in t
    assert "even returns keep a unit root for all 3 coins" in t


def test_findings_count_each_coin(iid_summary):
    s = copy.deepcopy(iid_summary)
    s["distribution"]["bar"]["solana"].update(excess_kurtosis=9.0, jb_pvalue=1e-9)
    t = text(s)
    assert "Returns are fat-tailed for 1 of 3 coins (excess kurtosis 9.0 for solana" in t
    assert "the other coins look close to normal" in t


# --- figures ---------------------------------------------------------------------------------------

FIGURES = {
    "fig_price_index": ["Price index", "Rolling 1-day volume relative to each coin's median"],
    "fig_return_distribution": ["Return density (log scale)", "QQ plot against the normal"],
    "fig_rolling_volatility": ["Rolling 7-day volatility"],
    "fig_correlation": ["Correlation of returns", "Rolling 30-day correlation with bitcoin", ""],
    "fig_hour_weekday": ["mean return (%) by hour", "mean |return| (%) by hour", "relative volume by hour",
                         "mean return (%) by weekday", "mean |return| (%) by weekday", "relative volume by weekday"],
    "fig_acf": ["ACF of returns", "ACF of |returns|"],
}


@pytest.mark.parametrize("name", FIGURES)
def test_figures_have_their_axes_and_say_when_data_are_simulated(iid, name):
    fig = getattr(eda, name)(iid)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == FIGURES[name]
    assert "(simulated data)" in fig.get_suptitle()
    assert "simulated" not in getattr(eda, name)(iid.assign(source="csv")).get_suptitle()
    fig.savefig(io.BytesIO(), format="png")  # renders headless (Agg)


def test_acf_figure_draws_one_line_per_coin(iid):
    fig = eda.fig_acf(iid, nlags=24)
    assert len(fig.axes[0].get_lines()) == 3 + 1  # coins and the zero line
    assert fig.axes[0].get_xlim()[1] >= 24


@pytest.mark.slow
def test_import_does_not_load_statsmodels():
    """statsmodels costs seconds to import; the dashboard imports eda for its figures and should not pay it."""
    code = "import sys, cryptosentinel.eda, cryptosentinel.eda_summary; print('statsmodels' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the simulator and the real data ---------------------------------------------------------------

def test_simulated_prices_summarize():
    prices = simulated_prices(COINS, "2024-01-01", "2024-03-01", freq="1h", seed=3)
    summary = eda_summary.summarize(prices)
    assert summary["meta"]["simulated"] and summary["meta"]["n_coins"] == 3
    assert "(simulated data)" in text(summary)


@pytest.fixture(scope="module")
def real_summary(request):
    shared_data = request.getfixturevalue("shared_data")
    prices = shared_prices(shared_data)
    return eda_summary.summarize(prices)


@pytest.mark.shared_data
def test_real_hourly_data_findings(real_summary):
    s = real_summary
    assert s["meta"]["n_coins"] == 8 and s["meta"]["granularity"] == "1h" and not s["meta"]["simulated"]
    for coin, q in s["quality"]["per_coin"].items():
        assert (q["gaps"], q["missing_bars"], q["largest_gap_bars"]) == (5, 12, 4), coin
        assert q["duplicates"] == 0 and q["zero_volume"] == 1
    t = text(s)
    assert "Every coin has 5 gaps against the hourly grid (12 missing bars; the longest gap is 4 bars)." in t
    assert "Returns are fat-tailed: excess kurtosis of hourly returns ranges from" in t
    assert "Volatility clusters: the autocorrelation of |returns| at lag 1 is" in t
    assert "Log prices are non-stationary (ADF p>0.05 for all 8 coins" in t
    assert s["correlation"]["max_pair"]["coins"] == ["bitcoin", "ethereum"]
