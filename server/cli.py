"""``curator-server``: run the server and manage its API tokens.

A thin translator over the library: it parses flags, builds one :class:`ServerSettings`
(flags > environment > TOML > defaults) and calls :func:`server.app.create_app` or
:class:`server.auth.TokenStore`. Errors become one line on stderr and exit status 1; bad usage
exits 2 (argparse); never a traceback.

Commands::

    curator-server serve [--config FILE] [--host H] [--port P] [--data-dir D] ...
        (one server per data folder: a second one exits 1 naming the first one's pid)
    curator-server token create --role device --device-id cam-01 [--label TEXT]
    curator-server token revoke TOKEN_ID_OR_TOKEN
    curator-server token list
    curator-server worker [--data-dir D] [--redis-url URL] [--job-lease-s S]
        (runs fine-tuning jobs; several may run at once; SIGTERM stops after the current job)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from curator.config import SettingFlag, add_setting_flags, flag_overrides
from curator.errors import CuratorError
from server.auth import Role, TokenStore
from server.datadir import DataDirLock
from server.errors import ServerError
from server.settings import ServerSettings, load_settings

__all__ = ["build_parser", "main"]

# the value types are checked by the settings, not argparse
_SETTING_FLAGS: tuple[SettingFlag, ...] = tuple(
    SettingFlag(flag, path, text)
    for flag, path, text in (
        ("--data-dir", ("data_dir",), "folder of the server's files (default ./curator-data)"),
        ("--host", ("host",), "address to listen on (default 127.0.0.1)"),
        ("--port", ("port",), "port to listen on (default 8000)"),
        ("--max-body-mb", ("max_body_mb",), "largest request body in MiB (default 64)"),
        ("--max-pixels", ("max_pixels",), "largest image, width*height (default 40000000)"),
        (
            "--check-workers",
            ("check_workers",),
            "processes that check uploaded images (default 0: in the request's thread)",
        ),
        ("--dedup-threshold", ("dedup_threshold",), "cosine similarity of a duplicate (0.95)"),
        ("--dedup-index", ("dedup_index",), "hnsw (default), flat (exact) or auto"),
        (
            "--snapshot-interval-s",
            ("snapshot_interval_s",),
            "seconds between background dedup snapshots (default 300; 0: off)",
        ),
        (
            "--snapshot-every-frames",
            ("snapshot_every_frames",),
            "also snapshot after this many newly accepted vectors (default 100000; 0: off)",
        ),
        (
            "--warehouse",
            ("warehouse",),
            "where decisions are logged: sqlite (default) or snowflake",
        ),
        ("--blob-url", ("blob_url",), "fsspec URL or folder for images (default <data-dir>/blobs)"),
        ("--redis-url", ("jobs_redis_url",), "Redis URL of the job queue (default: SQLite)"),
        ("--job-lease-s", ("job_lease_s",), "seconds of a worker's lease on a job (default 60)"),
        ("--log-level", ("log_level",), "DEBUG, INFO (default), WARNING or ERROR"),
        ("--log-format", ("log_format",), "json (default) or text"),
        ("--snowflake-account", ("snowflake", "account"), "Snowflake account identifier"),
        ("--snowflake-user", ("snowflake", "user"), "Snowflake user"),
        ("--snowflake-database", ("snowflake", "database"), "Snowflake database (default CURATOR)"),
        ("--snowflake-schema", ("snowflake", "schema"), "Snowflake schema (default PUBLIC)"),
        ("--snowflake-warehouse", ("snowflake", "warehouse"), "Snowflake virtual warehouse"),
        ("--snowflake-role", ("snowflake", "role"), "Snowflake role"),
        ("--snowflake-host", ("snowflake", "host"), "Snowflake host override (tests)"),
        ("--snowflake-port", ("snowflake", "port"), "Snowflake port override (tests)"),
        ("--snowflake-protocol", ("snowflake", "protocol"), "https (default) or http (tests)"),
        (
            "--snowflake-login-timeout",
            ("snowflake", "login_timeout"),
            "seconds per login (default 10)",
        ),
        (
            "--snowflake-network-timeout",
            ("snowflake", "network_timeout"),
            "seconds per request, retries included (default 30)",
        ),
    )
)
_STORE_FLAGS = ("--data-dir",)
_WORKER_FLAGS = (
    "--data-dir", "--redis-url", "--job-lease-s", "--blob-url", "--log-level", "--log-format",
)  # fmt: skip


def _add_setting_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None) -> None:
    add_setting_flags(
        parser,
        _SETTING_FLAGS,
        only=only,
        config_help="TOML settings file (default: $CURATOR_SERVER_CONFIG); flags and environment "
        "win",
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return flag_overrides(args, _SETTING_FLAGS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``curator-server`` (every command and option has help)."""
    parser = argparse.ArgumentParser(
        prog="curator-server",
        description="The curator cloud server: ingest, fleet-wide dedup, catalog, warehouse log.",
        epilog="Settings also come from CURATOR_SERVER_* variables and a TOML file; "
        "see docs/server.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the HTTP server", description="Run the HTTP server with uvicorn."
    )
    _add_setting_flags(serve, None)
    serve.set_defaults(run=_serve)

    token = commands.add_parser(
        "token", help="manage API tokens", description="Create, revoke and list API tokens."
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = token_commands.add_parser(
        "create",
        help="issue a token (printed once on stdout)",
        description="Issue a token. The token is printed once on stdout; its id on stderr.",
    )
    create.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="what the token may do"
    )
    create.add_argument("--device-id", help="the device a device token uploads for")
    create.add_argument("--label", help="a note for people: who holds the token")
    _add_setting_flags(create, _STORE_FLAGS)
    create.set_defaults(run=_token_create)

    revoke = token_commands.add_parser(
        "revoke", help="revoke a token", description="Revoke a token by its id or the token."
    )
    revoke.add_argument("token", metavar="TOKEN_ID_OR_TOKEN", help="a token id or the token")
    _add_setting_flags(revoke, _STORE_FLAGS)
    revoke.set_defaults(run=_token_revoke)

    listing = token_commands.add_parser(
        "list", help="list tokens (no secrets)", description="List every token, without secrets."
    )
    _add_setting_flags(listing, _STORE_FLAGS)
    listing.set_defaults(run=_token_list)

    worker = commands.add_parser(
        "worker",
        help="run fine-tuning jobs",
        description="Run jobs from the job queue (SQLite in the data folder, or Redis) in this "
        "process, and re-dispatch jobs whose worker died. SIGTERM stops it after the current "
        "job; a second SIGTERM stops it at once (the job is re-run elsewhere). See docs/jobs.md.",
    )
    _add_setting_flags(worker, _WORKER_FLAGS)
    worker.set_defaults(run=_worker)
    return parser


def _serve(settings: ServerSettings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it under the previous handler:
    # make that handler a clean exit, so a stop by the supervisor exits 0, not -15.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Lock the data folder here, not in the app's startup: a second server on the folder then
    # fails with one line (DataDirInUse) instead of uvicorn's startup traceback.
    with DataDirLock.acquire(settings.data_dir) as lock:
        uvicorn.run(
            create_app(settings, data_dir_lock=lock),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _worker(settings: ServerSettings, args: argparse.Namespace) -> int:
    from server.jobs.worker import open_worker
    from server.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    with open_worker(settings) as worker:

        def stop(signum: int, frame: object) -> None:
            if worker.stop_event.is_set():
                raise SystemExit(0)
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        worker.run()
    return 0


def _tokens(settings: ServerSettings) -> TokenStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return TokenStore(settings.catalog_path)


def _token_create(settings: ServerSettings, args: argparse.Namespace) -> int:
    with _tokens(settings) as store:
        issued = store.create(args.role, args.device_id, label=args.label)
    print(issued.token, flush=True)
    print(f"token id: {issued.token_id}", file=sys.stderr)
    return 0


def _token_revoke(settings: ServerSettings, args: argparse.Namespace) -> int:
    with _tokens(settings) as store:
        revoked = store.revoke(args.token)
    shown = args.token if not args.token.startswith("cur_") else "the given token"
    if not revoked:
        print(f"curator-server: {shown} is unknown or already revoked", file=sys.stderr)
        return 1
    print(f"revoked {shown}", file=sys.stderr)
    return 0


def _token_list(settings: ServerSettings, args: argparse.Namespace) -> int:
    with _tokens(settings) as store:
        tokens = store.list()
    print("token_id\trole\tdevice_id\tlabel\tcreated_at\trevoked_at")
    for t in tokens:
        revoked = "" if t.revoked_at is None else t.revoked_at.isoformat()
        fields = (t.token_id, t.role.value, t.device_id or "", t.label or "")
        print("\t".join((*fields, t.created_at.isoformat(), revoked)))
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``curator-server`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Args:
        argv: the arguments after the program name.
        env: the environment (default ``os.environ``), read here and nowhere below.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[ServerSettings, argparse.Namespace], int] = args.run
    try:
        settings = load_settings(
            flag_overrides(args, _SETTING_FLAGS), args.config, os.environ if env is None else env
        )
        return run(settings, args)
    except (CuratorError, ServerError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"curator-server: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
