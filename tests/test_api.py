"""The API end to end on a store and registry trained from the simulator: every endpoint through TestClient with the
lifespan, bad input in the one error shape with nothing stored, the admin key, and a champion swap under load."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from api_builders import ADMIN_KEY, client, csv_bytes, parquet_bytes, stored_counts, stored_vectors, trained
from builders import simulated_prices

from cryptosentinel.config import ApiSettings
from cryptosentinel.features import FEATURE_NAMES, FEATURE_VERSION

pytestmark = [pytest.mark.model, pytest.mark.slow]

COINS = ["bitcoin", "ethereum"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    prices = simulated_prices(COINS, "2024-01-01", "2024-05-01")
    return (*trained(tmp_path_factory.mktemp("api"), prices, COINS), prices)


@pytest.fixture(scope="module")
def api(sim):
    settings, store, registry, _ = sim
    runs: list[tuple] = []
    with client(settings, store, registry, run_flow=lambda flow, s, **kw: runs.append((flow, kw))) as c:
        c.runs = runs
        yield c


def is_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert "Traceback" not in r.text
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


# --- health, readiness, metrics

def test_health_ready_and_metrics(api):
    assert api.get("/health").json()["status"] == "ok"
    ready = api.get("/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["store"]["reachable"] and set(checks["data"]) == set(COINS)
    assert all(d["judged"] == "as of the last bar" for d in checks["data"].values())  # simulated: as of
    api.post("/api/v1/predict", json={"coin": "bitcoin"})
    text = api.get("/metrics").text
    for name in ("cryptosentinel_http_requests_total", "cryptosentinel_http_request_duration_seconds",
                 "cryptosentinel_champion_version", "cryptosentinel_forecasts_served_total",
                 "cryptosentinel_data_staleness_seconds"):
        assert name in text, name
    assert 'route="/api/v1/predict"' in text
    assert api.get("/health").headers["x-request-id"]


# --- market

def test_coins_and_prices(api, sim):
    coins = api.get("/api/v1/coins").json()
    assert [c["coin"] for c in coins] == COINS and all(c["price"] > 0 and c["source"] == "synthetic" for c in coins)
    bars = api.get("/api/v1/prices/bitcoin", params={"start": "2024-04-01T00:00:00Z", "interval": "4h"}).json()
    assert len(bars) == 30 * 6 and pd.Timestamp(bars[0]["ts"]) == pd.Timestamp("2024-04-01", tz="UTC")
    is_error(api.get("/api/v1/prices/tether"), 404, "not_found")
    is_error(api.get("/api/v1/prices/bitcoin", params={"interval": "fortnight"}), 422, "validation_error")


# --- forecasts

def test_predict_one_coin_has_the_forecast_intervals_volatility_and_versions(api, sim):
    settings, store, registry, prices = sim
    r = api.post("/api/v1/predict", json={"coin": "bitcoin", "horizon": 24})
    assert r.status_code == 200, r.text
    (f,) = r.json()["forecasts"]
    assert f["coin"] == "bitcoin" and f["horizon"] == 24 and f["feature_version"] == FEATURE_VERSION
    assert pd.Timestamp(f["made_at"]) == prices["ts"].max()
    assert f["price_lo_95"] < f["price_lo_80"] < f["pred_price"] < f["price_hi_80"] < f["price_hi_95"]
    assert f["vol_forecast"] > 0 and 0 <= f["p_move_10"] <= f["p_move_5"] <= 1 and f["interval_method"]
    champion = registry.champion(24)
    assert f["models"]["price"] == f["model"] == f"{champion['family']}@{champion['version']}"
    assert f["models"]["volatility"] and f["models"]["direction"]
    assert f["direction"] in ("up", "down", "no call") and f["top_features"]
    assert f["regime"]


def test_curl_d_with_its_form_content_type_is_read_as_json(api):
    r = api.post("/api/v1/predict", content=b'{"coin":"bitcoin","horizon":24}',
                 headers={"content-type": "application/x-www-form-urlencoded"})  # what `curl -d` sends
    assert r.status_code == 200 and r.json()["forecasts"][0]["vol_forecast"] > 0, r.text
    assert 'method="POST",route="unmatched"' not in api.get("/metrics").text  # the route is still matched


def test_predict_several_coins_and_the_cache(api):
    a = api.post("/api/v1/predict", json={"coin": COINS}).json()["forecasts"]
    b = api.post("/api/v1/predict", json={"coin": COINS}).json()["forecasts"]
    assert [f["coin"] for f in a] == COINS and a == b


def test_predict_features_equals_predict_on_the_stored_vectors(api, sim):
    _, store, _, _ = sim
    stored = api.post("/api/v1/predict", json={"coin": COINS}).json()["forecasts"]
    posted = api.post("/api/v1/predict/features", json={"vectors": stored_vectors(store, COINS), "challenger": True})
    assert posted.status_code == 200, posted.text
    for f, s in zip(posted.json()["forecasts"], stored, strict=True):
        for key in ("pred_return", "pred_price", "lo_80", "hi_80", "lo_95", "hi_95", "vol_forecast", "p_move_5",
                    "p_move_10", "p_up", "p_up_base_rate", "challenger_return", "ood_score"):
            assert (f[key] is None and s[key] is None) or math.isclose(f[key], s[key], rel_tol=1e-9, abs_tol=1e-12), key
        for key in ("coin", "direction", "interval_method", "model", "models", "made_at", "feature_version"):
            assert f[key] == s[key], key


def test_predict_upload_csv_shuffled_columns_and_parquet(api, sim):
    prices = simulated_prices(["bitcoin"], "2024-01-01", "2024-02-15", seed=7)
    shuffled = csv_bytes(prices, ["volume", "close", "ts", "low", "open", "high"])
    r = api.post("/api/v1/predict/upload", files={"file": ("bars.csv", shuffled, "text/csv")}, data={"coin": "bitcoin"})
    assert r.status_code == 200, r.text
    (f,) = r.json()["forecasts"]
    assert pd.Timestamp(f["made_at"]) == prices["ts"].max()
    assert f["vol_forecast"] is None or f["vol_forecast"] > 0  # 45 days of bars: fewer than the volatility look-back
    every = api.post("/api/v1/predict/upload", params={"all_bars": True},
                     files={"file": ("bars.parquet", parquet_bytes(prices), "application/octet-stream")},
                     data={"coin": "bitcoin"})
    assert every.status_code == 200, every.text
    assert len(every.json()["forecasts"]) == len(prices) - 509


# --- history, models, insight

def test_history_models_explain_regimes_drift_alerts_runs(api, sim):
    settings, store, registry, _ = sim
    page = api.get("/api/v1/predictions/history", params={"coin": "bitcoin", "limit": 5}).json()
    assert page["total"] > 5 and len(page["rows"]) == 5 and page["skill"]
    models = api.get("/api/v1/models").json()
    assert {m["task"] for m in models} >= {"regression", "classification", "volatility"}
    champ = api.get("/api/v1/models/champion").json()
    assert "24h" in champ["models"] and champ["served"]["horizons"]["24h"]["price"]
    expl = api.get("/api/v1/explain/bitcoin").json()
    assert expl["coin"] == "bitcoin" and expl["shap"]
    reg = api.get("/api/v1/regimes/ethereum", params={"days": 7}).json()
    assert reg["current"]["regime"] and reg["history"]
    assert api.get("/api/v1/drift").status_code == 200
    assert api.get("/api/v1/alerts", params={"since": "2024-01-01T00:00:00Z"}).status_code == 200
    runs = api.get("/api/v1/runs", params={"kind": "predict"}).json()
    assert runs and runs[0]["kind"] == "predict" and runs[0]["reports"] == []
    assert "reports" in api.get("/api/v1/drift").json()


def test_explain_serves_the_global_shap_importance_of_the_explaining_model(api, sim):
    _, _, registry, _ = sim
    expl = api.get("/api/v1/explain/bitcoin").json()
    family, _, version = expl["explained_by"].rpartition("@")
    imp = expl["importance"]
    bundle = registry.load(f"{family}_24h", int(version))
    if bundle.is_constant:  # a constant model has no SHAP importance
        assert imp is None
    else:
        assert imp["features"] and {"feature", "mean_abs_shap"} <= set(imp["features"][0])
        assert imp == bundle.lineage["shap_importance"]


def test_regime_pca_points_are_bounded_and_labelled(api):
    proj = api.get("/api/v1/regimes/bitcoin/pca", params={"days": 10, "max_points": 50}).json()
    assert proj["coin"] == "bitcoin" and proj["rows"] == 10 * 24 + 1 and len(proj["points"]) == 50
    assert {"ts", "pc1", "pc2", "regime"} <= set(proj["points"][0]) and len(proj["explained_variance"]) == 2
    regimes = set(api.get("/api/v1/regimes/bitcoin").json()["descriptions"])
    assert {p["regime"] for p in proj["points"]} <= regimes
    is_error(api.get("/api/v1/regimes/tether/pca"), 404, "not_found")
    is_error(api.get("/api/v1/regimes/bitcoin/pca", params={"max_points": 10_000}), 422, "validation_error")


def test_runs_flows_shows_each_flow_with_its_schedule_gap(api, sim):
    _, store, _, _ = sim
    flows = api.get("/api/v1/runs/flows").json()
    assert set(flows) == {"feature_pipeline", "training_pipeline", "inference_pipeline", "backfill"}
    assert flows["backfill"]["schedule_gap"] is None  # not scheduled
    assert all(flows[f]["interval_s"] > 0 for f in ("feature_pipeline", "training_pipeline", "inference_pipeline"))
    never = [f for f, s in flows.items() if s["last_state"] is None and s["interval_s"]]
    assert all(flows[f]["schedule_gap"] is True for f in never)  # never succeeded: a gap
    store.record_run("flow_run", {"flow": "inference_pipeline", "state": "Completed", "duration_s": 2.5,
                                  "notebooks": ["23_predict"]})
    ran = api.get("/api/v1/runs/flows").json()["inference_pipeline"]
    assert ran["last_state"] == "Completed" and ran["last_duration_s"] == 2.5 and ran["schedule_gap"] is False


def test_drift_scores_over_time_per_feature(api):
    scores = api.get("/api/v1/drift").json()["scores"]
    assert scores and {"ts", "feature", "score"} <= set(scores[0])


def test_reports_by_link_and_nothing_else(api, sim):
    settings, store, _, _ = sim
    page = settings.reports_dir / "runs" / "r1" / "23_predict.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<html><body>executed</body></html>")
    store.record_run("test_pipeline", {"tasks": [{"notebook": "23_predict", "html_path": str(page)}]})
    (run,) = api.get("/api/v1/runs", params={"kind": "test_pipeline"}).json()
    (link,) = run["reports"]
    r = api.get(link)
    assert r.status_code == 200 and "executed" in r.text and r.headers["content-type"].startswith("text/html")
    is_error(api.get("/api/v1/reports/data/store.sqlite"), 404, "not_found")
    is_error(api.get("/api/v1/reports/reports/%2e%2e/%2e%2e/etc/passwd.html"), 404, "not_found")
    is_error(api.get("/api/v1/reports/elsewhere/x.html"), 422, "validation_error")
    is_error(api.get("/api/v1/explain/tether"), 404, "not_found")
    is_error(api.get("/api/v1/predictions/history", params={"horizon": 48}), 404, "not_found")
    is_error(api.get("/api/v1/alerts", params={"severity": "loud"}), 422, "validation_error")
    is_error(api.get("/api/v1/nowhere"), 404, "not_found")


# --- bad input: 4xx in the one shape, nothing stored

def test_bad_input_is_a_4xx_in_one_shape_and_nothing_is_stored(api, sim):
    _, store, _, _ = sim
    before = stored_counts(store)
    good = stored_vectors(store, ["bitcoin"])[0]
    nan = {**good, "features": {**good["features"], "vol_24": float("nan"), "rsi_14": float("inf")}}
    cases = [
        (api.post("/api/v1/predict", content=b'{"coin": "bitcoin",', headers={"content-type": "application/json"}),
         422, "validation_error"),
        (api.post("/api/v1/predict", json={"coin": 42}), 422, "validation_error"),
        (api.post("/api/v1/predict", json={"coin": "bitcoin", "horizon": "soon"}), 422, "validation_error"),
        (api.post("/api/v1/predict", json={"coin": "tether"}), 404, "not_found"),
        (api.post("/api/v1/predict", json={"coin": "bitcoin", "horizon": 48}), 404, "not_found"),
        (api.post("/api/v1/predict/features", content=_json_with_nan(nan), headers={"content-type": "application/json"}),
         422, "invalid_input"),
        (api.post("/api/v1/predict/features", json={"vectors": [{**good, "features": {"ret_1": 0.1, "foo": 1.0}}]}),
         422, "invalid_input"),
        (api.post("/api/v1/predict/features", json={"vectors": [{**good, "features": {**good["features"],
                                                                                      "rsi_14": 150.0}}]}),
         422, "invalid_input"),
        (api.post("/api/v1/predict/features", json={"vectors": []}), 422, "validation_error"),
        (api.post("/api/v1/predict/upload", files={"file": ("empty.csv", b"", "text/csv")}, data={"coin": "bitcoin"}),
         400, "bad_upload"),
        (api.post("/api/v1/predict/upload", files={"file": ("x.csv", b"\x00\xff\xfe garbage", "text/csv")},
                  data={"coin": "bitcoin"}), 4, None),
        (api.post("/api/v1/predict/upload", files={"file": ("x.csv", b"ts,open,close\n2024-01-01,1,2\n", "text/csv")},
                  data={"coin": "bitcoin"}), 422, "invalid_input"),
        (api.post("/api/v1/predict/upload", files={"file": ("x.csv", csv_bytes(simulated_prices(["bitcoin"],
                  "2024-01-01", "2024-01-05")), "text/csv")}, data={"coin": "bitcoin"}), 422, "invalid_input"),
        (api.post("/api/v1/predict/upload", data={"coin": "bitcoin"}), 422, "validation_error"),
    ]
    for i, (r, status, code) in enumerate(cases):
        if status == 4:
            assert 400 <= r.status_code < 500, (i, r.status_code, r.text)
            is_error(r, r.status_code)
        else:
            is_error(r, status, code)
    err = is_error(cases[5][0], 422)
    named = {f for d in err["details"] for f in d["features"]}
    assert {"vol_24", "rsi_14"} <= named and "vol_24" in err["message"]
    missing = is_error(cases[6][0], 422)["details"]
    assert {d["problem"] for d in missing} == {"missing", "extra"}
    assert stored_counts(store) == before


def _json_with_nan(vector: dict) -> bytes:
    import json
    return json.dumps({"vectors": [vector]}, allow_nan=True).encode()  # NaN and Infinity literals, as some clients send


def test_oversized_upload_is_413(sim):
    settings, store, registry, _ = sim
    small = settings.model_copy(update={"api": settings.api.model_copy(update={"upload_max_bytes": 1000,
                                                                               "upload_max_rows": 100})})
    prices = simulated_prices(["bitcoin"], "2024-01-01", "2024-02-15", seed=7)
    with client(small, store, registry) as c:
        err = is_error(c.post("/api/v1/predict/upload", files={"file": ("bars.csv", csv_bytes(prices), "text/csv")},
                              data={"coin": "bitcoin"}), 413, "too_large")
        assert "1,000" in err["message"]


def test_stale_live_data_and_no_champion_are_503_with_the_reason(sim, tmp_path):
    settings, store, registry, prices = sim
    later = lambda: prices["ts"].max() + pd.Timedelta(hours=10)  # noqa: E731
    with client(settings, store, registry, clock=later) as c:
        state = c.app.state.service
        state.bars = {k: (ts, "coingecko") for k, (ts, _) in state.bars.items()}  # as if from the live source
        state.refresh_bars = lambda: state.bars  # keep it so for this test
        err = is_error(c.post("/api/v1/predict", json={"coin": "bitcoin"}), 503, "unavailable")
        assert "stale" in err["message"] and err["details"][0]["coin"] == "bitcoin"
        assert "stale" in is_error(c.get("/ready"), 503, "not_ready")["message"]
    from cryptosentinel.registry_mlflow import LocalRegistry
    with client(settings, store, LocalRegistry(tmp_path / "empty")) as c:
        assert "no champions" in is_error(c.post("/api/v1/predict", json={"coin": "bitcoin"}), 503)["message"]
        assert "no champions" in is_error(c.get("/ready"), 503, "not_ready")["message"]


def test_an_unexpected_error_is_a_500_without_traceback(api):
    state = api.app.state.service
    original = state.forecast
    state.forecast = lambda *a, **k: 1 / 0
    try:
        err = is_error(api.post("/api/v1/predict", json={"coin": "bitcoin"}), 500, "internal_error")
        assert "ZeroDivision" not in err["message"] and "request id" in err["message"]
    finally:
        state.forecast = original


# --- admin

def test_admin_routes_refuse_a_missing_or_wrong_key(api, sim):
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ADMIN_KEY + "x"}):
        is_error(api.post("/api/v1/admin/reload", headers=headers), 401, "unauthorized")
        is_error(api.post("/api/v1/admin/runs/inference_pipeline", headers=headers), 401, "unauthorized")
    ok = api.post("/api/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    assert ok.status_code == 200 and ok.json()["changed"] is False
    assert api.post("/api/v1/admin/reload", params={"force": True}, headers={"X-API-Key": ADMIN_KEY}).json()["changed"]
    settings, store, registry, _ = sim
    with client(settings.model_copy(update={"api": ApiSettings()}), store, registry) as c:  # no key configured
        is_error(c.post("/api/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY}), 401, "unauthorized")


def test_admin_starts_a_pipeline_run_in_the_background(api):
    r = api.post("/api/v1/admin/runs/inference_pipeline", headers={"X-API-Key": ADMIN_KEY}, json={"coins": ["bitcoin"]})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["flow"] == "inference_pipeline" and job["state"] in ("Scheduled", "Running", "Completed")
    state = api.app.state.service
    state._runs.submit(lambda: None).result(timeout=30)  # the one worker has finished the run before this
    assert state.jobs[job["id"]]["state"] == "Completed" and api.runs == [("inference_pipeline", {"coins": ["bitcoin"]})]
    is_error(api.post("/api/v1/admin/runs/nothing", headers={"X-API-Key": ADMIN_KEY}), 404, "not_found")
    is_error(api.post("/api/v1/admin/runs/backfill", headers={"X-API-Key": ADMIN_KEY}, json={"weeks": 3}), 422)


# --- champion swap under load (last: it changes the registry's champion)

def test_champion_swap_under_concurrent_requests_fails_no_request(api, sim):
    settings, store, registry, _ = sim
    before = registry.champion(24)
    versions = [v for v in registry.versions() if v.get("task") == "regression" and v.get("horizon") == 24]
    other = next(v for v in versions if v["name"] != before["name"])
    body = {"vectors": stored_vectors(store, COINS)}
    stop, statuses, models = threading.Event(), [], set()

    def hammer(i: int) -> None:
        while not stop.is_set():
            r = (api.post("/api/v1/predict", json={"coin": COINS}) if i % 2
                 else api.post("/api/v1/predict/features", json=body))
            statuses.append(r.status_code)
            if r.status_code == 200:
                models.add(r.json()["forecasts"][0]["model"])

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer, i) for i in range(4)]
        try:
            for target in (other, before, other):
                registry.set_champion(24, target["name"], target["version"], "swap test")
                swap = api.post("/api/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
                assert swap.status_code == 200 and swap.json()["changed"], swap.text
        finally:
            stop.set()
            for f in futures:
                f.result()
            registry.set_champion(24, before["name"], before["version"], "swap test: restored")
            api.post("/api/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert len(models) == 2  # both champions answered during the test
    assert np.isfinite(len(FEATURE_NAMES))
