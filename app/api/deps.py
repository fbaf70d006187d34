"""Dependencies as `Annotated` aliases: the service state, the settings, the store and registry, the admin key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from cryptosentinel.config import Settings
from cryptosentinel.service import ServiceState, ServiceUnavailableError, check_admin_key


async def get_state(request: Request) -> ServiceState:  # async: no threadpool hop per request
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise ServiceUnavailableError("the service is starting: no store or registry opened yet")
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def get_settings_(state: State) -> Settings:
    return state.settings


async def get_store(state: State) -> Any:
    return state.store


async def get_registry(state: State) -> Any:
    return state.registry


AppSettings = Annotated[Settings, Depends(get_settings_)]
StoreDep = Annotated[Any, Depends(get_store)]
RegistryDep = Annotated[Any, Depends(get_registry)]

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the admin key (settings: api.admin_api_key)")


async def require_admin(state: State, key: Annotated[str | None, Security(_api_key)]) -> None:
    check_admin_key(state.settings, key)


Admin = Depends(require_admin)
