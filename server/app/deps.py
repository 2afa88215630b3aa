"""FastAPI dependencies as ``Annotated`` aliases: the opened stores and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from server.app.services import ServerServices
from server.auth import Principal, Role, require
from server.errors import Unavailable
from server.settings import ServerSettings

__all__ = [
    "AdminPrincipal",
    "CurrentPrincipal",
    "LabelerPrincipal",
    "Services",
    "Settings",
    "admin_principal",
    "current_principal",
    "get_services",
    "labeler_principal",
]


def get_services(request: Request) -> ServerServices:
    """The stores the app's lifespan opened.

    Raises:
        Unavailable: the app was not started (no lifespan ran).
    """
    services: ServerServices | None = getattr(request.app.state, "services", None)
    if services is None:
        raise Unavailable("the server's stores are not open")
    return services


Services = Annotated[ServerServices, Depends(get_services)]
"""The opened stores of this app."""


def get_settings(request: Request) -> ServerSettings:
    """The settings the app was created with."""
    settings: ServerSettings = request.app.state.settings
    return settings


Settings = Annotated[ServerSettings, Depends(get_settings)]
"""The settings of this app."""


def current_principal(
    request: Request,
    services: Services,
    authorization: Annotated[
        str | None,
        Header(description="`Bearer <token>`: a token from `curator-server token create`."),
    ] = None,
) -> Principal:
    """The caller, from its ``Authorization: Bearer`` token; kept on the request for the log.

    Raises:
        Unauthorized: no token, a malformed, unknown or revoked one (answered 401 with
            ``WWW-Authenticate: Bearer``).
    """
    principal = services.tokens.authenticate_header(authorization)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
"""The authenticated caller; any role. Check roles with :func:`server.auth.require`."""


def admin_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, if its token is an ``admin`` token.

    Raises:
        Forbidden: any other role.
    """
    require(principal, Role.ADMIN)
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]


def labeler_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, if its token is a ``labeler`` or ``admin`` token.

    Raises:
        Forbidden: a device token.
    """
    require(principal, Role.LABELER)
    return principal


LabelerPrincipal = Annotated[Principal, Depends(labeler_principal)]
