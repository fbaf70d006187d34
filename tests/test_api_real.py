"""The API on a store and registry trained from a small window of the real hourly data in ../shared/data (read in
place): readiness "as of" the snapshot's last bar, forecasts from the stored and the posted features, an upload of
the real file's own lines, and the read endpoints."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from api_builders import client, stored_vectors, trained
from builders import HOURLY, shared_prices

pytestmark = [pytest.mark.data, pytest.mark.shared_data, pytest.mark.slow]

COINS = ["bitcoin", "ethereum", "solana"]
DAYS = 150  # the window: enough for the volatility look-back (90 days) and two walk-forward folds


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory):
    prices = shared_prices(shared_data, HOURLY, COINS)
    prices = prices[prices["ts"] >= prices["ts"].max() - pd.Timedelta(days=DAYS)].reset_index(drop=True)
    settings, store, registry = trained(tmp_path_factory.mktemp("real"), prices, COINS, source="csv")
    with client(settings, store, registry) as c:
        yield c, store, prices, shared_data


def test_ready_as_of_the_snapshot_and_every_read_endpoint(real):
    api, _, prices, _ = real
    ready = api.get("/ready")
    assert ready.status_code == 200, ready.text
    data = ready.json()["checks"]["data"]
    assert {d["source"] for d in data.values()} == {"csv"} and all(d["fresh"] for d in data.values())
    assert [c["coin"] for c in api.get("/api/v1/coins").json()] == COINS
    for path in ("/api/v1/prices/solana", "/api/v1/predictions/history", "/api/v1/models", "/api/v1/models/champion",
                 "/api/v1/explain/bitcoin", "/api/v1/regimes/bitcoin", "/api/v1/drift", "/api/v1/alerts",
                 "/api/v1/runs", "/metrics", "/health"):
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)


def test_forecasts_from_stored_and_posted_features_agree(real):
    api, store, prices, _ = real
    stored = api.post("/api/v1/predict", json={"coin": COINS, "horizon": 24})
    assert stored.status_code == 200, stored.text
    rows = stored.json()["forecasts"]
    assert [f["coin"] for f in rows] == COINS
    for f in rows:
        last = prices[prices["coin"] == f["coin"]]["ts"].max()
        assert pd.Timestamp(f["made_at"]) == last and f["vol_forecast"] > 0
        assert f["price_lo_95"] < f["price_lo_80"] <= f["pred_price"] <= f["price_hi_80"] < f["price_hi_95"]
    posted = api.post("/api/v1/predict/features", json={"vectors": stored_vectors(store, COINS), "horizon": 24,
                                                        "challenger": True}).json()["forecasts"]
    for f, s in zip(posted, rows, strict=True):
        for key in ("pred_return", "lo_80", "hi_95", "vol_forecast", "p_move_5", "challenger_return"):
            assert (f[key] is None and s[key] is None) or math.isclose(f[key], s[key], rel_tol=1e-9, abs_tol=1e-12)


def test_upload_of_the_real_files_lines(real):
    api, _, prices, shared_data = real
    raw = (shared_data / HOURLY / "ETHUSDT_1h.csv").read_text().splitlines()
    body = "\n".join([raw[0], *raw[-1500:]]).encode()  # the Binance layout: date, open, ..., volume, ticker
    r = api.post("/api/v1/predict/upload", files={"file": ("ETHUSDT_1h.csv", body, "text/csv")},
                 data={"coin": "ethereum"})
    assert r.status_code == 200, r.text
    (f,) = r.json()["forecasts"]
    assert f["coin"] == "ethereum" and f["price"] > 0
