"""The edge selector's settings: one typed object, built once in ``main()`` and passed down.

Sources, highest precedence first: flags, the environment (prefix ``CURATOR_EDGE_``, e.g.
``CURATOR_EDGE_TOKEN``), a TOML file (``--config`` or ``CURATOR_EDGE_CONFIG``), then the
defaults (:func:`curator.config.load_layered`). The token is a :class:`~pydantic.SecretStr`:
logs and ``repr`` show ``**********``. The table of settings is in docs/edge-selector.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from curator.config import load_layered
from edge_selector.scoring import QualityGates, ValueModel
from edge_selector.selector import SelectionPolicy

__all__ = ["CONFIG_ENV_VAR", "ENV_PREFIX", "EdgeSettings", "load_settings"]

ENV_PREFIX = "CURATOR_EDGE_"
CONFIG_ENV_VAR = "CURATOR_EDGE_CONFIG"

_ID = r"^[A-Za-z0-9._-]{1,64}$"


class EdgeSettings(BaseSettings):
    """Everything ``edge-selector run`` needs; see docs/edge-selector.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_nested_delimiter="__"
    )

    source: str | None = Field(
        default=None,
        description="Video file, image folder, camera index (0, 1, ...) or rtsp:// / http:// URL.",
    )
    loop: bool = Field(default=False, description="Start a file or folder over at its end.")
    fps: float | None = Field(
        default=None,
        gt=0,
        description="Read a file or folder at this many frames per second, as a live camera "
        "would deliver it (default: as fast as it decodes).",
    )
    max_frames: int | None = Field(
        default=None, ge=0, description="Stop after this many frames (default: the whole source)."
    )
    model: Path | None = Field(default=None, description="The ONNX model file.")
    embedding_output: str | None = Field(
        default=None, description="Graph output to use as the embedding (a user's own model)."
    )
    logits_output: str | None = Field(
        default=None, description="Graph output to use as the logits (a user's own model)."
    )
    input_name: str | None = Field(default=None, description="Graph input, if not 'images'.")
    threads: int | None = Field(
        default=None,
        ge=0,
        description="onnxruntime intra-op threads (default: one fewer than the CPUs, at least "
        "one, so decoding and preparing frames keep a core; 0: onnxruntime's own choice).",
    )
    batch_size: int = Field(default=16, ge=1, le=256, description="Frames per inference call.")
    buffer: Path = Field(default=Path("edge-buffer.db"), description="The SQLite buffer file.")
    max_buffer_mb: float = Field(
        default=512.0, gt=0, description="Cap on the buffer's files on disk, in MiB."
    )
    keep_ratio: float = Field(default=0.1, gt=0, le=1, description="Fraction of frames kept.")
    max_per_hour: int | None = Field(default=None, ge=1, description="Hard cap on frames kept.")
    window: int = Field(default=1000, ge=1, description="Frames in the budget's window.")
    uncertainty: str = Field(default="entropy", description="entropy, margin, least_confidence.")
    uncertainty_weight: float = Field(default=1.0, ge=0, description="Strength of uncertainty.")
    novelty_weight: float = Field(default=1.0, ge=0, description="Strength of novelty.")
    duplicate_similarity: float = Field(
        default=0.98, ge=0, description="Cosine at which a frame repeats a recently kept one."
    )
    novelty_capacity: int = Field(
        default=50_000, ge=1, description="Recently kept embeddings novelty is measured against."
    )
    min_brightness: float = Field(default=0.05, ge=0, le=1, description="Black-frame gate.")
    max_overexposed: float = Field(default=0.5, ge=0, le=1, description="Over-exposure gate.")
    min_sharpness: float = Field(default=15.0, ge=0, description="Blur gate (0: off).")
    jpeg_quality: int = Field(default=85, ge=1, le=95, description="JPEG quality of kept frames.")
    max_side: int | None = Field(default=None, ge=16, description="Downscale kept frames to this.")
    server: str | None = Field(default=None, description="The server's base URL; none: offline.")
    token: SecretStr | None = Field(default=None, description="The device's bearer token.")
    device_id: str | None = Field(default=None, pattern=_ID, description="This device's id.")
    upload_batch_frames: int = Field(default=32, ge=1, le=1000, description="Frames per upload.")
    bandwidth_kbps: float | None = Field(
        default=None, gt=0, description="Upload bandwidth cap in kilobytes per second."
    )
    heartbeat_interval_s: float = Field(default=60.0, gt=0, description="Seconds per heartbeat.")
    model_dir: Path | None = Field(
        default=None,
        description="Where downloaded models are kept (default: next to the buffer, "
        "<buffer>.models/).",
    )
    model_poll_s: float = Field(
        default=300.0, gt=0, description="Seconds between checks for a new model (with --server)."
    )
    drain_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="After a finite source ends, how long to keep uploading the backlog.",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus metrics on this port."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics port.")
    progress: Literal["auto", "on", "off"] = Field(
        default="auto", description="Progress bar on stderr (auto: when it is a terminal)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    log_format: Literal["json", "text"] = Field(default="text")

    @model_validator(mode="after")
    def _server_needs_identity(self) -> EdgeSettings:
        if self.server is not None and (self.token is None or self.device_id is None):
            raise ValueError("--server needs --token and --device-id")
        return self

    def inference_threads(self) -> int | None:
        """The intra-op threads to give onnxruntime (None: its own choice)."""
        if self.threads is None:
            return max(1, (os.cpu_count() or 1) - 1)
        return self.threads or None

    @property
    def models_folder(self) -> Path:
        """``model_dir``, or ``<buffer>.models`` next to the buffer file."""
        if self.model_dir is not None:
            return self.model_dir
        return self.buffer.with_name(self.buffer.name + ".models")

    @property
    def max_buffer_bytes(self) -> int:
        return int(self.max_buffer_mb * 1024 * 1024)

    def policy(self) -> SelectionPolicy:
        """The selection policy these settings describe."""
        return SelectionPolicy(
            keep_ratio=self.keep_ratio,
            max_per_hour=self.max_per_hour,
            window=self.window,
            gates=QualityGates(self.min_brightness, self.max_overexposed, self.min_sharpness),
            value=ValueModel(
                self.uncertainty,
                self.uncertainty_weight,
                self.novelty_weight,
                self.duplicate_similarity,
            ),
            novelty_capacity=self.novelty_capacity,
            jpeg_quality=self.jpeg_quality,
            max_side=self.max_side,
        )

    def output_names(self) -> dict[str, str] | None:
        """The model output mapping for a user's own model, or None for the contract names."""
        if self.embedding_output is None:
            return None
        names = {"embedding": self.embedding_output}
        if self.logits_output is not None:
            names["logits"] = self.logits_output
        return names


def load_settings(
    cli_overrides: Mapping[str, Any],
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> EdgeSettings:
    """``cli_overrides`` > ``env`` > the TOML file > defaults.

    Raises:
        InvalidInputError: a bad value, an unknown key, or an unreadable config file; one line.
    """
    return load_layered(
        EdgeSettings, cli_overrides, config_path, env, config_env_var=CONFIG_ENV_VAR
    )
