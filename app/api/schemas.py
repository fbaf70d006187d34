"""Request and response models of the API that are not the package's own records (those come from
`cryptosentinel.queries` and `cryptosentinel.service`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cryptosentinel.service import ServedForecast

CoinId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
Horizon = Annotated[int, Field(ge=1, le=8760, description="hours ahead")]


class ErrorBody(BaseModel):
    code: str = Field(description="a stable machine-readable code, e.g. not_found, validation_error, unavailable")
    message: str = Field(description="what is wrong and what to do")
    details: Any = Field(None, description="one entry per problem (field, row, feature, coin)")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"error": {
        "code": "not_found", "message": "unknown coin 'tether': configured coins are bitcoin, ethereum",
        "details": []}}})
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d} for s, d in (
        (400, "bad request"), (404, "unknown coin, horizon or resource"), (422, "invalid input, naming the fields"),
        (500, "internal error (no traceback)"), (503, "no champion, stale data or store unreachable, with the reason"))}


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"coin": "bitcoin", "horizon": 24}, {"coin": ["bitcoin", "ethereum"]}]})
    coin: CoinId | Annotated[list[CoinId], Field(min_length=1, max_length=50)] = Field(
        description="one coin id, or several")
    horizon: Horizon | None = Field(None, description="hours ahead; None: every served horizon")

    @property
    def coins(self) -> list[str]:
        return [self.coin] if isinstance(self.coin, str) else list(self.coin)


class FeatureVector(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coin: CoinId
    close: float = Field(gt=0, allow_inf_nan=False, description="the close of the features' bar (for the price)")
    ts: datetime | None = Field(None, description="the features' bar (UTC); default: the current hour")
    features: dict[str, Any] = Field(description="every feature of the served version by name; values are checked "
                                                 "for missing, extra, non-finite and out-of-range entries")


class FeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "vectors": [{"coin": "bitcoin", "close": 40668.07, "ts": "2024-04-30T23:00:00Z",
                     "features": {"ret_1": 0.001, "...": "every feature of GET /api/v1/models/champion"}}],
        "horizon": 24}]})
    vectors: list[FeatureVector] = Field(min_length=1, max_length=1000, description="one vector or a batch")
    horizon: Horizon | None = None
    explain: bool = Field(False, description="add SHAP contributions (an explainer pass per row)")
    challenger: bool = Field(False, description="add the best challenger's forecast (a second model per row)")


class ForecastResponse(BaseModel):
    forecasts: list[ServedForecast]


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "ready": False, "reasons": ["bitcoin: features are stale: newest bar ..., 5.2 h old (limit 3 h)"],
        "checks": {"champions": {"loaded_at": "...", "horizons": {}}, "store": {"reachable": True}, "data": {}}}})
    ready: bool
    reasons: list[str]
    checks: dict[str, Any]


class ReloadResponse(BaseModel):
    changed: bool = Field(description="new champions were loaded and swapped in")
    loaded_at: str | None = None
    horizons: dict[str, Any] = {}
    error: str | None = None


class RunJob(BaseModel):
    id: str
    flow: str
    parameters: dict[str, Any]
    state: str = Field(examples=["Scheduled", "Running", "Completed", "Failed"])
    submitted_at: str
