"""Request logs (one JSON-ready record per request: request id, route, status, latency, model version) and the
Prometheus metrics (prometheus-client): requests and latency by route, champion versions, forecasts served, data
staleness. The log *format* is configured by the entrypoint (`cryptosentinel serve`), never here."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cryptosentinel.api.access")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    "The service's Prometheus collectors, in their own registry (one per app)."

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cryptosentinel_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cryptosentinel_http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.champion = Gauge("cryptosentinel_champion_version", "version of the champion served per horizon and task",
                              ["horizon", "task", "model"], registry=self.registry)
        self.forecasts = Counter("cryptosentinel_forecasts_served_total", "forecasts served",
                                 registry=self.registry)
        self.staleness = Gauge("cryptosentinel_data_staleness_seconds", "age of each coin's newest feature bar",
                               ["coin"], registry=self.registry)
        self._served = 0

    def update(self, state: Any) -> None:
        "Read the service state into the gauges (on every scrape)."
        champions = state.champions
        self.champion.clear()
        if champions is not None:
            for h in champions.horizons:
                for task, label in champions.versions(h).model_dump().items():
                    if label:
                        name, _, version = label.rpartition("@")
                        self.champion.labels(str(h), task, name).set(float(version or 0))
        for coin, age in state.staleness().items():
            self.staleness.labels(coin).set(age)
        if state.served > self._served:
            self.forecasts.inc(state.served - self._served)
            self._served = state.served


class RequestLog:
    "Pure ASGI middleware: a request id (X-Request-ID in and out), the access record and the request metrics."

    def __init__(self, app: ASGIApp, metrics: Metrics, model_version: Any) -> None:
        self.app, self.metrics, self.model_version = app, metrics, model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status["code"])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info("%s %s %d %.1f ms", method, route, status["code"], elapsed * 1000,
                     extra={"request_id": rid, "method": method, "route": route, "path": scope.get("path"),
                            "status": status["code"], "latency_ms": round(elapsed * 1000, 3),
                            "model_version": self.model_version()})


class FormAsJson:
    "`curl -d '{...}'` labels its JSON `application/x-www-form-urlencoded`: the JSON-only routes read such a body as JSON."

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = ("/api/v1/predict", "/api/v1/bench", "/api/v1/admin"),
                 exclude: tuple[str, ...] = ("/api/v1/predict/upload",)) -> None:
        self.app, self.prefixes, self.exclude = app, prefixes, exclude

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            path = scope.get("path", "")
            if path.startswith(self.prefixes) and not path.startswith(self.exclude):
                headers = scope.get("headers") or []
                form = any(k == b"content-type" and v.startswith(b"application/x-www-form-urlencoded")
                           for k, v in headers)
                if form:  # edited in place: the request log reads the matched route from this same scope
                    scope["headers"] = [(k, b"application/json" if k == b"content-type" else v) for k, v in headers]
        await self.app(scope, receive, send)
