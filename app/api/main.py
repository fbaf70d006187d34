"""The app factory: `create_app()` builds the FastAPI app; its lifespan opens the store and the registry, loads the
champions once and checks them (and the data's newest bars) on an interval. Run it with
`cryptosentinel serve` (uvicorn `app.api.main:create_app --factory`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import cryptosentinel
from app.api import errors
from app.api.observability import FormAsJson, Metrics, RequestLog
from app.api.routes import admin, bench, health, history, insight, market, predict
from cryptosentinel.config import CryptoSentinelError, Settings, StoreError, get_settings
from cryptosentinel.service import ServiceState

log = logging.getLogger("cryptosentinel.api")

StateFactory = Callable[[Settings], ServiceState]


def open_state(settings: Settings) -> ServiceState:
    "The service state on the store and registry the settings choose."
    from cryptosentinel.registry_hopsworks import open_registry
    from cryptosentinel.store_hopsworks import open_store
    return ServiceState(open_store(settings), open_registry(settings), settings)


def start(state: ServiceState) -> None:
    "Load the champions, read the newest bars and forecast every coin once (each failure leaves /ready false)."
    try:
        state.check_champions()
    except CryptoSentinelError as exc:
        log.warning("starting without champions (/ready says why): %s", exc)
    try:
        state.refresh_bars()
    except StoreError as exc:
        log.warning("starting without the store (/ready says why): %s", exc)
    if state.champions is not None and state.bars:
        try:
            state.forecast(list(state.bars))
        except CryptoSentinelError as exc:  # stale data: served as a 503 with the reason until new bars come
            log.warning("no warm-up forecast: %s", exc)


async def watch(state: ServiceState) -> None:
    "Check the newest bars and the registry's champions on their intervals, off the request path."
    api = state.settings.api
    step = max(0.05, min(api.champion_check_s, api.data_check_s))
    last_champions = last_bars = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(step)
        now = asyncio.get_running_loop().time()
        try:
            if now - last_bars >= api.data_check_s:
                last_bars = now
                await asyncio.to_thread(state.refresh_bars)
            if now - last_champions >= api.champion_check_s:
                last_champions = now
                await asyncio.to_thread(state.check_champions)
        except CryptoSentinelError as exc:  # the store or registry is away for now: /ready reports it
            log.warning("background check failed (retrying in %.0f s): %s", step, exc)


def create_app(settings: Settings | None = None, state_factory: StateFactory | None = None) -> FastAPI:
    "The API: routes, error handlers, CORS, request logs and metrics; the lifespan owns the service state."
    settings = settings or get_settings()
    factory = state_factory or open_state

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await asyncio.to_thread(factory, settings)
        await asyncio.to_thread(start, state)
        app.state.service = state
        task = asyncio.create_task(watch(state))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app.state.service = None
            state.close()
            with contextlib.suppress(Exception):  # closing a store that is already gone is not an error
                state.store.close()

    app = FastAPI(title="CryptoSentinel API", version=cryptosentinel.__version__, lifespan=lifespan,
                  description="Crypto price forecasts with their risk (volatility, intervals, large-move "
                              "probabilities), prices, models, explanations, regimes, drift, alerts and runs. "
                              "Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`.")
    app.state.service = None
    app.state.metrics = metrics = Metrics()
    errors.install(app)
    for module in (health, market, predict, history, insight, admin):
        app.include_router(module.router)
    if settings.api.benchmark_routes:
        app.include_router(bench.router)
    if settings.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["*"])

    def model_version() -> Any:
        state = app.state.service
        champions = state.champions if state is not None else None
        return None if champions is None else champions.predictor.models[champions.horizons[0]].label

    app.add_middleware(FormAsJson)
    app.add_middleware(RequestLog, metrics=metrics, model_version=model_version)
    return app


def main() -> None:
    "`python -m app.api.main`: serve with the settings' host and port (logging configured here, the entrypoint)."
    import uvicorn

    from cryptosentinel.cli import configure_logging
    settings = get_settings()
    configure_logging(settings.log_level, as_json=True)
    uvicorn.run("app.api.main:create_app", factory=True, host=settings.api.host, port=settings.api.port,
                log_config=None)


if __name__ == "__main__":
    main()
