"""Model bundles, their artifacts, and the registry on both backends (MLflow/SQLite and the Hopsworks fake).

One registry per backend is shared by the module (MLflow's SQLite set-up is slow); tests that look at the
champion use a horizon of their own, so they do not see each other's champions.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
import xgboost
from fake_hopsworks_registry import FakeHopsworksRegistry
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cryptosentinel.bundle import (
    BUNDLE_FILE,
    MODEL_FAMILIES,
    MissingFeatureError,
    ModelBundle,
    ModelInputError,
    key_metrics,
    load_bundle,
    register_family,
    save_bundle,
)
from cryptosentinel.config import CryptoSentinelError, Settings
from cryptosentinel.registry import (
    TASK_GATES,
    GateError,
    ModelIntegrityError,
    ModelNotFoundError,
    Registry,
    RegistryError,
    gate_run,
    promote,
)
from cryptosentinel.registry_hopsworks import HopsworksRegistry, open_registry
from cryptosentinel.registry_mlflow import LocalRegistry

pytestmark = pytest.mark.model

FEATURES = ["f1", "f2", "vol_24"]
KINDS = ["xgb", "pipeline", "calibrated", "xgb_clf", "constant"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 240
    X = pd.DataFrame({"f1": rng.normal(size=n), "f2": rng.normal(size=n), "vol_24": rng.uniform(0.01, 0.05, n)})
    y = 0.03 * X.f1 + X.vol_24 * rng.normal(size=n)
    return X, y, (y > 0).astype(int)


@pytest.fixture(scope="module")
def estimators(data):
    X, y, up = data
    return {
        "xgb": xgboost.XGBRegressor(n_estimators=10, max_depth=2).fit(X[FEATURES], y),
        "pipeline": make_pipeline(StandardScaler(), Ridge()).fit(X[FEATURES], y),
        "calibrated": CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X[FEATURES], up),
        "xgb_clf": xgboost.XGBClassifier(n_estimators=10, max_depth=2).fit(X[FEATURES], up),
    }


LINEAGE = {"data_start": "2024-01-01T00:00:00+00:00", "data_end": "2024-03-01T00:00:00+00:00",
           "rows": {"train": 1000, "test": 200}, "features": FEATURES, "feature_version": "v1", "seed": 42,
           "trained_at": "2024-03-01T01:00:00+00:00", "coins": ["bitcoin", "ethereum"]}


def metrics(mae, rw=0.02, champion=None, base="random_walk"):
    """Walk-forward metrics as training writes them (the keys the gate reads)."""
    out = {"overall": {"mae": mae, "rmse": mae * 1.3},
           "per_coin": {"bitcoin": {"mae": mae * 0.9}, "ethereum": {"mae": mae * 1.1}},
           "baseline": {base: {"mae": rw}}, "dm_pvalue": 0.04, "coverage": {"80": 0.81, "95": 0.95},
           "folds": [{"mae": mae * 0.95}, {"mae": mae * 1.05}]}
    if champion is not None:
        out["baseline"]["champion"] = champion
    return out


def make_bundle(kind, estimators, horizon=24, mae=0.015, champion=None):
    if kind == "constant":
        return ModelBundle("random_walk", horizon, "regression", None, [], "v1", constant=0.0, interval_scale="vol_24",
                           interval_quantiles={"80": 1.3, "95": 2.0}, metrics={"overall": {"mae": 0.02}},
                           lineage=dict(LINEAGE))
    name, task = {"xgb": ("xgb_reg", "regression"), "pipeline": ("ridge_reg", "regression"),
                  "calibrated": ("hgb_clf", "classification"), "xgb_clf": ("xgb_clf", "classification")}[kind]
    quantiles = {"80": 1.25, "95": 1.9} if task == "regression" else {}
    return ModelBundle(name, horizon, task, estimators[kind], list(FEATURES), "v1",
                       interval_scale="vol_24" if task == "regression" else None, interval_quantiles=quantiles,
                       metrics=metrics(mae, champion=champion), lineage=dict(LINEAGE))


def rw_bundle(horizon):
    return ModelBundle("random_walk", horizon, "regression", None, [], "v1", constant=0.0, interval_scale="vol_24",
                       interval_quantiles={"80": 1.3, "95": 2.0}, lineage=dict(LINEAGE))


@pytest.fixture(scope="module")
def local_reg(tmp_path_factory):
    return LocalRegistry(tmp_path_factory.mktemp("registry-local") / "data", horizons=[24])


@pytest.fixture(scope="module", params=["local", "hopsworks"])
def reg(request, tmp_path_factory):
    if request.param == "local":
        return request.getfixturevalue("local_reg")
    root = tmp_path_factory.mktemp(f"registry-{request.param}")
    fake = FakeHopsworksRegistry(root / "hopsfs", api_key="k", project="cs")
    return HopsworksRegistry(api_key="k", project="cs", login=fake.login, horizons=[24])


def artifact_dir(reg, name, version) -> Path:
    """Where the backend keeps a version's files (to corrupt them)."""
    if isinstance(reg, LocalRegistry):
        return Path(url2pathname(urlparse(reg._record(name, version)["source"]).path))
    return reg._mr.get_model(name, version=version).model_files_path


def corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


# --- the bundle ------------------------------------------------------------------------------------

def test_bundle_refuses_what_it_cannot_be(estimators):
    with pytest.raises(RegistryError, match="lower-case"):
        ModelBundle("XGB", 24, "regression", estimators["xgb"], FEATURES, "v1")
    with pytest.raises(RegistryError, match="positive number of hours"):
        ModelBundle("xgb_reg", 0, "regression", estimators["xgb"], FEATURES, "v1")
    with pytest.raises(RegistryError, match="not both"):
        ModelBundle("xgb_reg", 24, "regression", estimators["xgb"], FEATURES, "v1", constant=0.0)
    with pytest.raises(RegistryError, match="repeats"):
        ModelBundle("xgb_reg", 24, "regression", estimators["xgb"], ["f1", "f1"], "v1")
    with pytest.raises(RegistryError, match=r"\[0, 1\]"):
        ModelBundle("majority", 24, "classification", None, [], "v1", constant=1.2)
    with pytest.raises(RegistryError, match="quantile"):
        ModelBundle("random_walk", 24, "regression", None, [], "v1", constant=0.0, interval_quantiles={"80": -1})


def test_constant_baseline_predicts_its_constant_and_scales_intervals(data):
    X, _, _ = data
    rw = rw_bundle(24)
    np.testing.assert_array_equal(rw.predict(X), np.zeros(len(X)))
    lo, hi = rw.predict_interval(X, "95")
    np.testing.assert_allclose(hi, 2.0 * X.vol_24)
    np.testing.assert_allclose(lo, -2.0 * X.vol_24)
    majority = ModelBundle("majority", 24, "classification", None, [], "v1", constant=0.54)
    np.testing.assert_array_equal(majority.predict(X.head(3)), [0.54] * 3)


def test_missing_features_and_levels_are_clear(estimators, data):
    X, _, _ = data
    b = make_bundle("xgb", estimators)
    with pytest.raises(MissingFeatureError, match=r"needs columns \['f2'\]"):
        b.predict(X.drop(columns="f2"))
    with pytest.raises(CryptoSentinelError, match=r"\['vol_24'\]"):
        rw_bundle(24).predict_interval(X[["f1"]])
    with pytest.raises(ModelInputError, match="no 99% interval"):
        b.predict_interval(X, "99")
    with pytest.raises(ModelInputError, match="classifier"):
        make_bundle("calibrated", estimators).predict_interval(X)
    with pytest.raises(ModelInputError, match="DataFrame"):
        b.predict(X.to_numpy())


def test_predictions_use_feature_names_not_column_order(estimators, data):
    X, _, up = data
    b = make_bundle("pipeline", estimators)
    shuffled = X[["vol_24", "f2", "f1"]].assign(extra=1.0)
    np.testing.assert_array_equal(b.predict(shuffled), b.predict(X))
    clf = make_bundle("calibrated", estimators)
    p = clf.predict(X)
    np.testing.assert_allclose(p, estimators["calibrated"].predict_proba(X[FEATURES])[:, 1])
    assert ((p >= 0) & (p <= 1)).all()
    assert p[up == 1].mean() > p[up == 0].mean()  # P(up) is the probability of the up class


# --- artifacts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_artifacts_round_trip_in_model_formats(kind, estimators, data, tmp_path):
    X, _, _ = data
    b = make_bundle(kind, estimators)
    sums = save_bundle(b, tmp_path, input_example=X)
    expected = {"xgb": "model.ubj", "xgb_clf": "model.ubj", "pipeline": "model.skops", "calibrated": "model.skops"}
    assert set(sums) == {BUNDLE_FILE, "input_example.json"} | ({expected[kind]} if kind in expected else set())
    meta = json.loads((tmp_path / BUNDLE_FILE).read_text())
    assert meta["format"]["kind"] == {"constant": "constant"}.get(kind, "xgboost" if "xgb" in kind else "skops")
    back = load_bundle(tmp_path, sums)
    np.testing.assert_array_equal(back.predict(X), b.predict(X))
    assert (back.name, back.horizon, back.task, back.feature_names, back.interval_quantiles) == \
           (b.name, b.horizon, b.task, b.feature_names, b.interval_quantiles)


def test_modified_metadata_or_missing_file_is_refused(estimators, tmp_path):
    b = make_bundle("pipeline", estimators)
    sums = save_bundle(b, tmp_path)
    meta = json.loads((tmp_path / BUNDLE_FILE).read_text())
    meta["constant"] = 1.0
    (tmp_path / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="bundle.json is corrupted or was modified"):
        load_bundle(tmp_path, sums)
    sums = save_bundle(b, tmp_path)
    (tmp_path / "model.skops").unlink()
    with pytest.raises(ModelIntegrityError, match="model.skops is missing"):
        load_bundle(tmp_path, sums)


class Shifted(RegressorMixin, BaseEstimator):
    """An estimator from outside scikit-learn: skops would have to trust this module."""

    def fit(self, X, y):
        self.shift_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.shift_)


def test_skops_types_outside_the_trusted_modules_are_refused(data, tmp_path):
    X, y, _ = data
    b = ModelBundle("ridge_reg", 24, "regression", Shifted().fit(X, y), FEATURES, "v1")
    with pytest.raises(RegistryError, match="do not trust"):
        save_bundle(b, tmp_path / "a")
    # an artifact written elsewhere that claims to trust the type is still refused at load
    import hashlib

    import skops.io as sio
    d = tmp_path / "b"
    save_bundle(ModelBundle("ridge_reg", 24, "regression", make_pipeline(Ridge()).fit(X[FEATURES], y), FEATURES, "v1"), d)
    sio.dump(b.estimator, d / "model.skops")
    meta = json.loads((d / BUNDLE_FILE).read_text())
    meta["format"]["trusted_types"] = sio.get_untrusted_types(file=d / "model.skops")
    meta["files"]["model.skops"] = hashlib.sha256((d / "model.skops").read_bytes()).hexdigest()
    (d / BUNDLE_FILE).write_text(json.dumps(meta))
    sums = {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in (BUNDLE_FILE, "model.skops")}
    with pytest.raises(ModelIntegrityError, match="do not trust"):
        load_bundle(d, sums)


# --- registry: round trips and integrity ------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_register_and_load_round_trip(reg, kind, estimators, data):
    X, _, _ = data
    b = make_bundle(kind, estimators)
    before = [v["version"] for v in reg.versions(b.registered_name)]
    version = reg.register(b, run_name=f"test-{kind}", notebook_path="reports/05_training.ipynb", input_example=X)
    assert version == max(before, default=0) + 1 and b.version == version
    back = reg.load(b.registered_name, version)
    np.testing.assert_array_equal(back.predict(X), b.predict(X))
    if b.task == "regression":
        for level in ("80", "95"):
            for got, want in zip(back.predict_interval(X, level), b.predict_interval(X, level), strict=True):
                np.testing.assert_array_equal(got, want)
    assert back.version == version and back.status == "challenger"
    assert back.metrics["overall"] == b.metrics["overall"]
    lineage = back.lineage
    for key, value in LINEAGE.items():
        assert lineage[key] == value
    assert lineage["notebook_path"] == "reports/05_training.ipynb"
    assert lineage["registry"] == reg.backend
    assert pd.Timestamp(lineage["registered_at"]).tzinfo is not None
    assert "code_version" in lineage and "package_version" in lineage
    assert reg.load(b.registered_name).version == version  # no version: the newest


def test_unknown_models_and_versions(reg):
    reg.register(rw_bundle(24))
    with pytest.raises(ModelNotFoundError, match="no version 99 of 'random_walk_24h'"):
        reg.load("random_walk_24h", 99)
    with pytest.raises(ModelNotFoundError):
        reg.load("nope_24h", 1)
    with pytest.raises(ModelNotFoundError, match="nothing promoted yet"):
        reg.load_champion(999)
    assert reg.champion(999) is None


def test_corrupted_artifact_is_refused_and_the_operator_can_roll_back(reg, estimators, data):
    X, _, _ = data
    h = 11
    rw = rw_bundle(h)
    good = make_bundle("xgb", estimators, horizon=h, mae=0.010)
    promote(reg, good, rw)
    better = make_bundle("xgb", estimators, horizon=h, mae=0.009,
                         champion={"name": "xgb_reg", "version": good.version, "mae": 0.010})
    assert promote(reg, better, rw).promoted
    served = reg.load_champion(h)  # what inference holds
    corrupt(artifact_dir(reg, better.registered_name, better.version) / "model.ubj")
    with pytest.raises(ModelIntegrityError, match="model.ubj is corrupted or was modified.*keeps that copy"):
        reg.load_champion(h)
    with pytest.raises(ModelIntegrityError):
        reg.load(better.registered_name, better.version)
    with pytest.raises(ModelIntegrityError):
        reg.verify(better.registered_name, better.version)
    np.testing.assert_array_equal(served.predict(X), better.predict(X))  # the loaded model keeps serving
    assert reg.champion(h)["version"] == better.version  # refused, not silently replaced
    change = reg.rollback(h)
    assert (change["name"], change["version"], change["action"]) == ("xgb_reg_11h", good.version, "rollback")
    np.testing.assert_array_equal(reg.load_champion(h).predict(X), good.predict(X))
    with pytest.raises(ModelIntegrityError):  # a corrupted version cannot be made champion either
        reg.set_champion(h, "xgb_reg", better.version, "operator")


# --- the gate --------------------------------------------------------------------------------------

def test_gate_promotes_a_model_that_beats_the_random_walk_and_the_champion(reg, estimators):
    h = 12
    rw = rw_bundle(h)
    first = make_bundle("pipeline", estimators, horizon=h, mae=0.015)
    d1 = promote(reg, first, rw)
    assert d1.promoted and d1.champion_before == {"name": "random_walk_12h", "version": rw.version}
    assert d1.champion_after == {"name": "ridge_reg_12h", "version": first.version}
    assert (d1.candidate_score, d1.baseline_score, d1.baseline_name) == (0.015, 0.02, "random_walk")
    second = make_bundle("xgb", estimators, horizon=h, mae=0.012,
                         champion={"name": "ridge_reg_12h", "version": first.version, "mae": 0.015})
    d2 = promote(reg, second, rw)
    assert d2.promoted and d2.champion_score == 0.015 and "beats the random_walk" in d2.reason
    champ = reg.champion(h)
    assert (champ["name"], champ["version"], champ["is_random_walk"]) == ("xgb_reg_12h", second.version, False)
    assert champ["metrics"]["mae"] == 0.012 and champ["metrics"]["random_walk_mae"] == 0.02
    assert reg.load("xgb_reg_12h", second.version).status == "champion"
    assert reg.load("ridge_reg_12h", first.version).status == "challenger"
    assert [e["name"] for e in reg.history(h)] == ["random_walk_12h", "ridge_reg_12h", "xgb_reg_12h"]
    assert rw.version is not None and len(reg.versions("random_walk_12h")) == 1  # the baseline registered once


def test_gate_refuses_a_model_worse_than_the_random_walk_and_says_so(reg, estimators):
    h = 13
    rw = rw_bundle(h)
    worse = make_bundle("xgb", estimators, horizon=h, mae=0.025)
    d = promote(reg, worse, rw)
    assert not d.promoted and "does not beat the random_walk" in d.reason
    champ = reg.champion(h)
    assert champ["is_random_walk"] and champ["name"] == "random_walk_13h"
    assert "no model beat the random walk" in champ["note"]
    assert champ["best_challenger"]["name"] == "xgb_reg_13h"
    best = reg.best_challenger(h)
    assert (best["name"], best["version"], best["promoted"], best["status"]) == \
           ("xgb_reg_13h", worse.version, False, "challenger")
    loaded = reg.load("xgb_reg_13h", worse.version)
    assert loaded.status == "challenger" and loaded.reason.startswith("not promoted")
    assert reg.status()["models"]["13h"]["is_random_walk"] is True


def test_gate_ties_go_to_the_incumbent(reg, estimators):
    h = 14
    rw = rw_bundle(h)
    d = promote(reg, make_bundle("xgb", estimators, horizon=h, mae=0.02), rw)
    assert not d.promoted and reg.champion(h)["is_random_walk"]


def test_gate_refuses_a_model_worse_than_the_champion(reg, estimators):
    h = 15
    rw = rw_bundle(h)
    champion = make_bundle("xgb", estimators, horizon=h, mae=0.010)
    promote(reg, champion, rw)
    loser = make_bundle("pipeline", estimators, horizon=h, mae=0.012,
                        champion={"name": "xgb_reg", "version": champion.version, "mae": 0.010})
    d = promote(reg, loser, rw)
    assert not d.promoted and "not champion xgb_reg_15h" in d.reason
    assert reg.champion(h)["name"] == "xgb_reg_15h"
    v = [x for x in reg.versions("ridge_reg_15h")][-1]
    assert (v["status"], v["promoted"]) == ("challenger", False) and "not champion" in v["reason"]
    # without the champion's score on the same folds there is no fair comparison: not promoted
    blind = make_bundle("pipeline", estimators, horizon=h, mae=0.001)
    d = promote(reg, blind, rw)
    assert not d.promoted and "metrics['baseline']['champion'] is missing" in d.reason
    stale = make_bundle("pipeline", estimators, horizon=h, mae=0.001,
                        champion={"name": "xgb_reg", "version": champion.version + 5, "mae": 0.010})
    assert "but the champion is" in promote(reg, stale, rw).reason


def test_the_random_walk_takes_over_when_the_champion_no_longer_beats_it(reg, estimators):
    h = 16
    rw = rw_bundle(h)
    old = make_bundle("xgb", estimators, horizon=h, mae=0.010)
    promote(reg, old, rw)
    rw2 = rw_bundle(h)  # a new training run: new folds, new random walk
    cand = make_bundle("pipeline", estimators, horizon=h, mae=0.021,
                       champion={"name": "xgb_reg", "version": old.version, "mae": 0.022})
    d = promote(reg, cand, rw2)
    assert not d.promoted and d.champion_after == {"name": "random_walk_16h", "version": rw2.version}
    last = reg.history(h)[-1]
    assert last["name"] == "random_walk_16h" and "no longer beats" in last["reason"]


def test_gate_needs_its_metrics(reg, estimators):
    b = make_bundle("xgb", estimators, horizon=17)
    b.metrics = {"overall": {"rmse": 0.1}, "baseline": {"random_walk": {"mae": 0.02}}}
    with pytest.raises(GateError, match=r"metrics\['overall'\]\['mae'\]"):
        promote(reg, b, rw_bundle(17))
    with pytest.raises(GateError, match="differ in horizon"):
        promote(reg, make_bundle("xgb", estimators, horizon=17), rw_bundle(18))
    with pytest.raises(GateError, match="unknown metric"):
        promote(reg, make_bundle("xgb", estimators, horizon=17), rw_bundle(17), metric="wiggle")


def test_classifiers_have_their_own_champion(reg, estimators):
    h = 19
    majority = ModelBundle("majority", h, "classification", None, [], "v1", constant=0.52)
    clf = make_bundle("calibrated", estimators, horizon=h)
    clf.metrics = {"overall": {"brier": 0.20}, "baseline": {"majority": {"brier": 0.25}}}
    d = promote(reg, clf, majority, metric="brier")
    assert d.promoted and d.direction == "min"
    assert reg.champion(h, task="classification")["name"] == "hgb_clf_19h"
    assert reg.champion(h) is None  # the regression champion is separate
    assert reg.status()["classifiers"]["19h"]["name"] == "hgb_clf_19h"


# --- rollback --------------------------------------------------------------------------------------

def test_rollback_to_the_previous_and_to_a_named_version(reg, estimators, data):
    X, _, _ = data
    h = 20
    rw = rw_bundle(h)
    a1 = make_bundle("xgb", estimators, horizon=h, mae=0.015)
    promote(reg, a1, rw)
    a2 = make_bundle("xgb", estimators, horizon=h, mae=0.014,
                     champion={"name": "xgb_reg", "version": a1.version, "mae": 0.015})
    promote(reg, a2, rw)
    b1 = make_bundle("pipeline", estimators, horizon=h, mae=0.013,
                     champion={"name": "xgb_reg", "version": a2.version, "mae": 0.014})
    promote(reg, b1, rw)
    assert reg.champion(h)["name"] == "ridge_reg_20h"

    change = reg.rollback(h)
    assert (change["name"], change["version"]) == ("xgb_reg_20h", a2.version)
    assert change["previous"] == {"name": "ridge_reg_20h", "version": b1.version}
    change = reg.rollback(h, version=a1.version, name="xgb_reg")
    assert (change["name"], change["version"]) == ("xgb_reg_20h", a1.version)
    assert reg.load_champion(h).version == a1.version
    change = reg.rollback(h, version=b1.version, name="ridge_reg_20h", reason="operator: ridge is calmer")
    assert change["reason"] == "operator: ridge is calmer"
    np.testing.assert_array_equal(reg.load_champion(h).predict(X), b1.predict(X))

    history = reg.history(h)
    assert [(e["name"], e["action"]) for e in history] == [
        ("random_walk_20h", "set"), ("xgb_reg_20h", "set"), ("xgb_reg_20h", "set"), ("ridge_reg_20h", "set"),
        ("xgb_reg_20h", "rollback"), ("xgb_reg_20h", "rollback"), ("ridge_reg_20h", "rollback")]
    assert all(e["at"] <= f["at"] for e, f in zip(history, history[1:], strict=False))
    with pytest.raises(ModelNotFoundError, match="earlier champions"):
        reg.rollback(h, version=99, name="xgb_reg")
    with pytest.raises(ModelNotFoundError, match="to roll back from"):
        reg.rollback(998)


def test_set_champion_checks_the_horizon(reg, estimators):
    b = make_bundle("xgb", estimators, horizon=21)
    reg.register(b)
    with pytest.raises(RegistryError, match="forecasts 21h, not 22h"):
        reg.set_champion(22, "xgb_reg_21h", b.version, "wrong horizon")
    change = reg.set_champion(21, "xgb_reg", b.version, "operator's choice")
    assert (change["name"], change["action"], change["previous"]) == ("xgb_reg_21h", "set", None)


# --- listings --------------------------------------------------------------------------------------

def test_versions_and_status_shapes(reg, estimators):
    h = 23
    rw = rw_bundle(h)
    promote(reg, make_bundle("xgb", estimators, horizon=h, mae=0.01), rw)
    versions = reg.versions()
    assert {"name", "family", "version", "horizon", "task", "status", "promoted", "reason", "created",
            "feature_version", "metrics"} <= set(versions[0])
    ours = [v for v in versions if v["horizon"] == h]
    assert {(v["name"], v["status"]) for v in ours} == {("random_walk_23h", "challenger"), ("xgb_reg_23h", "champion")}
    assert reg.versions("xgb_reg") == [v for v in versions if v["family"] == "xgb_reg"]
    status = json.loads(json.dumps(reg.status()))  # JSON-safe
    assert status["backend"] == reg.backend and status["model_versions"] == len(versions)
    model = status["models"][f"{h}h"]
    assert (model["name"], model["version"], model["is_random_walk"]) == ("xgb_reg_23h", 1, False)
    assert model["metrics"]["mae"] == 0.01 and model["age_s"] >= 0 and model["champion_since"]
    assert isinstance(reg, Registry)


def test_key_metrics_flatten_the_headline_numbers():
    km = key_metrics(metrics(0.01, champion={"name": "xgb_reg", "version": 3, "mae": 0.011}))
    assert km["mae"] == 0.01 and km["random_walk_mae"] == 0.02 and km["champion_mae"] == 0.011
    assert "champion_version" not in km and km["coverage_80"] == 0.81 and km["dm_pvalue"] == 0.04
    assert key_metrics({"overall": {"mae": float("nan")}}) == {}


# --- local backend specifics ------------------------------------------------------------------------

def test_local_registry_is_a_real_mlflow_store(local_reg, estimators, tmp_path):
    fresh = LocalRegistry(tmp_path / "data")
    assert fresh.status()["models"] == {"24h": {"horizon": 24, "task": "regression", "name": None, "version": None,
                                                "note": "no champion for 24h yet: run training"}}
    assert not (tmp_path / "data" / "mlflow.db").exists()  # status does not create a database
    reg, h = local_reg, 25
    b = make_bundle("xgb", estimators, horizon=h)
    promote(reg, b, rw_bundle(h))
    client = reg.client
    run = client.get_run(b.lineage["mlflow_run_id"])
    assert run.data.metrics["overall/mae"] == 0.015 and run.data.metrics["baseline/random_walk/mae"] == 0.02
    assert [m.value for m in client.get_metric_history(run.info.run_id, "folds/mae")] == pytest.approx([0.01425, 0.01575])
    assert run.data.params["family"] == "xgb_reg" and run.data.params["lineage.data_start"] == LINEAGE["data_start"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {"model/bundle.json", "model/model.ubj"}
    assert client.get_registered_model("xgb_reg_25h").aliases == {"champion-25h": 1}
    assert client.get_registered_model("random_walk_25h").aliases == {}
    changes = client.search_runs([client.get_experiment_by_name("cryptosentinel-champions").experiment_id],
                                 filter_string="tags.horizon = '25'")
    assert sorted(r.data.tags["name"] for r in changes) == ["random_walk_25h", "xgb_reg_25h"]
    assert reg.status()["tracking_uri"] == f"sqlite:///{reg.data_dir / 'mlflow.db'}"
    assert (reg.data_dir / "mlartifacts").is_dir()


def test_open_registry_follows_the_settings(tmp_path):
    reg = open_registry(Settings(_env_file=None, data_dir=tmp_path / "d"))
    assert isinstance(reg, LocalRegistry) and reg.data_dir == (tmp_path / "d").absolute()
    fake = FakeHopsworksRegistry(tmp_path / "hops", api_key="key", project="p")
    settings = Settings(_env_file=None, hopsworks_api_key="key", hopsworks_project="p")
    reg = open_registry(settings, login=fake.login)
    assert isinstance(reg, HopsworksRegistry) and reg.status()["project"] == "p"
    with pytest.raises(RegistryError, match="cannot open the Hopsworks model registry"):
        open_registry(Settings(_env_file=None, hopsworks_api_key="wrong", hopsworks_project="p"), login=fake.login)


def test_a_copied_data_directory_loads_its_champion_and_predicts(estimators, data, tmp_path):
    a, b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    reg = open_registry(Settings(_env_file=None, data_dir=a, horizons=[24]))
    model = make_bundle("xgb", estimators)
    assert promote(reg, model, rw_bundle(24)).promoted
    old = make_bundle("pipeline", estimators, mae=0.03)  # a version from before the `artifact_path` tag
    version = reg.register(old)
    reg.client.delete_model_version_tag("ridge_reg_24h", str(version), "artifact_path")
    shutil.copytree(a, b)
    shutil.rmtree(a.parent)

    moved = open_registry(Settings(_env_file=None, data_dir=b, horizons=[24]))
    X = data[0]
    champion = moved.load_champion(24)
    assert champion.registered_name == "xgb_reg_24h"
    np.testing.assert_allclose(champion.predict(X), model.predict(X))
    np.testing.assert_allclose(moved.load("ridge_reg_24h", version).predict(X), old.predict(X))
    corrupt(b / moved._record("xgb_reg_24h", 1)["artifact_path"] / "model.ubj")  # checksums still verified
    with pytest.raises(ModelIntegrityError, match="model.ubj is corrupted"):
        moved.load_champion(24)
    again = moved.register(make_bundle("pipeline", estimators, mae=0.03))  # new runs write under the copy
    assert moved._local_dir(moved._record("ridge_reg_24h", again)).is_relative_to(b)
    assert not a.exists()


# --- the gate of a training run -------------------------------------------------------------------
# (tests/test_gate.py has the gate's rules one by one; here, what a run's bundles go through in the registry)

def _run(estimators, horizon, ridge_share, xgb_share, clf_edge=0.3, seed=0):
    """What `gate_run` reads of a `TrainingRun`: the horizon, every family's bundle, the out-of-sample forecasts
    of each (`predictions`: coin, ts, fold, y_ret, one column per bundle) and the folds and dead band.
    A regressor's forecast is a share of the realised return; the classifier's P(up) leans `clf_edge` towards it."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=600, freq="h", tz="UTC") + pd.Timedelta(days=30 * seed)
    fold = np.repeat([1, 2, 3, 4], 150)
    rows = []
    for coin in ("bitcoin", "ethereum"):
        y = 0.02 * rng.standard_normal(len(ts))
        rows.append(pd.DataFrame({"coin": coin, "ts": ts, "fold": fold, "y_ret": y, "random_walk": 0.0,
                                  "xgb_reg": xgb_share * y, "ridge_reg": ridge_share * y, "majority": 0.5,
                                  "xgb_clf": 0.5 + clf_edge * np.sign(y)}))
    bundles = {"random_walk": rw_bundle(horizon),
               "xgb_reg": make_bundle("xgb", estimators, horizon=horizon),
               "ridge_reg": make_bundle("pipeline", estimators, horizon=horizon),
               "xgb_clf": make_bundle("xgb_clf", estimators, horizon=horizon),
               "majority": ModelBundle("majority", horizon, "classification", None, [], "v1", constant=0.5,
                                       metrics={"overall": {"brier": 0.25}})}
    return SimpleNamespace(horizon=horizon, bundles=bundles, predictions=pd.concat(rows, ignore_index=True),
                           lineage={"folds": [{"fold": k} for k in (1, 2, 3, 4)], "dead_band": 0.005})


def test_gate_run_promotes_the_best_model_without_editing_its_metrics(local_reg, estimators):
    reg, h = local_reg, 31
    run = _run(estimators, h, ridge_share=0.5, xgb_share=0.3)
    before = {n: json.dumps(b.metrics, sort_keys=True) for n, b in run.bundles.items()}
    first = gate_run(reg, run, "regression", notebook_path="reports/05_training.ipynb")
    assert (first["promoted"], first["name"], first["metric"]) == (True, f"ridge_reg_{h}h", "absolute_error")
    assert first["improvement"] == pytest.approx(0.5) and first["folds_won"] == 4 and first["p_holm"] < 0.05
    assert reg.champion(h)["name"] == f"ridge_reg_{h}h"
    loser = reg.load(f"xgb_reg_{h}h")  # it passes too, but its loss is higher
    assert loser.reason.startswith("not promoted: xgb_reg passes the gate") and "ridge_reg is the champion" in loser.reason
    assert loser.lineage["notebook_path"] == "reports/05_training.ipynb"
    assert loser.metrics["gate"]["improvement"] == pytest.approx(0.3)  # the registered version records its test
    assert gate_run(reg, run, "classification")["name"] == f"xgb_clf_{h}h"
    assert reg.champion(h, "classification")["name"] == f"xgb_clf_{h}h"
    for name, b in run.bundles.items():  # the run's bundles keep their own metrics
        assert json.dumps(b.metrics, sort_keys=True) == before[name]

    # the next run: the champion's family is re-scored on the new folds and compared on the same rows
    run2 = _run(estimators, h, ridge_share=0.5, xgb_share=0.6, seed=1)
    second = gate_run(reg, run2, "regression")
    assert second["promoted"] and second["name"] == f"xgb_reg_{h}h"
    assert second["champion_score"] == pytest.approx(0.5 * second["baseline_score"])
    assert second["champion_before"]["name"] == f"ridge_reg_{h}h" and "below champion ridge_reg" in second["reason"]

    run3 = _run(estimators, h, ridge_share=0.6, xgb_share=0.6, seed=2)  # a tie: the champion's family, retrained
    third = gate_run(reg, run3, "regression")
    assert third["promoted"] and third["name"] == f"xgb_reg_{h}h" and "retrained on newer data" in third["reason"]
    assert reg.champion(h)["version"] == third["version"] == second["version"] + 1


def test_gate_run_says_what_it_lacks(local_reg, estimators):
    run = _run(estimators, 32, 0.5, 0.3)
    del run.bundles["majority"]
    with pytest.raises(GateError, match="needs the majority baseline"):
        gate_run(local_reg, run, "classification")
    with pytest.raises(GateError, match="unknown task"):
        gate_run(local_reg, run, "ranking")
    assert {t: g.baselines for t, g in TASK_GATES.items()} == {
        "regression": ("random_walk",), "classification": ("majority",),
        "volatility": ("unconditional", "ewma", "vol_168")}
    assert {t: g.target for t, g in TASK_GATES.items()} == {"regression": "y_ret", "classification": "y_ret",
                                                           "volatility": "rv"}


def test_backend_errors_become_registry_errors_and_bugs_keep_their_type(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    reg = LocalRegistry(tmp_path / "data")

    def refuse(*args, **kwargs):
        raise MlflowException("database is locked")

    monkeypatch.setattr(reg.client, "get_model_version", refuse)
    with pytest.raises(RegistryError, match="cannot read m_1h v1: MlflowException"):
        reg._record("m_1h", 1)

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(reg.client, "get_model_version", bug)
    with pytest.raises(KeyError):
        reg._record("m_1h", 1)


def test_the_hopsworks_registry_lists_every_family_of_the_one_list(tmp_path):
    fake = FakeHopsworksRegistry(tmp_path / "hops", api_key="k", project="cs")
    reg = HopsworksRegistry(api_key="k", project="cs", login=fake.login, horizons=[24])
    assert {"xgb_reg", "hgb_clf", "random_walk", "majority"} <= set(reg.families)  # training's, none copied
    assert "zz_test_reg" not in reg.families
    register_family("zz_test_reg", "regression")
    try:
        assert "zz_test_reg" in reg.families and "zz_test_reg_24h" in reg._names()
    finally:
        del MODEL_FAMILIES["zz_test_reg"]
