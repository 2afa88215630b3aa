"""The server process's settings: one typed object, built once in ``main()`` and passed down.

Sources, highest precedence first: command-line flags, the environment (prefix
``CURATOR_SERVER_``, nested fields joined with ``__``, e.g. ``CURATOR_SERVER_SNOWFLAKE__ACCOUNT``),
a TOML file (``--config`` or ``CURATOR_SERVER_CONFIG``; nested fields under ``[snowflake]``), then
the defaults. :func:`load_settings` takes the environment as a mapping, so nothing below the
process edge reads ``os.environ``. The Snowflake password is a :class:`~pydantic.SecretStr`: its
``repr`` and logs show ``**********``.

See docs/server.md for the table of settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from curator.config import load_layered

__all__ = ["CONFIG_ENV_VAR", "ENV_PREFIX", "ServerSettings", "SnowflakeSettings", "load_settings"]

ENV_PREFIX = "CURATOR_SERVER_"
CONFIG_ENV_VAR = "CURATOR_SERVER_CONFIG"
"""The environment variable naming the TOML file when ``--config`` is not given."""


class SnowflakeSettings(BaseModel):
    """How to reach Snowflake when ``warehouse = "snowflake"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = Field(default=None, description="Snowflake account identifier.")
    user: str | None = Field(default=None, description="Snowflake user name.")
    password: SecretStr | None = Field(
        default=None, description="Snowflake password (never logged)."
    )
    database: str = Field(default="CURATOR", description="Database holding the warehouse tables.")
    schema_: str = Field(
        default="PUBLIC", alias="schema", description="Schema of the warehouse tables."
    )
    warehouse: str | None = Field(
        default=None, description="Snowflake virtual warehouse to run on."
    )
    role: str | None = Field(default=None, description="Snowflake role to assume.")
    host: str | None = Field(
        default=None, description="Override the host (tests: a fakesnow server)."
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Override the port.")
    protocol: Literal["https", "http"] | None = Field(
        default=None, description="Override the protocol."
    )
    login_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a Snowflake login before giving up."
    )
    network_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a Snowflake request may take, retries included (the connector's "
        "own default is unbounded, which would hang the outbox drainer during an outage).",
    )

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect`` (the secret revealed here)."""
        args: dict[str, Any] = {
            k: v
            for k, v in {
                "account": self.account,
                "user": self.user,
                "warehouse": self.warehouse,
                "role": self.role,
                "host": self.host,
                "port": self.port,
                "protocol": self.protocol,
                "login_timeout": self.login_timeout,
                "network_timeout": self.network_timeout,
            }.items()
            if v is not None
        }
        if self.password is not None:
            args["password"] = self.password.get_secret_value()
        return args


class ServerSettings(BaseSettings):
    """Everything the server process is configured by; see docs/server.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default=Path("curator-data"), description="Folder of the server's files."
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(
        default=8000, ge=0, le=65535, description="Port to listen on (0: any free one)."
    )
    max_body_mb: float = Field(default=64.0, gt=0, description="Largest request body, in MiB.")
    max_pixels: int = Field(default=40_000_000, gt=0, description="Largest image, width * height.")
    check_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Worker processes that check uploaded images, so a one-process server "
        "decodes them on other cores; 0 checks them in the request's thread.",
    )
    dedup_threshold: float = Field(
        default=0.95,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity at which a frame is a duplicate.",
    )
    dedup_index: Literal["hnsw", "flat", "auto"] = Field(
        default="hnsw",
        description="Index of a new model version's embeddings: hnsw (approximate, fast at any "
        "size), flat (exact, cost linear in the size) or auto (flat, rebuilt as HNSW above "
        "100k vectors while that version's ingest waits). A saved index keeps its kind.",
    )
    snapshot_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between background dedup snapshots while new frames arrive "
        "(0: off; the snapshot at shutdown is always taken).",
    )
    snapshot_every_frames: int = Field(
        default=100_000,
        ge=0,
        description="Also snapshot the dedup indexes once this many vectors were accepted "
        "since the last snapshot (0: off).",
    )
    warehouse: Literal["sqlite", "snowflake"] = Field(
        default="sqlite",
        description="Where decisions are logged: a local SQLite file or Snowflake.",
    )
    snowflake: SnowflakeSettings = Field(
        default_factory=SnowflakeSettings, description="Snowflake connection."
    )
    blob_url: str | None = Field(
        default=None, description="fsspec URL or folder for image blobs; default <data_dir>/blobs."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="JSON lines or plain text."
    )
    jobs_redis_url: str | None = Field(
        default=None,
        description="Redis URL of the job queue (redis://host:port/db); default: a SQLite "
        "queue file in the data folder.",
    )
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a worker's lease on a job lasts between heartbeats.",
    )
    label_skip_cooldown_s: float = Field(
        default=900.0,
        ge=0,
        le=86400,
        description="Seconds a frame a labeler skipped is kept from that labeler (others may "
        "take it at once); 0 hands it straight back.",
    )
    train_every_labels: int = Field(
        default=100, ge=1, description="Start a fine-tuning job after this many new labels."
    )
    train_epochs: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Passes over a fine-tuning job's labeled frames, "
        "at least (see train_min_samples).",
    )
    train_min_samples: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Training samples a fine-tuning job draws at least: a small labeled set "
        "gets more passes than train_epochs (0: exactly train_epochs).",
    )
    job_runner: str | None = Field(
        default=None,
        description="module:function that runs fine_tune jobs instead of the default "
        "(curator.training); tests point it at a stand-in.",
    )

    @property
    def fine_tune_params(self) -> dict[str, int]:
        """The recipe a new fine-tuning job records in its ``params`` (its runner reads them)."""
        return {"epochs": self.train_epochs, "min_samples": self.train_min_samples}

    @property
    def catalog_path(self) -> Path:
        """The SQLite file shared by the catalog, the tokens and the warehouse outbox."""
        return self.data_dir / "catalog.sqlite"

    @property
    def warehouse_path(self) -> Path:
        """The local warehouse file when ``warehouse = "sqlite"``."""
        return self.data_dir / "warehouse.sqlite"

    @property
    def blob_location(self) -> str:
        """``blob_url``, or the folder ``<data_dir>/blobs``."""
        return self.blob_url if self.blob_url else os.fspath(self.data_dir / "blobs")

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes."""
        return int(self.max_body_mb * 1024 * 1024)


def load_settings(
    cli_overrides: Mapping[str, Any],
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerSettings:
    """Build the settings: ``cli_overrides`` > ``env`` > the TOML file > defaults.

    Args:
        cli_overrides: field values from flags; ``None`` values are ignored (a flag not given).
            Nested fields as a dict, e.g. ``{"snowflake": {"account": "x"}}``.
        config_path: the TOML file; when None, ``CURATOR_SERVER_CONFIG`` in ``env`` names it.
        env: the environment; ``None`` means ``os.environ`` (call that only at the process
            edge).

    Raises:
        InvalidInputError: a bad value, an unknown key, or an unreadable config file; one line
            naming the field.
    """
    return load_layered(
        ServerSettings, cli_overrides, config_path, env, config_env_var=CONFIG_ENV_VAR
    )
