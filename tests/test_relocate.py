"""A data directory copied (or mounted) at another path still loads its store, champion and run records."""

import shutil

import pytest

from cryptosentinel import pipelines, queries
from cryptosentinel.config import Settings
from cryptosentinel.registry_hopsworks import open_registry
from cryptosentinel.store_hopsworks import open_store

pytestmark = [pytest.mark.model, pytest.mark.slow]

COINS = ["bitcoin", "ethereum"]


def settings_at(path):
    return Settings(_env_file=None, data_dir=path, coins=COINS, store_backend="local", registry_backend="local")


def test_a_copied_data_directory_loads_its_champion_and_predicts(tmp_path):
    first = settings_at(tmp_path / "a")
    with open_store(first) as store:
        pipelines.ingest_to_store(store, "synthetic", start="2024-01-01", end="2024-03-20", settings=first)
        pipelines.update_features(store, settings=first)
        trained = pipelines.train(store, open_registry(first), settings=first, n_folds=2)
    champion = trained["horizons"]["24h"]["gates"]["regression"]["champion_after"]

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # nothing may still point at the old path
    moved = settings_at(tmp_path / "b")
    registry = open_registry(moved)
    with open_store(moved) as store:
        assert registry.champion(24)["version"] == champion["version"]
        predicted = pipelines.predict(store, registry, settings=moved, now="2024-03-20")
        report = queries.status_report(store, registry, moved)
    assert sorted(f["coin"] for f in predicted["forecasts"]) == COINS
    assert not predicted["refused"]
    assert report.store["tables"]["prices"]["rows"] > 0
    assert report.runs["train"] and report.models["models"]["24h"]["name"] == champion["name"]
    assert not (tmp_path / "a").exists()
