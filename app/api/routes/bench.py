"""Floor endpoints for the benchmark (only with `api.benchmark_routes`): they parse the same requests as
`/predict` and `/predict/features` and answer the same shape, calling no model; async like those routes' fast
paths, so that the difference is the forecast alone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.schemas import FeaturesRequest, ForecastResponse, PredictRequest
from cryptosentinel.service import ServedForecast

router = APIRouter(prefix="/api/v1/bench", tags=["benchmark"])
EXAMPLE: dict[str, Any] = ServedForecast.model_config["json_schema_extra"]["example"]  # type: ignore[index, assignment]


@router.post("/floor/predict", response_model=ForecastResponse, summary="Parse a /predict request; no model")
async def floor_predict(body: PredictRequest) -> dict[str, Any]:
    return {"forecasts": [EXAMPLE | {"coin": c} for c in body.coins]}


@router.post("/floor/features", response_model=ForecastResponse, summary="Parse a /predict/features request; no model")
async def floor_features(body: FeaturesRequest) -> dict[str, Any]:
    return {"forecasts": [EXAMPLE | {"coin": v.coin} for v in body.vectors]}
