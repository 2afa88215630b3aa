"""What the server says about a model devices may run: :class:`ModelInfo`.

``GET /v1/models/latest`` answers the promoted model as a :class:`ModelInfo` (with an ``ETag``
of its sha256, so a device polling with ``If-None-Match`` gets ``304 Not Modified`` while
nothing changed); the file itself comes from ``download_path``. A device verifies the bytes
against ``sha256`` and the model contract before it swaps models.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from curator.wire.records import _no_timestamps, _Text, _to_utc

__all__ = ["ModelInfo"]

_Time = Annotated[AwareDatetime, BeforeValidator(_no_timestamps), AfterValidator(_to_utc)]
_Sha256 = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{64}$")]


class ModelInfo(BaseModel):
    """A registered model version, as devices and operators see it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model_version: _Text = Field(description="The version name (curator.model_version).")
    sha256: _Sha256 = Field(description="sha256 of the ONNX file, 64 lowercase hex digits.")
    size_bytes: int = Field(ge=1, description="Size of the ONNX file in bytes.")
    created_at: _Time = Field(description="When the version was registered (UTC).")
    parent_version: _Text | None = Field(
        default=None, description="The version it was fine-tuned from; null for a first model."
    )
    snapshot_key: str | None = Field(
        default=None, max_length=200, description="The dataset snapshot it was trained on."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Held-out evaluation metrics (e.g. accuracy)."
    )
    promoted: bool = Field(description="Whether devices are offered this version.")
    download_path: str = Field(
        description="Path on the server of the ONNX file, e.g. /v1/models/<version>/file."
    )
