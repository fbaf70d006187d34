"""The configured coins and their price history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import State
from app.api.schemas import ERRORS, CoinId
from cryptosentinel import queries

router = APIRouter(prefix="/api/v1", tags=["market"], responses=ERRORS)


@router.get("/coins", response_model=list[queries.CoinSummary],
            summary="Configured coins with latest price, last bar, source and staleness")
def coins(state: State) -> list[queries.CoinSummary]:
    return queries.coins(state.store, state.settings, now=state.clock())


@router.get("/prices/{coin}", response_model=list[queries.PriceBar], summary="A coin's OHLCV history, resampled")
def prices(state: State, coin: Annotated[CoinId, Path(description="a configured coin id")],
           start: Annotated[datetime | None, Query(description="first bar (UTC)")] = None,
           end: Annotated[datetime | None, Query(description="end (UTC, exclusive)")] = None,
           interval: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,3}(h|H|D|W)$",
                                                 description="resample to e.g. 4h, 1D, 1W")] = None,
           ) -> list[queries.PriceBar]:
    return queries.price_history(state.store, coin, start=start, end=end, interval=interval, settings=state.settings)
