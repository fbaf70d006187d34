"""The prediction history and the models: versions, metrics, baselines, lineage, champions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import State
from app.api.schemas import ERRORS, CoinId, Horizon
from cryptosentinel import queries

router = APIRouter(prefix="/api/v1", tags=["history and models"], responses=ERRORS)


@router.get("/predictions/history", response_model=queries.PredictionPage,
            summary="Stored forecasts with their validation, rolling skill and coverage")
def prediction_history(state: State,
                       horizon: Annotated[Horizon | None, Query(description="default: the first served horizon")] = None,
                       coin: CoinId | None = None,
                       model: Annotated[str | None, Query(max_length=100, description="e.g. random_walk@3")] = None,
                       start: Annotated[datetime | None, Query(description="made_at from (UTC)")] = None,
                       end: Annotated[datetime | None, Query(description="made_at before (UTC)")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                       ) -> queries.PredictionPage:
    h = horizon if horizon is not None else state.settings.horizons[0]
    return queries.prediction_history(state.store, h, coin=coin, model=model, start=start, end=end, limit=limit,
                                      offset=offset, settings=state.settings)


@router.get("/models", response_model=list[queries.ModelVersion],
            summary="Every registered version with metrics, baselines, data window, features, gate decision, notebook")
def models(state: State, name: Annotated[str | None, Query(max_length=100, description="a registered name or "
                                                                                         "family")] = None,
           ) -> list[queries.ModelVersion]:
    return queries.models(state.registry, name)


@router.get("/models/champion", response_model=dict[str, Any],
            responses={200: {"content": {"application/json": {"example": {
                "backend": "local", "models": {"24h": {"name": "random_walk_24h", "version": 1,
                                                       "is_random_walk": True}}}}}}},
            summary="The champion per horizon and task (price, direction, volatility), and what is served now")
def champion(state: State) -> dict[str, Any]:
    out = queries.champions(state.registry)
    out["served"] = state.champions.summary() if state.champions is not None else None
    return out
