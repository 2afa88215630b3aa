from __future__ import annotations

import numpy as np
import pytest

from curator import quality
from curator.errors import InvalidInputError


def _checkerboard(size: int = 64, cell: int = 4) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (((x // cell + y // cell) % 2) * 255).astype(np.uint8)


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    f = img.astype(np.float64)
    out = np.zeros_like(f)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out += np.roll(np.roll(f, dy, axis=0), dx, axis=1)
    return (out / (2 * radius + 1) ** 2).round().astype(np.uint8)


def test_blur_falls_as_the_image_is_blurred() -> None:
    sharp = _checkerboard()
    scores = [quality.blur(sharp)] + [quality.blur(_box_blur(sharp, r)) for r in (1, 2, 3)]
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < scores[0] / 10


def test_flat_frame_has_zero_blur_and_exact_brightness() -> None:
    flat = np.full((10, 12, 3), 51, np.uint8)
    q = quality.measure(flat)
    assert q.blur == 0.0
    assert q.brightness == pytest.approx(51 / 255, abs=1e-6)
    assert q.overexposed == 0.0 and q.underexposed == 0.0


def test_laplacian_variance_by_hand() -> None:
    img = np.zeros((3, 4), np.uint8)
    img[1, 1] = 10  # Laplacian at the two interior pixels: -40 and 10
    assert quality.blur(img) == pytest.approx(np.var([-40.0, 10.0]))


def test_exposure_fractions() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    img[:3] = 255  # 30% white
    img[3:5] = 128
    over, under = quality.exposure(img)
    assert over == pytest.approx(0.3)
    assert under == pytest.approx(0.5)
    assert quality.measure(img).as_dict() == {
        "blur": quality.blur(img),
        "brightness": pytest.approx(quality.brightness(img)),
        "overexposed": pytest.approx(0.3),
        "underexposed": pytest.approx(0.5),
    }


def test_rgb_uses_luma_weights() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert quality.brightness(red) == pytest.approx(0.299, abs=1e-6)
    assert quality.brightness(red[..., :1]) == pytest.approx(1.0)  # (H, W, 1) is grey


def test_tiny_frames_have_zero_blur() -> None:
    assert quality.blur(np.zeros((2, 50), np.uint8)) == 0.0


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((4, 4), np.float32), "uint8"),
        ([[0, 1], [2, 3]], "uint8"),
        (np.zeros((4, 4, 4), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((0, 4), np.uint8), "empty"),
    ],
)
def test_malformed_frames_are_refused(frame: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        quality.measure(frame)


def test_measure_luma_of_the_grey_frame_equals_measure() -> None:
    frame = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert quality.measure_luma(quality.luma(frame)) == quality.measure(frame)
