"""The Hopsworks registry backend against tests/fake_hopsworks_registry.py (Hopsworks cannot be reached here).

The backend-independent behaviour (round trips, integrity, gate, rollback) runs on this backend too, in
test_registry.py; this file checks that the fake keeps the real signatures and what is specific to
Hopsworks: how metadata, checksums and the champion are kept in what its API allows.
"""

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
from fake_hopsworks_registry import FakeHopsworksRegistry
from fake_hopsworks_registry import MLProject as FakeProject
from fake_hopsworks_registry import Model as FakeModel
from fake_hopsworks_registry import ModelRegistry as FakeModelRegistry
from fake_hopsworks_registry import PythonModels as FakePythonModels
from test_registry import FEATURES, LINEAGE, metrics, rw_bundle

from cryptosentinel.bundle import ModelBundle, key_metrics
from cryptosentinel.registry import ModelIntegrityError, RegistryError, promote
from cryptosentinel.registry_hopsworks import HopsworksRegistry

pytestmark = pytest.mark.code


def _params(fn):
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def test_the_fake_keeps_the_real_signatures():
    pytest.importorskip("hopsworks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import hopsworks
        from hopsworks import project
        from hsml import model, model_registry
        from hsml.python import signature
    pairs = {
        FakeHopsworksRegistry.login: hopsworks.login,
        FakeProject.get_model_registry: project.Project.get_model_registry,
        FakePythonModels.create_model: signature.create_model,
        FakeModelRegistry.get_model: model_registry.ModelRegistry.get_model,
        FakeModelRegistry.get_models: model_registry.ModelRegistry.get_models,
        FakeModelRegistry.get_best_model: model_registry.ModelRegistry.get_best_model,
        FakeModel.save: model.Model.save,
        FakeModel.download: model.Model.download,
    }
    for fake, real in pairs.items():
        assert _params(fake) == _params(real), fake.__qualname__
    assert FakeModelRegistry.DEFAULT_VERSION == model_registry.ModelRegistry.DEFAULT_VERSION
    for attr in ("name", "version", "training_metrics", "description", "created"):
        assert isinstance(getattr(model.Model, attr), property)


@pytest.fixture
def fake(tmp_path):
    return FakeHopsworksRegistry(tmp_path / "hopsfs", api_key="k", project="cs")


@pytest.fixture
def reg(fake):
    return HopsworksRegistry(api_key="k", project="cs", host="example.hopsworks.ai", login=fake.login)


@pytest.fixture(scope="module")
def xgb_model():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=FEATURES)
    return X, xgboost.XGBRegressor(n_estimators=8, max_depth=2).fit(X, 0.1 * X.f1)


def xgb_bundle(model, horizon=24, mae=0.015, champion=None):
    return ModelBundle("xgb_reg", horizon, "regression", model, list(FEATURES), "v1", interval_scale="vol_24",
                       interval_quantiles={"80": 1.2}, metrics=metrics(mae, champion=champion), lineage=dict(LINEAGE))


def test_login_failure_is_a_registry_error(fake):
    with pytest.raises(RegistryError, match="cannot open the Hopsworks model registry.*401"):
        HopsworksRegistry(api_key="wrong", project="cs", login=fake.login)
    assert fake.logins[-1]["project"] == "cs"


def test_metadata_lives_where_the_api_allows(reg, fake, xgb_model):
    X, model = xgb_model
    b = xgb_bundle(model)
    b.metrics["overall"]["note"] = "text is logged in bundle.json only"
    b.metrics["overall"]["r2"] = float("nan")
    version = reg.register(b, input_example=X)
    stored = fake.registry("cs").get_model("xgb_reg_24h", version=version)
    assert stored.training_metrics == key_metrics(b.metrics)  # numbers only: get_best_model can sort on them
    assert all(isinstance(v, float) for v in stored.training_metrics.values())
    meta = json.loads(stored.description)
    assert (meta["family"], meta["horizon"], meta["task"], meta["feature_version"]) == ("xgb_reg", 24, "regression", "v1")
    assert set(meta["sha256"]) == {"bundle.json", "model.ubj", "input_example.json"}
    assert list(stored.input_example.columns) == FEATURES and len(stored.input_example) == 1
    files = {p.name for p in stored.model_files_path.iterdir()}
    assert files == {"bundle.json", "model.ubj", "input_example.json"}
    assert reg.load("xgb_reg_24h", version).lineage["hopsworks_project"] == "cs"


def test_the_champion_is_an_append_only_model(reg, fake, xgb_model):
    _, model = xgb_model
    rw = rw_bundle(24)
    first = xgb_bundle(model, mae=0.012)
    promote(reg, first, rw)
    second = xgb_bundle(model, mae=0.011, champion={"name": "xgb_reg_24h", "version": first.version, "mae": 0.012})
    promote(reg, second, rw)
    reg.rollback(24)
    pointer = fake.registry("cs").get_models("champion_24h")
    assert [m.training_metrics["version"] for m in pointer] == [rw.version, first.version, second.version, first.version]
    events = [json.loads(m.description) for m in pointer]
    assert [e["action"] for e in events] == ["set", "set", "set", "rollback"]
    assert [(e["name"], e["version"]) for e in reg.history(24)] == [
        ("random_walk_24h", 1), ("xgb_reg_24h", 1), ("xgb_reg_24h", 2), ("xgb_reg_24h", 1)]
    assert reg.champion(24)["version"] == first.version


def test_best_challenger_asks_get_best_model(reg, fake, xgb_model):
    _, model = xgb_model
    rw = rw_bundle(24)
    for mae in (0.03, 0.025):  # neither beats the random walk (0.02)
        assert not promote(reg, xgb_bundle(model, mae=mae), rw).promoted
    champ = reg.champion(24)
    assert champ["is_random_walk"] and champ["best_challenger"]["metrics"]["mae"] == 0.025
    assert ("xgb_reg_24h", "mae", "min") in fake.registry("cs").best_model_calls


def test_downloads_go_to_a_fresh_directory_and_are_verified(reg, fake, xgb_model):
    X, model = xgb_model
    b = xgb_bundle(model)
    version = reg.register(b)
    mr = fake.registry("cs")
    cached = mr.get_model("xgb_reg_24h", version=version).download()  # the client's shared cache
    (Path(cached) / "model.ubj").write_bytes(b"tampered")
    np.testing.assert_array_equal(reg.load("xgb_reg_24h", version).predict(X), b.predict(X))  # cache not used
    assert mr.downloads >= 1
    stored = mr.get_model("xgb_reg_24h", version=version).model_files_path / "bundle.json"
    stored.write_text(stored.read_text().replace('"v1"', '"v2"'))
    with pytest.raises(ModelIntegrityError, match="bundle.json is corrupted or was modified"):
        reg.load("xgb_reg_24h", version)


def test_versions_cover_known_families_and_new_ones(reg, xgb_model):
    _, model = xgb_model
    reg.register(xgb_bundle(model, horizon=6))
    custom = ModelBundle("lgbm_reg", 6, "regression", None, [], "v1", constant=0.001)  # a family not in the list
    reg.register(custom)
    names = {v["name"] for v in reg.versions()}
    assert {"xgb_reg_6h", "lgbm_reg_6h"} <= names
    assert reg.status()["registered_models"] == 2
