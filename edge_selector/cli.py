"""``edge-selector``: run the selector on a device, or look at its buffer.

Commands::

    edge-selector run --source bikes.mp4 --model model.onnx [--buffer edge.db]
                      [--server URL --token T --device-id cam-01] [--keep-ratio 0.1] ...
    edge-selector status --buffer edge.db [--json]

Settings come from flags, ``CURATOR_EDGE_*`` variables and a TOML file (``--config``); see
docs/edge-selector.md. Exit status: 0 done (or stopped by SIGTERM/SIGINT, after saving its
state); 1 it could not start or went wrong (one line on stderr: an unreadable source, a model
that breaks the contract, a bad setting); 2 bad usage; 3 the server refused the token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from curator.config import SettingFlag, add_setting_flags, flag_overrides
from curator.errors import CuratorError

__all__ = ["build_parser", "main"]

_FLAGS: tuple[SettingFlag, ...] = tuple(
    SettingFlag(flag, (flag.lstrip("-").replace("-", "_"),), text)
    for flag, text in (
        ("--source", "video file, image folder, camera index or rtsp:// / http:// URL"),
        ("--max-frames", "stop after this many frames (default: the whole source)"),
        ("--fps", "replay a file or folder at this frame rate, like a live camera"),
        ("--model", "the ONNX model (docs/model-contract.md)"),
        ("--embedding-output", "a user model's graph output to use as the embedding"),
        ("--logits-output", "a user model's graph output to use as the logits"),
        ("--input-name", "a user model's graph input, if not 'images'"),
        ("--threads", "onnxruntime intra-op threads (default: CPUs - 1; 0: its own choice)"),
        ("--batch-size", "frames per inference call (default 16)"),
        ("--buffer", "the SQLite buffer file (default edge-buffer.db)"),
        ("--max-buffer-mb", "cap on the buffer's files in MiB (default 512)"),
        ("--keep-ratio", "fraction of frames to keep (default 0.1)"),
        ("--max-per-hour", "hard cap on frames kept per hour (default none)"),
        ("--uncertainty", "entropy (default), margin or least_confidence"),
        ("--uncertainty-weight", "strength of uncertainty in the value (default 1)"),
        ("--novelty-weight", "strength of novelty in the value (default 1)"),
        ("--duplicate-similarity", "cosine at which a frame repeats a kept one (0.98)"),
        ("--min-brightness", "black-frame gate, mean luma in [0, 1] (default 0.05)"),
        ("--max-overexposed", "over-exposure gate, blown-out pixel fraction (default 0.5)"),
        ("--min-sharpness", "blur gate, Laplacian variance (default 15; 0: off)"),
        ("--jpeg-quality", "JPEG quality of kept frames (default 85)"),
        ("--max-side", "downscale kept frames to this longer side (default: as decoded)"),
        ("--server", "the server's base URL (default: offline)"),
        ("--token", "the device's bearer token (better: CURATOR_EDGE_TOKEN)"),
        ("--device-id", "this device's id, as its token says"),
        ("--upload-batch-frames", "most frames per upload (default 32)"),
        ("--bandwidth-kbps", "upload cap in kilobytes per second (default none)"),
        ("--heartbeat-interval-s", "seconds between heartbeats (default 60)"),
        ("--model-dir", "where downloaded models are kept (default <buffer>.models/)"),
        ("--model-poll-s", "seconds between checks for a new model (default 300)"),
        ("--drain-timeout-s", "after a finite source, seconds to keep uploading (60)"),
        ("--metrics-port", "serve Prometheus metrics on this port (default off)"),
        ("--metrics-host", "address of the metrics port (default 127.0.0.1)"),
        ("--progress", "auto (default: on a terminal), on or off"),
        ("--log-level", "DEBUG, INFO (default), WARNING or ERROR"),
        ("--log-format", "text (default) or json"),
    )
)
_CONFIG_HELP = "TOML settings file (default: $CURATOR_EDGE_CONFIG); flags and environment win"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``edge-selector`` (every command and option has help)."""
    parser = argparse.ArgumentParser(
        prog="edge-selector",
        description="Keep the informative frames of a camera in a bounded buffer and upload "
        "them when the server is reachable.",
        epilog="Settings also come from CURATOR_EDGE_* variables and a TOML file; see "
        "docs/edge-selector.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="capture, select, buffer and upload",
        description="Run the selector until the source ends or SIGTERM/SIGINT.",
    )
    run.add_argument("--loop", action="store_true", default=None, help="loop a file or folder")
    add_setting_flags(run, _FLAGS, config_help=_CONFIG_HELP)
    status = commands.add_parser(
        "status",
        help="what the buffer holds and what was synced",
        description="Print the buffer's frames, bytes and counters.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_setting_flags(
        status, _FLAGS, only=("--buffer", "--max-buffer-mb"), config_help=_CONFIG_HELP
    )
    return parser


def _run(settings: Any, stream: Any) -> int:
    from curator.logs import configure_logging
    from edge_selector.run import run

    configure_logging(settings.log_level, settings.log_format)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    show = settings.progress == "on" or (settings.progress == "auto" and stream.isatty())
    summary = run(settings, stop, progress=stream if show else None)
    for line in summary.lines():
        print(line, file=stream)
    return 0


def _status(settings: Any, as_json: bool) -> int:
    from edge_selector.buffer import FrameBuffer

    if not Path(settings.buffer).is_file():
        raise CuratorError(f"no buffer file at {str(settings.buffer)!r}")
    with FrameBuffer(settings.buffer, max_bytes=settings.max_buffer_bytes) as buffer:
        status = buffer.status()
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    dropped = ", ".join(f"{k} {v}" for k, v in status["dropped"].items()) or "none"
    print(f"buffer {status['path']}")
    print(f"  frames waiting: {status['frames']} ({status['stored_bytes']:,} bytes of frames)")
    print(f"  files: {status['file_bytes']:,} of {status['max_bytes']:,} bytes allowed")
    print(f"  uploaded: {status['uploaded']}   evicted: {status['evicted']}")
    print(f"  dropped by the buffer: {dropped}   last device_seq: {status['last_device_seq']}")
    print(f"  oldest frame: {status['oldest_captured_at']}  newest: {status['newest_captured_at']}")
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``edge-selector`` with ``argv``; returns the exit status (see the module docstring).

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        env: the environment (default ``os.environ``), read here and nowhere below.
    """
    from edge_selector.settings import load_settings
    from edge_selector.sync_outcomes import SyncAuthError

    args = build_parser().parse_args(argv)
    overrides = flag_overrides(args, _FLAGS)
    if getattr(args, "loop", None):
        overrides["loop"] = True
    try:
        settings = load_settings(overrides, args.config, os.environ if env is None else env)
        if args.command == "status":
            return _status(settings, args.json)
        return _run(settings, sys.stderr)
    except SyncAuthError as exc:
        print(f"edge-selector: error: {_first_line(exc)}", file=sys.stderr)
        return 3
    except (CuratorError, OSError, ValueError, sqlite3.DatabaseError) as exc:
        print(f"edge-selector: error: {_first_line(exc)}", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
