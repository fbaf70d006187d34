"""Explanations, regimes, drift, alerts and pipeline runs: each one query of `cryptosentinel.queries`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from app.api.deps import State
from app.api.schemas import ERRORS, CoinId, Horizon
from cryptosentinel import queries
from cryptosentinel.uploads import report_file, report_links

router = APIRouter(prefix="/api/v1", tags=["insight"], responses=ERRORS)


@router.get("/explain/{coin}", response_model=queries.Explanation,
            summary="SHAP contributions of the latest stored forecast, LIME beside them, and the explaining model's "
                    "global SHAP importance")
def explain(state: State, coin: Annotated[CoinId, Path()],
            horizon: Annotated[Horizon | None, Query(description="default: the first served horizon")] = None,
            ) -> queries.Explanation:
    h = horizon if horizon is not None else state.settings.horizons[0]
    return queries.explanation(state.store, coin, h, state.settings, registry=state.registry)


@router.get("/regimes/{coin}", response_model=queries.RegimeView, summary="Current regime and recent history")
def regimes(state: State, coin: Annotated[CoinId, Path()],
            days: Annotated[int, Query(ge=1, le=3650)] = 30) -> queries.RegimeView:
    return queries.regime(state.store, coin, days=days, settings=state.settings)


@router.get("/regimes/{coin}/pca", response_model=queries.RegimeProjection,
            summary="The coin's recent feature rows on their first two principal components, with their regime")
def regime_pca(state: State, coin: Annotated[CoinId, Path()],
               days: Annotated[int, Query(ge=1, le=3650)] = 30,
               max_points: Annotated[int, Query(ge=10, le=5000, description="the newest this many rows")] = 2000,
               ) -> queries.RegimeProjection:
    return queries.regime_projection(state.store, coin, days=days, max_points=max_points, settings=state.settings)


@router.get("/drift", response_model=queries.DriftSummary,
            summary="Latest integrity and drift results; `reports`: links to their HTML reports")
def drift(state: State, history: Annotated[int, Query(ge=1, le=1000)] = 50) -> queries.DriftSummary:
    found = queries.drift(state.store, history=history)
    return found.model_copy(update={"reports": report_links([found.latest, found.integrity], state.settings)})


@router.get("/alerts", response_model=list[queries.AlertRecord], summary="Alerts by severity, coin and time")
def alerts(state: State, severity: Literal["info", "warning", "critical"] | None = None,
           coin: CoinId | None = None,
           since: Annotated[datetime | None, Query(description="fired at or after (UTC); default: 30 days")] = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[queries.AlertRecord]:
    return queries.alerts(state.store, severity=severity, coin=coin, since=since, limit=limit, now=state.clock())


@router.get("/runs/flows", response_model=dict[str, dict[str, Any]],
            responses={200: {"content": {"application/json": {"example": {"feature_pipeline": {
                "last_state": "Completed", "last_run_at": "2024-05-01T10:07:00Z", "last_age_s": 1260.0,
                "last_duration_s": 42.1, "last_notebooks": ["20_ingest", "21_features"],
                "last_success_at": "2024-05-01T10:07:00Z", "last_success_age_s": 1260.0, "interval_s": 1800.0,
                "schedule_gap": False}}}}}},
            summary="Per flow: last run, state, duration, last success, schedule interval and whether it has a gap")
def run_flows(state: State) -> dict[str, dict[str, Any]]:
    return queries.flow_status(state.store, state.settings, now=state.clock())


@router.get("/runs", response_model=list[queries.RunRecord],
            summary="Pipeline and step runs with state and duration; `reports`: links to their executed notebooks as HTML")
def runs(state: State, kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[queries.RunRecord]:
    return [r.model_copy(update={"reports": report_links(r.record, state.settings)})
            for r in queries.runs(state.store, kind=kind, limit=limit)]


@router.get("/reports/{root}/{path:path}", response_class=FileResponse,
            responses={200: {"content": {"text/html": {}}, "description": "the HTML report"}},
            summary="An HTML report a drift or run record links to (drift reports, executed notebooks)")
def report(state: State, root: Literal["data", "reports"], path: Annotated[str, Path(max_length=500)]) -> FileResponse:
    return FileResponse(report_file(root, path, state.settings), media_type="text/html")
