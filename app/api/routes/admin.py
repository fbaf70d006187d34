"""Admin calls, behind the API key: reload the champions now, start a pipeline run in the background."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.concurrency import run_in_threadpool

from app.api.deps import Admin, State
from app.api.schemas import ERRORS, ReloadResponse, RunJob

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Admin],
                   responses=ERRORS | {401: {"model": ERRORS[400]["model"], "description": "no or wrong X-API-Key"}})


@router.post("/reload", response_model=ReloadResponse, summary="Check the registry's champions now; swap if changed")
async def reload(state: State, force: Annotated[bool, Query(description="reload even if unchanged")] = False,
                 ) -> dict[str, Any]:
    return await run_in_threadpool(state.check_champions, force)


@router.post("/runs/{flow}", response_model=RunJob, status_code=202,
             summary="Start a pipeline flow in the background (feature_pipeline, training_pipeline, ...)")
def start_run(state: State, flow: Annotated[str, Path(pattern=r"^[a-z_]{1,64}$")],
              parameters: Annotated[dict[str, Any] | None, Body(description="the flow's parameters")] = None,
              ) -> dict[str, Any]:
    return state.start_run(flow, parameters)
