"""DeepChecks drift and integrity: a regime change injected at a known time is found after it and not
before it; corrupted batches are rejected naming the failing check, clean ones pass."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, local_store, simulated_prices

from cryptosentinel.alerts import DRIFT_CURRENT, DRIFT_EVERY, drift_since_training
from cryptosentinel.config import ConfigError, DataValidationError, Settings, get_settings
from cryptosentinel.features import build_features
from cryptosentinel.monitoring import (
    check_batch_integrity,
    drift_history,
    integrity_gate,
    label_features,
    record_drift,
    record_integrity,
    run_drift,
)
from cryptosentinel.sources import COIN_PROFILES
from cryptosentinel.store import PRICES
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.data

COINS = list(COIN_PROFILES)  # 8 coins
START = "2022-08-18"  # the simulator (seed 42) stays in its calm_up regime for 112 days from here
CHANGE = pd.Timestamp("2022-11-05", tz="UTC")  # the injected regime change
END = pd.Timestamp("2022-11-20", tz="UTC")


def settings() -> Settings:
    return Settings(_env_file=None)


def inject_regime_change(prices: pd.DataFrame, at: pd.Timestamp, scale: float = 3.0,
                         trend: float = -0.002) -> pd.DataFrame:
    """From `at` on, every coin's log price moves `scale` times as far, plus `trend` per hour."""
    out = prices.copy()
    for _, g in out.groupby("coin"):
        anchor = np.log(g.loc[g["ts"] < at, "close"].iloc[-1])
        idx = g.index[g["ts"] >= at]
        bars = ((out.loc[idx, "ts"] - at) / pd.Timedelta(hours=1)).to_numpy() + 1
        for col in ("open", "high", "low", "close"):
            out.loc[idx, col] = np.exp(anchor + scale * (np.log(out.loc[idx, col].to_numpy()) - anchor) + trend * bars)
    return out


def window(frame: pd.DataFrame, first: pd.Timestamp, days: int) -> pd.DataFrame:
    return frame[(frame["ts"] >= first) & (frame["ts"] < first + pd.Timedelta(days=days))]


@pytest.fixture(scope="module")
def market():
    prices = simulated_prices(COINS, START, END, seed=42)
    shocked = inject_regime_change(prices, CHANGE)
    return prices, shocked


@pytest.fixture(scope="module")
def drift_reports(market, tmp_path_factory):
    """Reference: 30 days ending a week before the change; current: the week before it, and a week from a day after."""
    _, shocked = market
    out = tmp_path_factory.mktemp("monitoring")
    frame = label_features(build_features(shocked), shocked, horizon=24)
    reference = window(frame, CHANGE - pd.Timedelta(days=38), 30)
    before = window(frame, CHANGE - pd.Timedelta(days=7), 7)
    after = window(frame, CHANGE + pd.Timedelta(days=1), 7)
    return {"before": run_drift(reference, before, label="y_ret", html=False, out_dir=out, settings=settings()),
            "after": run_drift(reference, after, label="y_ret", html=True, out_dir=out, settings=settings()),
            "out": out}


def test_no_drift_before_the_change(drift_reports):
    rep = drift_reports["before"]
    assert not rep.drift_detected, rep.reasons
    assert rep.reasons == []
    assert rep.drift_share < rep.thresholds["drift_share"]
    assert rep.multivariate_score < rep.thresholds["multivariate_auc"]
    assert rep.label_drift_score < rep.thresholds["label_score"]


def test_drift_after_the_change_names_the_features(drift_reports):
    rep, before = drift_reports["after"], drift_reports["before"]
    assert rep.drift_detected
    assert sorted(rep.ran_checks) == ["FeatureDrift", "LabelDrift", "MultivariateDrift"]
    assert {"vol_24", "vol_168", "atr_14", "mkt_vol_24"} <= set(rep.drifted_features)
    assert rep.drift_share >= 0.3
    assert rep.multivariate_score >= 0.98
    assert rep.label_drift_score > before.label_drift_score
    # every drifted feature is at or above the threshold, worst first
    scores = [rep.feature_scores[f] for f in rep.drifted_features]
    assert scores == sorted(scores, reverse=True) and min(scores) >= rep.thresholds["feature_score"]
    # calendar features do not drift: same hours and weekdays in both windows
    assert "hour" not in rep.drifted_features and "hour_sin" not in rep.drifted_features
    assert any("features drifted" in r for r in rep.reasons)


def test_drift_report_files(drift_reports):
    rep = drift_reports["after"]
    html, js = Path(rep.html_path), Path(rep.json_path)
    assert html.parent == drift_reports["out"] and html.stat().st_size < 5_000_000  # plotly.js not inlined per figure
    assert "Feature Drift" in html.read_text(encoding="utf-8")
    saved = json.loads(js.read_text(encoding="utf-8"))
    assert saved["report"]["drift_detected"] is True
    assert {r["header"] for r in saved["deepchecks"]["results"]} >= {"Feature Drift", "Multivariate Drift", "Label Drift"}
    assert drift_reports["before"].html_path is None and Path(drift_reports["before"].json_path).exists()
    json.loads(rep.json)  # strict JSON, no NaN


def test_record_drift_and_history(drift_reports, tmp_path):
    with LocalStore(tmp_path / "store.sqlite") as store:
        record_drift(store, drift_reports["before"])
        record_drift(store, drift_reports["after"])
        hist = drift_history(store)
        runs = store.runs("drift")
    assert list(hist.columns) == ["ts", "feature", "score"]
    n = len(drift_reports["after"].feature_scores)
    assert len(hist) == 2 * n and hist["ts"].nunique() == 2
    assert isinstance(hist["ts"].dtype, pd.DatetimeTZDtype) and hist["ts"].is_monotonic_increasing
    vol = hist[hist["feature"] == "vol_24"]["score"].to_numpy()
    assert vol[1] > vol[0]  # oldest first: the later run saw the drift
    assert runs[0]["record"]["drift_detected"] is True


def test_run_drift_refuses_bad_input(drift_reports, market):
    frame = build_features(market[0]).head(200)
    with pytest.raises(DataValidationError, match="lacks columns"):
        run_drift(frame, frame.drop(columns=["vol_24"]), settings=settings(), html=False)
    with pytest.raises(DataValidationError, match="at least 10"):
        run_drift(frame, frame.head(5), settings=settings(), html=False)
    with pytest.raises(DataValidationError, match="lacks columns"):
        run_drift(frame, frame, label="y_ret", settings=settings(), html=False)


# --- integrity -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batches(market):
    prices, _ = market
    features = build_features(prices)
    last = prices["ts"].max() - pd.Timedelta(days=7)
    return (prices[prices["ts"] > last].reset_index(drop=True),
            features[features["ts"] > last].reset_index(drop=True))


def test_clean_batches_pass(batches):
    prices, features = batches
    for kind, batch in (("prices", prices), ("features", features)):
        res = check_batch_integrity(batch, kind, settings=settings())
        assert res.passed, res.reason
        assert res.failures == []
        ran = {c["check"] for c in res.checks}
        assert {"IsSingleValue", "MixedNulls", "MixedDataTypes", "DataDuplicates", "PercentOfNulls",
                "RobustOutliers", "StringMismatch", "SpecialCharacters"} <= ran
        assert set(res.skipped) >= {"ConflictingLabels", "FeatureFeatureCorrelation", "OutlierSampleDetection"}
        assert res.rows == len(batch)
        json.dumps(res.to_dict())


def test_a_short_batch_is_not_judged_constant(batches):
    prices, features = batches
    newest = prices[prices["ts"] == prices["ts"].max()]  # one bar per coin: every column looks constant per coin
    assert check_batch_integrity(newest, "prices", settings=settings()).passed
    one = features[features["coin"] == "bitcoin"].tail(3)
    res = check_batch_integrity(one, "features", settings=settings())
    assert res.passed, res.reason
    assert not next(c for c in res.checks if c["check"] == "IsSingleValue")["fatal"]


def _corrupt(kind: str, batch: pd.DataFrame, how: str) -> pd.DataFrame:
    bad = batch.copy()
    n = len(bad)
    if how == "duplicated rows":
        return pd.concat([bad, bad.sample(frac=0.05, random_state=0)], ignore_index=True)
    if how == "NaN burst":
        col = "close" if kind == "prices" else "vol_24"
        bad.loc[n // 3:n // 3 + 40, col] = np.nan
    elif how == "text in a numeric column":
        col = "volume" if kind == "prices" else "rsi_14"
        bad[col] = bad[col].astype(object)
        bad.loc[[5, 77], col] = "n/a"
    elif how == "constant column":
        bad["close" if kind == "prices" else "vol_24"] = 123.0
    elif how == "outliers":
        rows = [10, 200, 400]
        if kind == "prices":
            bad.loc[rows, ["open", "high", "low", "close"]] *= 1000.0
        else:
            bad.loc[rows, "ret_1"] = bad.loc[rows, "ret_1"] * 1000.0 + 5.0
    elif how == "coin spelled two ways":
        bad.loc[bad["coin"] == "bitcoin", "coin"] = np.where(np.arange((bad["coin"] == "bitcoin").sum()) % 2,
                                                            "Bitcoin", "bitcoin")
    elif how == "mixed nulls":
        bad["coin"] = bad["coin"].astype(object)
        bad.loc[3, "coin"] = None
        bad.loc[9, "coin"] = "null"
    return bad


CASES = [("duplicated rows", "DataDuplicates"), ("NaN burst", "PercentOfNulls"),
         ("text in a numeric column", "MixedDataTypes"), ("constant column", "IsSingleValue"),
         ("outliers", "RobustOutliers"), ("coin spelled two ways", "StringMismatch"), ("mixed nulls", "MixedNulls")]


@pytest.mark.parametrize("kind", ["prices", "features"])
@pytest.mark.parametrize(("how", "check"), CASES)
def test_corrupted_batch_is_rejected(batches, kind, how, check):
    batch = batches[0] if kind == "prices" else batches[1]
    res = check_batch_integrity(_corrupt(kind, batch, how), kind, settings=settings())
    assert not res.passed
    failed = {f["check"] for f in res.failures}
    assert check in failed, (how, res.reason)
    assert "rejected by the integrity suite" in res.reason
    with pytest.raises(DataValidationError, match="rejected"):
        res.raise_for_failures()


def test_integrity_report_html(batches, tmp_path):
    res = check_batch_integrity(_corrupt("prices", batches[0], "outliers"), "prices", html=True, out_dir=tmp_path,
                                settings=settings())
    assert res.html_path and Path(res.html_path).read_text(encoding="utf-8").count("Robust Outliers") >= 1


def test_integrity_gate_keeps_bad_batches_out(batches, tmp_path):
    prices, _ = batches
    with LocalStore(tmp_path / "store.sqlite") as store:
        with pytest.raises(DataValidationError, match="Data Duplicates"):
            store.upsert(PRICES, _corrupt("prices", prices, "duplicated rows"), validate=integrity_gate("prices"))
        assert store.summary(PRICES)["rows"] == 0
        store.upsert(PRICES, prices, validate=integrity_gate("prices", settings=settings()))
        assert store.summary(PRICES)["rows"] == len(prices)
        record_integrity(store, check_batch_integrity(prices, "prices", settings=settings()))
        assert store.runs("integrity")[0]["record"]["passed"] is True


def test_integrity_refuses_what_it_cannot_check(batches):
    prices, _ = batches
    with pytest.raises(ConfigError, match="kind"):
        check_batch_integrity(prices, "labels")
    with pytest.raises(DataValidationError, match="lacks columns"):
        check_batch_integrity(prices.drop(columns=["close"]), "prices")
    with pytest.raises(DataValidationError, match="empty"):
        check_batch_integrity(prices.iloc[:0], "prices")


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("CRYPTOSENTINEL_DRIFT_SHARE", "0.5")
    monkeypatch.setenv("CRYPTOSENTINEL_ALERT_MOVE_WINDOWS", "1,4")
    get_settings.cache_clear()
    ms = get_settings().monitoring
    assert math.isclose(ms.drift_share, 0.5) and ms.alert_move_windows == [1, 4]


def test_drift_since_training_in_a_store(market, tmp_path):
    """The pipeline's drift pass: the champion trained a week before the change, the current week after it."""
    _, shocked = market
    given = Settings(_env_file=None, data_dir=tmp_path / "given")
    as_of = CHANGE + pd.Timedelta(days=8)
    recent = shocked[shocked["ts"] <= as_of]
    with local_store(tmp_path / "store.sqlite", prices=recent, features=feature_frame(recent)) as store:
        trained = {"data_end": (CHANGE - pd.Timedelta(days=7)).isoformat()}
        report = drift_since_training(store, trained, 24, COINS, as_of, given, html=False)
        assert report is not None and report.drift_detected, report
        assert Path(report.json_path).parent == tmp_path / "given" / "monitoring"  # the injected data_dir
        assert pd.Timestamp(report.reference["last"]) < pd.Timestamp(trained["data_end"])
        assert pd.Timestamp(report.current["first"]) >= as_of - DRIFT_CURRENT
        assert store.runs("drift")[0]["record"]["drift_detected"] is True
        # not due again until DRIFT_EVERY of new data; no data_end: nothing to compare with
        assert drift_since_training(store, trained, 24, COINS, as_of + pd.Timedelta(hours=1), given) is None
        assert drift_since_training(store, {}, 24, COINS, as_of + DRIFT_EVERY, given) is None
        assert len(store.runs("drift")) == 1
