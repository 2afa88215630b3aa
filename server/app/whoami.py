"""``/v1/whoami``: who the caller's token says it is."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.app.deps import CurrentPrincipal
from server.app.errors import ErrorResponse
from server.auth import Role

__all__ = ["WhoAmI", "router"]

router = APIRouter(prefix="/v1", tags=["auth"])


class WhoAmI(BaseModel):
    """The principal a token stands for."""

    token_id: str = Field(description="The token's id (not the secret).")
    role: Role = Field(description="`device`, `labeler` or `admin`.")
    device_id: str | None = Field(description="The device a `device` token belongs to.")


@router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Check a token",
    description="Answers the role and device id of the bearer token; 401 when it is not valid.",
    responses={401: {"model": ErrorResponse, "description": "Missing, unknown or revoked token."}},
)
def whoami(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(token_id=principal.token_id, role=principal.role, device_id=principal.device_id)
