"""Builders of the API tests: a trained store and registry (simulator or a small window of the real data), the app
on it with the lifespan, and request bodies made from the stored features."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app/` is beside the package, not installed with it
from app.api.main import create_app  # noqa: E402
from cryptosentinel import pipelines
from cryptosentinel.config import ApiSettings, Settings
from cryptosentinel.features import FEATURE_NAMES
from cryptosentinel.registry_mlflow import LocalRegistry
from cryptosentinel.service import ServiceState
from cryptosentinel.store import PRICES
from cryptosentinel.store_local import LocalStore

ADMIN_KEY = "test-admin-key"


def no_shap(bundle: Any, X: pd.DataFrame) -> list[list[dict[str, Any]]]:
    "A cheap stand-in for SHAP: the first feature with a zero contribution, so the shape is exercised."
    return [[{"feature": bundle.feature_names[0], "value": 0.0, "contribution": 0.0}] for _ in range(len(X))]


def trained(root: Path, prices: pd.DataFrame, coins: list[str], source: str = "synthetic",
            n_folds: int = 2, **api: Any) -> tuple[Settings, LocalStore, LocalRegistry]:
    "Store the prices, compute features, train, and run one prediction pass (history, runs, alerts, drift)."
    settings = Settings(data_dir=root, reports_dir=root / "reports", coins=coins, horizons=[24], source=source,
                        api=ApiSettings(admin_api_key=ADMIN_KEY, benchmark_routes=True, **api))
    store = LocalStore(root / "store.sqlite")
    store.upsert(PRICES, prices)
    pipelines.update_features(store, settings=settings)
    registry = LocalRegistry(root / "registry")
    pipelines.train(store, registry, settings=settings, n_folds=n_folds)
    pipelines.predict(store, registry, settings=settings, explain=no_shap, now=prices["ts"].max())
    return settings, store, registry


def client(settings: Settings, store: LocalStore, registry: LocalRegistry, run_flow: Any = None,
           clock: Any = None) -> TestClient:
    "A TestClient of the app on this store and registry (use it as a context manager: the lifespan runs)."
    def factory(s: Settings) -> ServiceState:
        return ServiceState(store, registry, s, explain=no_shap, run_flow=run_flow, clock=clock)
    return TestClient(create_app(settings, state_factory=factory), raise_server_exceptions=False)


def stored_vectors(store: LocalStore, coins: list[str]) -> list[dict[str, Any]]:
    "The latest stored feature row of each coin as a /predict/features vector."
    vectors, _ = pipelines.training_view(store).latest_vectors(coins)
    return [{"coin": r["coin"], "close": float(r["close"]), "ts": r["ts"].isoformat(),
             "features": {n: float(r[n]) for n in FEATURE_NAMES}} for r in vectors.to_dict("records")]


def csv_bytes(prices: pd.DataFrame, columns: list[str] | None = None) -> bytes:
    "Bars as a CSV file (columns in the order given)."
    cols = columns or ["ts", "open", "high", "low", "close", "volume"]
    return prices[cols].to_csv(index=False).encode()


def parquet_bytes(prices: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    prices[["ts", "open", "high", "low", "close", "volume"]].to_parquet(buf)
    return buf.getvalue()


def stored_counts(store: LocalStore) -> dict[str, int]:
    "Rows per stored table and run records: compared before and after bad requests (nothing stored)."
    out = {name: meta.get("rows", 0) for name, meta in store.status()["tables"].items()}
    out["runs"] = len(store.runs(None, limit=1_000_000))
    return out
