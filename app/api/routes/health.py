"""`/health` (alive), `/ready` (champions loaded, store reachable, data fresh) and `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import cryptosentinel
from app.api.deps import State
from app.api.errors import error_response
from app.api.schemas import ERRORS, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is alive")
def health() -> Health:
    return Health(status="ok", version=cryptosentinel.__version__)


@router.get("/ready", response_model=Ready, responses={503: ERRORS[503]},
            summary="Champions loaded, store reachable, data fresh (503 with the reasons when not)")
def ready(state: State) -> Ready | JSONResponse:
    report = state.readiness()
    if not report["ready"]:
        return error_response(503, "not_ready", "; ".join(report["reasons"]), report)
    return Ready(**report)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}},
            summary="Prometheus metrics")
def metrics(request: Request, state: State) -> Response:
    m = request.app.state.metrics
    m.update(state)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["router", "ERRORS"]
