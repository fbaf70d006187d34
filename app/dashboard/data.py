"""Every call the dashboard makes to the API, and its caching: one module, so a page never fetches by itself.

The base URL comes from `CRYPTOSENTINEL_API_URL` (default http://127.0.0.1:8000); the admin key, when set, is the
API's own setting `CRYPTOSENTINEL_API__ADMIN_API_KEY` (`Settings.api.admin_api_key`). GET answers are cached with a
time-to-live (`st.cache_data`), keyed by the base URL too, so changing page does not refetch and two APIs never mix.
A failed call raises `ApiError` with a sentence that says what to do; pages show it, never a traceback."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
import pandas as pd
import streamlit as st

log = logging.getLogger("cryptosentinel.dashboard")

DEFAULT_API_URL = "http://127.0.0.1:8000"
TTL_S = 60  # seconds a GET answer is reused (prices, forecasts, models, ...)
TTL_FAST_S = 15  # health and readiness
TIMEOUT_S = 10.0


class ApiError(Exception):
    "The API did not answer (down, timed out) or answered with an error; `message` says what to do."
    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code

    @property
    def down(self) -> bool:
        return self.status is None

    @property
    def missing(self) -> bool:
        "Nothing there yet (404) or not ready (503): a section with no data rather than a failure."
        return self.status in (404, 503)


def api_url() -> str:
    "The API's base URL: the setting `CRYPTOSENTINEL_API_URL` (read on every call, so tests can point it)."
    return os.environ.get("CRYPTOSENTINEL_API_URL", DEFAULT_API_URL).rstrip("/")


def admin_key() -> str | None:
    "The admin key the API checks (`CRYPTOSENTINEL_API__ADMIN_API_KEY`), or None: admin buttons stay hidden."
    from cryptosentinel.config import ConfigError, get_settings
    try:
        key = get_settings().api.admin_api_key
    except ConfigError as exc:  # a bad setting elsewhere must not take the dashboard down
        log.warning("cannot read the settings (%s): admin buttons hidden", exc)
        return None
    return None if key is None else key.get_secret_value()


@st.cache_resource
def _client(base: str) -> httpx.Client:
    "One pooled HTTP client per API base URL (kept for the process)."
    return httpx.Client(base_url=base, timeout=TIMEOUT_S, headers={"Accept": "application/json"})


def _call(base: str, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None,
          headers: dict[str, str] | None = None) -> Any:
    try:
        r = _client(base).request(method, path, params={k: v for k, v in (params or {}).items() if v is not None},
                                  json=json, headers=headers)
    except httpx.TimeoutException as exc:
        raise ApiError(f"The API at {base} did not answer within {TIMEOUT_S:.0f} s ({type(exc).__name__}): check "
                       "that it is not overloaded, then reload this page.") from exc
    except httpx.TransportError as exc:
        raise ApiError(f"The API at {base} is not reachable ({type(exc).__name__}): start it with "
                       "`cryptosentinel serve`, or point CRYPTOSENTINEL_API_URL at it, then reload this page.") from exc
    if r.status_code >= 400:
        try:
            err = r.json().get("error") or {}
        except ValueError:
            err = {}
        message = err.get("message") or r.text[:300] or r.reason_phrase
        raise ApiError(str(message), r.status_code, err.get("code"))
    return r.json()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _get(base: str, path: str, params: tuple[tuple[str, Any], ...] = ()) -> Any:
    return _call(base, "GET", path, dict(params))


def get(path: str, **params: Any) -> Any:
    "A cached GET of the API (`ApiError` when it fails)."
    return _get(api_url(), path, tuple(sorted(params.items())))


@st.cache_data(ttl=TTL_FAST_S, show_spinner=False)
def _probe(base: str, path: str) -> dict[str, Any]:
    "/health or /ready, whose 503 body is an answer (not ready, with reasons) rather than a failure."
    try:
        r = _client(base).get(path)
    except httpx.TransportError as exc:  # includes timeouts
        return {"reachable": False, "error": f"{type(exc).__name__}"}
    try:
        body = r.json()
    except ValueError:
        body = {}
    return {"reachable": True, "status": r.status_code, "body": body}


# --- one function per question the pages ask

def health() -> dict[str, Any]:
    return _probe(api_url(), "/health")


def ready() -> dict[str, Any]:
    "{'ready': bool, 'reasons': [...], 'checks': {...}} from /ready (its 503 body carries the same in details)."
    probe = _probe(api_url(), "/ready")
    if not probe["reachable"]:
        return {"ready": False, "reasons": ["the API is not reachable"], "checks": {}, "reachable": False}
    body = probe["body"]
    if probe["status"] == 200:
        return {**body, "reachable": True}
    details = (body.get("error") or {}).get("details") or {}
    if isinstance(details, dict) and "reasons" in details:
        return {**details, "reachable": True}
    return {"ready": False, "reasons": [(body.get("error") or {}).get("message", "not ready")], "checks": {},
            "reachable": True}


def coins() -> list[dict[str, Any]]:
    return get("/api/v1/coins")


def prices(coin: str, start: str | None = None, interval: str | None = None) -> pd.DataFrame:
    "OHLCV bars, `ts` as UTC times."
    return frame(get(f"/api/v1/prices/{coin}", start=start, interval=interval), times=("ts",))


def forecasts(coins_: tuple[str, ...], horizon: int | None = None) -> list[dict[str, Any]]:
    "The served forecasts (POST /predict is a read: cached like a GET)."
    return _predict(api_url(), coins_, horizon)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _predict(base: str, coins_: tuple[str, ...], horizon: int | None) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"coin": list(coins_)}
    if horizon is not None:
        body["horizon"] = horizon
    return _call(base, "POST", "/api/v1/predict", json=body)["forecasts"]


def history(horizon: int | None = None, coin: str | None = None, model: str | None = None,
            limit: int = 1000) -> dict[str, Any]:
    "The newest `limit` stored forecasts with validation, and the rolling skill summary."
    return get("/api/v1/predictions/history", horizon=horizon, coin=coin, model=model, limit=limit)


def models() -> list[dict[str, Any]]:
    return get("/api/v1/models")


def champion() -> dict[str, Any]:
    return get("/api/v1/models/champion")


def explanation(coin: str, horizon: int | None = None) -> dict[str, Any]:
    return get(f"/api/v1/explain/{coin}", horizon=horizon)


def regimes(coin: str, days: int = 30) -> dict[str, Any]:
    return get(f"/api/v1/regimes/{coin}", days=days)


def regime_pca(coin: str, days: int = 30, max_points: int = 2000) -> dict[str, Any]:
    "The coin's recent feature rows on PC1 and PC2 with their regime."
    return get(f"/api/v1/regimes/{coin}/pca", days=days, max_points=max_points)


def flows() -> dict[str, dict[str, Any]]:
    "Per flow: last run, last success, interval and schedule gap."
    return get("/api/v1/runs/flows")


def drift(history_: int = 50) -> dict[str, Any]:
    return get("/api/v1/drift", history=history_)


def alerts(severity: str | None = None, coin: str | None = None) -> list[dict[str, Any]]:
    return get("/api/v1/alerts", severity=severity, coin=coin, limit=500)


def runs(kind: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    return get("/api/v1/runs", kind=kind, limit=limit)


def reload_champions() -> dict[str, Any]:
    "POST /admin/reload with the admin key (not cached); clears the cache so every page shows the new champions."
    out = _call(api_url(), "POST", "/api/v1/admin/reload", headers={"X-API-Key": admin_key() or ""})
    clear()
    return out


def start_run(flow: str) -> dict[str, Any]:
    "POST /admin/runs/{flow} with the admin key (not cached): the background job's record."
    return _call(api_url(), "POST", f"/api/v1/admin/runs/{flow}", headers={"X-API-Key": admin_key() or ""})


def clear() -> None:
    "Forget every cached answer (the sidebar's refresh button, admin calls, tests)."
    for fn in (_get, _probe, _predict):
        fn.clear()


# --- shaping answers for the charts (display only: no feature or model maths)

def frame(records: list[dict[str, Any]], times: tuple[str, ...] = ()) -> pd.DataFrame:
    "Records as a DataFrame, the named columns parsed as UTC times."
    df = pd.DataFrame.from_records(records)
    for col in times:
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


def coin_names() -> list[str]:
    "The configured coins (empty when the API is down)."
    try:
        return [c["coin"] for c in coins()]
    except ApiError:
        return []


def served_horizons() -> list[int]:
    "Hours of the horizons the API serves (from /ready's champions), else of the registry's price champions."
    served = ((ready().get("checks") or {}).get("champions") or {}).get("horizons") or {}
    found = sorted(int(k.rstrip("h")) for k in served if k.rstrip("h").isdigit())
    if found:
        return found
    try:
        listed = champion().get("models") or {}
    except ApiError:
        return []
    return sorted(int(k.rstrip("h")) for k in listed if k.rstrip("h").isdigit())
