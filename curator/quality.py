"""Frame quality measures on uint8 images: blur and exposure.

Pure numpy. A frame is ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8``. Measures:

- ``blur``: variance of the 4-neighbour Laplacian of the grey image (Pech-Pacheco et al. 2000);
  low means blurred or flat. In grey levels squared, so thresholds depend on resolution and scene.
- ``brightness``: mean luma in ``[0, 1]`` (ITU-R BT.601 weights).
- ``overexposed``: fraction of pixels with luma ``>= 250``.
- ``underexposed``: fraction of pixels with luma ``<= 5``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.errors import InvalidInputError

__all__ = [
    "FrameQuality",
    "blur",
    "brightness",
    "exposure",
    "luma",
    "measure",
    "measure_luma",
]

OVEREXPOSED_LEVEL = 250
UNDEREXPOSED_LEVEL = 5
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class FrameQuality:
    """Quality measures of one frame; see the module docstring for each field."""

    blur: float
    brightness: float
    overexposed: float
    underexposed: float

    def as_dict(self) -> dict[str, float]:
        """The measures by name, as recorded with a frame."""
        return asdict(self)


def luma(frame: Any) -> npt.NDArray[np.float32]:
    """Grey levels ``(H, W)`` float32 in ``[0, 255]`` of a uint8 grey or RGB frame.

    Raises:
        InvalidInputError: not uint8, not ``(H, W)`` / ``(H, W, 1)`` / ``(H, W, 3)``, or empty.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise InvalidInputError(f"frame must be a uint8 numpy array, got {dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    grey: npt.NDArray[np.float32]
    if frame.ndim == 2:
        grey = frame.astype(np.float32)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        grey = np.asarray(frame.astype(np.float32) @ _BT601, dtype=np.float32)
    else:
        raise InvalidInputError(f"frame must be (H, W) or (H, W, 3), got shape {frame.shape}")
    if grey.size == 0:
        raise InvalidInputError(f"frame is empty (shape {frame.shape})")
    return grey


def blur(frame: Any) -> float:
    """Variance of the Laplacian of the grey frame; 0.0 for frames smaller than 3x3."""
    return _laplacian_variance(luma(frame))


def _laplacian_variance(grey: npt.NDArray[np.float32]) -> float:
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(lap.var(dtype=np.float64))


def brightness(frame: Any) -> float:
    """Mean luma in ``[0, 1]``."""
    return float(luma(frame).mean(dtype=np.float64) / 255.0)


def exposure(frame: Any) -> tuple[float, float]:
    """``(overexposed, underexposed)`` pixel fractions in ``[0, 1]``."""
    return _exposure(luma(frame))


def _exposure(grey: npt.NDArray[np.float32]) -> tuple[float, float]:
    return (
        float((grey >= OVEREXPOSED_LEVEL).mean()),
        float((grey <= UNDEREXPOSED_LEVEL).mean()),
    )


def measure(frame: Any) -> FrameQuality:
    """All quality measures of one frame, converting it to grey once.

    Args:
        frame: ``(H, W)`` or ``(H, W, 3)`` uint8.

    Returns:
        The frame's :class:`FrameQuality`.

    Raises:
        InvalidInputError: malformed frame.
    """
    return measure_luma(luma(frame))


def measure_luma(grey: npt.NDArray[np.float32]) -> FrameQuality:
    """:func:`measure` of a frame already converted to grey levels (e.g. by :func:`luma`).

    Args:
        grey: ``(H, W)`` float32 grey levels in ``[0, 255]``, trusted as given (a caller that
            has float pixels, such as a model's resized input, skips a round trip to uint8).

    Returns:
        The frame's :class:`FrameQuality`.
    """
    over, under = _exposure(grey)
    return FrameQuality(
        blur=_laplacian_variance(grey),
        brightness=float(grey.mean(dtype=np.float64) / 255.0),
        overexposed=over,
        underexposed=under,
    )
