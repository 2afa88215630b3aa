"""``python -m server``: help everywhere, the token round trip, one-line errors and exit codes."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.auth import Role, TokenStore
from server.cli import build_parser, main
from server.errors import Unauthorized

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}".strip())


def test_every_command_and_option_has_help() -> None:
    parser = build_parser()
    seen = set()
    for path, action in walk(parser):
        seen.add(path)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"command {path} {choice.dest} has no help"
        else:
            assert action.help, f"option {action.option_strings or action.dest} of {path!r}"
    assert {"", "serve", "token", "token create", "token revoke", "token list"} <= seen


def test_python_m_server_help() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "serve" in r.stdout and "token" in r.stdout
    r = run("serve", "--help")
    assert r.returncode == 0 and "--snowflake-account" in r.stdout and "--config" in r.stdout


def test_token_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["token", "create", "--role", "device", "--device-id", "cam-01",
                 "--label", "north gate", "--data-dir", data], env={}) == 0  # fmt: skip
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n" and re.fullmatch(r"cur_[A-Za-z0-9_-]{43}", token)
    token_id = re.fullmatch(r"token id: (tok_[0-9a-f]{16})\n", err)
    assert token_id is not None
    with TokenStore(Path(data) / "catalog.sqlite") as store:
        principal = store.authenticate(token)
    assert (principal.role, principal.device_id) == (Role.DEVICE, "cam-01")
    assert principal.token_id == token_id.group(1)

    assert main(["token", "list", "--data-dir", data], env={}) == 0
    listing, _ = capsys.readouterr()
    assert token_id.group(1) in listing and "north gate" in listing and token not in listing

    assert main(["token", "revoke", token_id.group(1), "--data-dir", data], env={}) == 0
    assert main(["token", "revoke", token_id.group(1), "--data-dir", data], env={}) == 1
    _, err = capsys.readouterr()
    assert "already revoked" in err
    with TokenStore(Path(data) / "catalog.sqlite") as store, pytest.raises(Unauthorized):
        store.authenticate(token)


def test_revoke_by_token_never_echoes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert main(["token", "create", "--role", "admin", "--data-dir", data], env={}) == 0
    token = capsys.readouterr().out.strip()
    assert main(["token", "revoke", token, "--data-dir", data], env={}) == 0
    out, err = capsys.readouterr()
    assert token not in out + err


def test_data_dir_from_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"CURATOR_SERVER_DATA_DIR": str(tmp_path / "env-data")}
    assert main(["token", "create", "--role", "labeler"], env=env) == 0
    assert (tmp_path / "env-data" / "catalog.sqlite").is_file()


def test_bad_usage_and_bad_values(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = run("token", "create", "--role", "boss", "--data-dir", data)
    assert r.returncode == 2 and "invalid choice: 'boss'" in r.stderr and r.stdout == ""
    r = run("token", "create", "--role", "device", "--data-dir", data)  # no device id
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "curator-server: error: a device token needs a device_id\n"
    r = run("serve", "--port", "eighty", "--data-dir", data)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "'port'" in r.stderr
    r = run("bogus-command")
    assert r.returncode == 2
    for result in (r,):
        assert "Traceback" not in result.stderr
