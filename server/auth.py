"""API tokens: who may call the server, in which role, for which device.

- :class:`Role`: ``device`` (uploads for its own device id), ``labeler``, ``admin`` (anything).
- :class:`TokenStore`: ``create`` issues a token, ``authenticate`` maps a token to a
  :class:`Principal`, ``revoke`` ends it, ``list`` shows them without secrets.
- :func:`bearer_token` reads an ``Authorization: Bearer <token>`` value; :func:`require`
  checks a principal's role and device.

A token is ``cur_`` followed by ``secrets.token_urlsafe(32)`` (256 random bits, 43 characters).
Only its SHA-256 is stored: the token is random, so the hash cannot be searched back and needs
no salt or slow hashing. It is shown once, at creation. Errors never contain a token.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from curator.errors import InvalidInputError
from server.catalog import check_device_id
from server.db import Migration, SQLiteFile
from server.errors import Forbidden, Unauthorized

__all__ = [
    "AUTH_MIGRATIONS",
    "TOKEN_PREFIX",
    "IssuedToken",
    "Principal",
    "Role",
    "TokenInfo",
    "TokenStore",
    "bearer_token",
    "require",
]

TOKEN_PREFIX = "cur_"
_TOKEN = re.compile(r"cur_[A-Za-z0-9_-]{43}")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,128}")

AUTH_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "auth.0001_api_tokens",
        """
        CREATE TABLE api_tokens (
            token_id TEXT PRIMARY KEY,
            token_sha256 BLOB NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
            role TEXT NOT NULL CHECK (role IN ('device', 'labeler', 'admin')),
            device_id TEXT,
            label TEXT,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            CHECK ((role = 'device') = (device_id IS NOT NULL))
        ) STRICT;
        """,
    ),
)
"""The token table, as named migrations; it may share a file with the catalog."""


class Role(StrEnum):
    """What a token may do; ``admin`` may do everything."""

    DEVICE = "device"
    LABELER = "labeler"
    ADMIN = "admin"


@dataclass(frozen=True)
class IssuedToken:
    """A new token. ``token`` is the secret: hand it over once, it is not stored."""

    token_id: str
    token: str = field(repr=False)
    role: Role
    device_id: str | None


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's id, role and (for a device) its device id."""

    token_id: str
    role: Role
    device_id: str | None


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: everything but the secret."""

    token_id: str
    role: Role
    device_id: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization`` header value ``Bearer <token>``.

    The scheme is case-insensitive; the token itself is checked by
    :meth:`TokenStore.authenticate`.

    Raises:
        Unauthorized: the value is missing, uses another scheme, or is not one token.
    """
    if authorization is None or not authorization.strip():
        raise Unauthorized("missing Authorization header; expected 'Bearer <token>'")
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization header must use the Bearer scheme")
    token = rest.strip()
    if not token or any(ch.isspace() for ch in token):
        raise Unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    return token


def require(principal: Principal, role: Role | str, device_id: str | None = None) -> None:
    """Check that ``principal`` may act in ``role``, for ``device_id`` if given.

    An admin may do everything. Otherwise the role must match, and a device token may act only
    for its own device id.

    Raises:
        Forbidden: the wrong role, or a device token acting for another device.
        InvalidInputError: ``role`` is not a role name.
    """
    wanted = _role(role)
    if principal.role is Role.ADMIN:
        return
    if principal.role is not wanted:
        raise Forbidden(
            f"token {principal.token_id} has role {principal.role.value!r}; "
            f"this needs {wanted.value!r}"
        )
    if device_id is not None and principal.role is Role.DEVICE and principal.device_id != device_id:
        raise Forbidden(
            f"token {principal.token_id} belongs to device {principal.device_id!r}, "
            f"not {device_id!r}"
        )


class TokenStore:
    """Tokens in a SQLite file (the catalog's, or their own).

    Args:
        db: a database file path (the store opens and closes it) or a :class:`SQLiteFile`
            shared with other stores, e.g. ``catalog.db``. Migrations run on open.
        clock: returns the aware current time; defaults to UTC now.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | SQLiteFile,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._owns_db = not isinstance(db, SQLiteFile)
        self.db: SQLiteFile = db if isinstance(db, SQLiteFile) else SQLiteFile(db)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.db.migrate(AUTH_MIGRATIONS)

    def create(
        self, role: Role | str, device_id: str | None = None, *, label: str | None = None
    ) -> IssuedToken:
        """Issue a new token.

        Args:
            role: the token's role.
            device_id: required for ``device``, refused for the other roles.
            label: a note for people (who holds it), up to 128 printable characters.

        Raises:
            InvalidInputError: an unknown role, a missing/extra/malformed device id, or a
                malformed label.
        """
        role = _role(role)
        if role is Role.DEVICE:
            if device_id is None:
                raise InvalidInputError("a device token needs a device_id")
            check_device_id(device_id)
        elif device_id is not None:
            raise InvalidInputError(f"a {role.value} token has no device_id, got {device_id!r}")
        if label is not None and (not isinstance(label, str) or not _LABEL.fullmatch(label)):
            raise InvalidInputError(f"label must be 1-128 printable characters, got {label!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = "tok_" + secrets.token_hex(8)
        with self.db.atomic() as conn:
            conn.execute(
                "INSERT INTO api_tokens (token_id, token_sha256, role, device_id, label,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, _digest(token), role.value, device_id, label, self._now()),
            )
        return IssuedToken(token_id, token, role, device_id)

    def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` stands for.

        Raises:
            Unauthorized: the token is missing, malformed, unknown or revoked.
        """
        if token is None or token == "":
            raise Unauthorized("missing token")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise Unauthorized(f"malformed token; expected {TOKEN_PREFIX!r} and 43 characters")
        digest = _digest(token)
        row = self.db.connection.execute(
            "SELECT token_id, token_sha256, role, device_id, revoked_at FROM api_tokens"
            " WHERE token_sha256 = ?",
            (digest,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[1], digest):
            raise Unauthorized("unknown token")
        if row[4] is not None:
            raise Unauthorized(f"token {row[0]} was revoked")
        return Principal(row[0], Role(row[2]), row[3])

    def authenticate_header(self, authorization: str | None) -> Principal:
        """:meth:`authenticate` the token of an ``Authorization: Bearer`` header value."""
        return self.authenticate(bearer_token(authorization))

    def revoke(self, token_id_or_token: str) -> bool:
        """Revoke a token, named by its id or by the token itself.

        Returns:
            True if an active token was revoked now; False if unknown or already revoked.
        """
        if not isinstance(token_id_or_token, str):
            raise InvalidInputError(f"expected a token id or token, got {token_id_or_token!r}")
        key: bytes | str = token_id_or_token
        where = "token_id = ?"
        if token_id_or_token.startswith(TOKEN_PREFIX):
            where, key = "token_sha256 = ?", _digest(token_id_or_token)
        with self.db.atomic() as conn:
            cursor = conn.execute(
                f"UPDATE api_tokens SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                (self._now(), key),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        """Close the database if the store opened it."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        now = self._clock()
        if now.utcoffset() is None:
            raise InvalidInputError(f"clock must return aware datetimes, got {now!r}")
        return now.astimezone(UTC).isoformat(timespec="microseconds")

    def list(self) -> builtins.list[TokenInfo]:
        """Every token, revoked ones included, oldest first; no secrets."""
        rows = self.db.connection.execute(
            "SELECT token_id, role, device_id, label, created_at, revoked_at FROM api_tokens"
            " ORDER BY created_at, token_id"
        )
        return [
            TokenInfo(
                token_id,
                Role(role),
                device_id,
                label,
                datetime.fromisoformat(created),
                None if revoked is None else datetime.fromisoformat(revoked),
            )
            for token_id, role, device_id, label, created, revoked in rows
        ]


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"unknown role {role!r}; valid roles: {valid}") from None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
