"""Tokens on a real SQLite file: issue, authenticate, revoke, roles, and no secret at rest."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from curator.errors import InvalidInputError
from server.auth import (
    IssuedToken,
    Principal,
    Role,
    TokenStore,
    bearer_token,
    require,
)
from server.catalog import Catalog
from server.db import applied_migrations
from server.errors import Forbidden, Unauthorized

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[TokenStore]:
    with TokenStore(tmp_path / "auth.db", clock=Clock()) as store:
        yield store


def test_a_created_token_authenticates_as_its_principal(tokens: TokenStore) -> None:
    issued = tokens.create(Role.DEVICE, "cam-1", label="rooftop camera")
    assert re.fullmatch(r"cur_[A-Za-z0-9_-]{43}", issued.token)
    assert issued.token not in repr(issued)
    assert tokens.authenticate(issued.token) == Principal(issued.token_id, Role.DEVICE, "cam-1")
    labeler = tokens.create("labeler")
    assert tokens.authenticate(labeler.token) == Principal(labeler.token_id, Role.LABELER, None)
    assert tokens.authenticate_header(f"Bearer {labeler.token}").role is Role.LABELER
    assert issued.token != labeler.token and issued.token_id != labeler.token_id


def test_roles_and_device_ids_are_checked_at_creation(tokens: TokenStore) -> None:
    with pytest.raises(InvalidInputError, match="needs a device_id"):
        tokens.create(Role.DEVICE)
    with pytest.raises(InvalidInputError, match="has no device_id"):
        tokens.create(Role.ADMIN, "cam-1")
    with pytest.raises(InvalidInputError, match="device_id"):
        tokens.create(Role.DEVICE, "cam/../1")
    with pytest.raises(InvalidInputError, match="valid roles: device, labeler, admin"):
        tokens.create("root")
    with pytest.raises(InvalidInputError, match="label"):
        tokens.create(Role.ADMIN, label="bad\nlabel")
    assert tokens.list() == []


def test_revoked_tokens_stop_working_and_others_go_on(tokens: TokenStore) -> None:
    a, b, c = (tokens.create(Role.DEVICE, f"cam-{i}") for i in range(3))
    assert tokens.revoke(a.token_id) is True
    assert tokens.revoke(b.token) is True
    assert tokens.revoke(a.token_id) is False and tokens.revoke(b.token) is False
    assert tokens.revoke("tok_unknown") is False
    for gone in (a, b):
        with pytest.raises(Unauthorized, match="revoked") as err:
            tokens.authenticate(gone.token)
        assert gone.token not in str(err.value)
    assert tokens.authenticate(c.token).device_id == "cam-2"
    with pytest.raises(InvalidInputError):
        tokens.revoke(None)  # type: ignore[arg-type]


def test_list_shows_tokens_without_secrets(tokens: TokenStore) -> None:
    a = tokens.create(Role.ADMIN, label="ops")
    b = tokens.create(Role.DEVICE, "cam-1")
    tokens.revoke(b.token_id)
    listed = tokens.list()
    assert [(t.token_id, t.role, t.device_id, t.label) for t in listed] == [
        (a.token_id, Role.ADMIN, None, "ops"),
        (b.token_id, Role.DEVICE, "cam-1", None),
    ]
    assert listed[0].created_at == T0 + timedelta(seconds=1) and listed[0].revoked_at is None
    assert listed[1].revoked_at == T0 + timedelta(seconds=3)
    assert all(a.token not in repr(t) and b.token not in repr(t) for t in listed)


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "cur_",
        "cur_short",
        "xyz_" + "a" * 43,
        "cur_" + "a" * 42,
        "cur_" + "a" * 44,
        "cur_" + "a" * 42 + "!",
        "cur_" + "a" * 42 + "\n",
        "cur_" + "é" * 43,
        12345,
    ],
)
def test_missing_and_malformed_tokens_are_unauthorized(tokens: TokenStore, token: object) -> None:
    tokens.create(Role.ADMIN)
    with pytest.raises(Unauthorized, match=r"missing|malformed"):
        tokens.authenticate(token)  # type: ignore[arg-type]


def test_an_unknown_well_formed_token_is_unauthorized(tokens: TokenStore) -> None:
    issued = tokens.create(Role.ADMIN)
    forged = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    with pytest.raises(Unauthorized, match="unknown token") as err:
        tokens.authenticate(forged)
    assert forged not in str(err.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer cur_x", "cur_x"),
        ("bearer cur_x", "cur_x"),
        ("BEARER   cur_x  ", "cur_x"),
    ],
)
def test_bearer_headers_are_read(header: str, expected: str) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("cur_x", "Bearer scheme"),
        ("Basic dXNlcjpwYXNz", "Bearer scheme"),
        ("Token cur_x", "Bearer scheme"),
        ("Bearer", "malformed"),
        ("Bearer    ", "malformed"),
        ("Bearer cur_x cur_y", "malformed"),
        ("Bearer cur_x\tcur_y", "malformed"),
    ],
)
def test_malformed_authorization_values_are_unauthorized(
    tokens: TokenStore, header: str | None, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message):
        bearer_token(header)
    with pytest.raises(Unauthorized):
        tokens.authenticate_header(header)


def test_require_checks_role_and_device() -> None:
    admin = Principal("tok_a", Role.ADMIN, None)
    labeler = Principal("tok_l", Role.LABELER, None)
    cam1 = Principal("tok_d", Role.DEVICE, "cam-1")
    for role in Role:
        require(admin, role, device_id="cam-9")
    require(labeler, Role.LABELER)
    require(cam1, Role.DEVICE)
    require(cam1, "device", device_id="cam-1")
    with pytest.raises(Forbidden, match="has role 'labeler'; this needs 'admin'"):
        require(labeler, Role.ADMIN)
    with pytest.raises(Forbidden, match="has role 'device'"):
        require(cam1, Role.LABELER)
    with pytest.raises(Forbidden, match="belongs to device 'cam-1', not 'cam-2'"):
        require(cam1, Role.DEVICE, device_id="cam-2")
    with pytest.raises(Forbidden):
        require(labeler, Role.DEVICE, device_id="cam-1")
    with pytest.raises(InvalidInputError, match="valid roles"):
        require(admin, "superuser")


def test_tokens_are_never_stored_in_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    store = TokenStore(path)
    issued: list[IssuedToken] = [store.create(Role.DEVICE, f"cam-{i}") for i in range(5)]
    issued.append(store.create(Role.ADMIN, label="ops"))
    store.revoke(issued[0].token_id)
    files = sorted(p for p in tmp_path.iterdir() if p.name.startswith("auth.db"))
    assert Path(f"{path}-wal") in files  # the WAL holds the newest pages: scan it too
    blob = b"".join(p.read_bytes() for p in files)
    for t in issued:
        secret = t.token.encode()
        assert secret not in blob and secret[4:] not in blob and secret[4:24] not in blob
        assert hashlib.sha256(secret).digest() in blob  # the scan does see the table
        assert t.token_id.encode() in blob
    store.close()


def test_tokens_can_share_the_catalog_file(tmp_path: Path) -> None:
    with Catalog(tmp_path / "server.db") as catalog:
        store = TokenStore(catalog.db)
        issued = store.create(Role.DEVICE, "cam-1")
        assert store.authenticate(issued.token).device_id == "cam-1"
        assert {"catalog.0001_create", "auth.0001_api_tokens"} <= set(
            applied_migrations(catalog.db)
        )
        store.close()  # a shared file stays open
        assert catalog.max_seq() == 0
    with TokenStore(tmp_path / "server.db") as reopened:
        assert reopened.authenticate(issued.token).token_id == issued.token_id


def test_a_naive_clock_is_refused(tmp_path: Path) -> None:
    with (
        TokenStore(tmp_path / "a.db", clock=lambda: datetime(2024, 1, 1)) as store,
        pytest.raises(InvalidInputError, match="aware"),
    ):
        store.create(Role.ADMIN)
