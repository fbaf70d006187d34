"""One error shape for every 4xx and 5xx: `{"error": {"code", "message", "details"}}`; domain errors map to HTTP
codes here and nowhere else, and no traceback ever reaches the client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cryptosentinel.config import CryptoSentinelError, DataValidationError, StoreError
from cryptosentinel.queries import NotFoundError
from cryptosentinel.registry import ModelNotFoundError
from cryptosentinel.service import (
    AuthError,
    InputError,
    ServiceUnavailableError,
    UploadError,
    UploadTooLargeError,
)
from cryptosentinel.util import json_safe

log = logging.getLogger("cryptosentinel.api")

# (error class, HTTP status, code), most specific first
ERROR_MAP: tuple[tuple[type[Exception], int, str], ...] = (
    (AuthError, 401, "unauthorized"),
    (UploadTooLargeError, 413, "too_large"),
    (UploadError, 400, "bad_upload"),
    (InputError, 422, "invalid_input"),
    (NotFoundError, 404, "not_found"),
    (ModelNotFoundError, 404, "no_model"),
    (ServiceUnavailableError, 503, "unavailable"),
    (StoreError, 503, "store_unavailable"),
    (DataValidationError, 422, "invalid_input"),
    (CryptoSentinelError, 400, "bad_request"),
)
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type", 422: "validation_error", 503: "unavailable"}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    "The one error body."
    body = {"error": {"code": code, "message": message, "details": json_safe(details if details is not None else [])}}
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, code in ERROR_MAP:
        if isinstance(exc, cls):
            headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
            return error_response(status, code, str(exc), getattr(exc, "details", None), headers)
    raise exc  # not a domain error: the 500 handler's


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
               for e in exc.errors()]  # never echo the input back: it may hold NaN or a large upload
    fields = ", ".join(".".join(map(str, d["loc"])) for d in details[:5])
    return error_response(422, "validation_error", f"the request is invalid at {fields}", details)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None, getattr(exc, "headers", None))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    rid = _request_id(request)
    log.error("unhandled error on %s %s (request %s)", request.method, request.url.path, rid,
              exc_info=(type(exc), exc, exc.__traceback__))
    return error_response(500, "internal_error", f"internal error; quote request id {rid} when reporting it")


def install(app: FastAPI) -> None:
    "Register the handlers on `app`."
    app.add_exception_handler(CryptoSentinelError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error)
