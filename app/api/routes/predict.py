"""Forecasts: from the latest stored features, from posted feature vectors, from an uploaded file of bars."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.api.deps import State
from app.api.schemas import ERRORS, CoinId, FeaturesRequest, ForecastResponse, PredictRequest
from cryptosentinel.service import UploadTooLargeError
from cryptosentinel.uploads import forecast_upload, read_upload

router = APIRouter(prefix="/api/v1", tags=["predict"], responses=ERRORS)


FAST_BATCH = 32  # up to this many posted vectors are forecast on the event loop (well under a millisecond each)


@router.post("/predict", response_model=ForecastResponse,
             summary="Forecast one or several coins from their latest stored features")
async def predict(state: State, body: PredictRequest) -> ForecastResponse:
    horizons = None if body.horizon is None else [body.horizon]
    rows = state.forecast(body.coins, horizons, compute=False)  # cached: a lookup, no thread hop
    if rows is None:  # a new bar or new champions: compute off the event loop
        rows = await run_in_threadpool(state.forecast, body.coins, horizons)
    return {"forecasts": rows}  # type: ignore[return-value]


@router.post("/predict/features", response_model=ForecastResponse,
             summary="Forecast from feature vectors (one or a batch); bad values are a 422 naming them")
async def predict_features(state: State, body: FeaturesRequest) -> ForecastResponse:
    horizons = None if body.horizon is None else [body.horizon]
    vectors = [{"coin": v.coin, "close": v.close, "ts": v.ts, "features": v.features} for v in body.vectors]
    args = (vectors, horizons, body.explain, body.challenger)
    if body.explain or len(vectors) > FAST_BATCH:  # SHAP or a large batch: off the event loop
        rows = await run_in_threadpool(state.forecast_features, *args)
    else:  # the compiled path: cheaper than a thread hop, and no GIL contention between request threads
        rows = state.forecast_features(*args)
    return {"forecasts": rows}  # type: ignore[return-value]


@router.post("/predict/upload", response_model=ForecastResponse,
             responses={413: ERRORS[400] | {"description": "file over the size or row limit"}},
             summary="Forecast from a CSV or Parquet file of OHLCV bars (multipart)")
async def predict_upload(state: State,
                         file: Annotated[UploadFile, File(description="CSV or Parquet: ts, open, high, low, close, "
                                                                      "volume (and coin)")],
                         coin: Annotated[CoinId | None, Form(description="the coin, when the file has no coin "
                                                                         "column")] = None,
                         all_bars: Annotated[bool, Query(description="forecast every bar with features, not only "
                                                                     "the last")] = False,
                         ) -> ForecastResponse:
    limit = state.settings.api.upload_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(f"the file is over the limit of {limit:,} bytes (CRYPTOSENTINEL_API__UPLOAD_MAX_BYTES)")
    prices = await run_in_threadpool(read_upload, data, file.filename, coin, state.settings)
    rows = await run_in_threadpool(forecast_upload, state, prices, all_bars)
    return {"forecasts": rows}  # type: ignore[return-value]
