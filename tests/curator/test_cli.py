from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from curator import __version__
from curator.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_has_help_text() -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    assert "demo" in commands
    for name, sub in commands.items():
        assert sub.description, f"command {name} has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_bad_usage_exits_2_with_a_one_line_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "curator.cli", "demo", "--keep-ratio", "lots"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "invalid float value: 'lots'" in out.stderr
    assert "Traceback" not in out.stderr


def test_curator_errors_become_one_line_and_exit_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "curator.cli",
            "demo",
            "--keep-ratio",
            "1.5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("curator: error: keep_ratio")
    assert "Traceback" not in out.stderr
