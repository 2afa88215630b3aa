"""encode_image with real Pillow: decodes to the declared size; downscale, quality, bad input."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from curator.errors import InvalidInputError, MissingDependencyError
from edge_selector.buffer import FrameBuffer
from edge_selector.buffer_frames import KeptFrame
from edge_selector.encode import EncodedImage, encode_image

MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def textured(
    height: int, width: int, channels: int | None = 3, seed: int = 0, noise: float = 20.0
) -> npt.NDArray[np.uint8]:
    """A smooth pattern plus noise: JPEG has detail to spend its quality on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 60 * np.sin(x / 5) + 40 * np.cos(y / 7)
    shape = (height, width) if channels is None else (height, width, channels)
    if channels is not None:
        base = base[..., None]
    out: npt.NDArray[np.uint8] = np.clip(base + rng.normal(0, noise, shape), 0, 255).astype(
        np.uint8
    )
    return out


def decode(encoded: EncodedImage) -> Image.Image:
    image = Image.open(io.BytesIO(encoded.data))
    image.load()
    return image


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
@pytest.mark.parametrize(("channels", "mode"), [(None, "L"), (3, "RGB")])
def test_output_decodes_to_the_declared_size_format_and_mode(
    image_format: str, channels: int | None, mode: str
) -> None:
    pixels = textured(37, 53, channels, noise=4.0)
    out = encode_image(pixels, image_format=image_format)  # type: ignore[arg-type]
    assert out.image_format == image_format and out.data.startswith(MAGIC[image_format])
    image = decode(out)
    assert image.format == image_format.upper()
    assert (image.width, image.height) == (out.width, out.height) == (53, 37)
    assert image.mode == mode
    back = np.asarray(image).astype(np.int16)
    if image_format == "png":  # lossless
        assert np.array_equal(back, pixels)
    else:  # lossy, but the picture is still the same picture
        assert back.shape == pixels.shape
        error = np.abs(back - pixels).mean()
        assert error < 6 and error < np.abs(back - pixels[::-1, ::-1]).mean() / 5


def test_non_contiguous_input_is_encoded_as_its_values() -> None:
    pixels = textured(20, 40)[:, ::2]  # a strided view
    out = encode_image(pixels, image_format="png")
    assert np.array_equal(np.asarray(decode(out)), pixels)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    max_side=st.integers(1, 400),
    channels=st.sampled_from([None, 3]),
)
def test_downscale_keeps_the_aspect_ratio_and_never_upscales(
    height: int, width: int, max_side: int, channels: int | None
) -> None:
    pixels = np.full((height, width) if channels is None else (height, width, 3), 90, np.uint8)
    out = encode_image(pixels, image_format="png", max_side=max_side)
    image = decode(out)
    assert (image.width, image.height) == (out.width, out.height)
    longest = max(height, width)
    if longest <= max_side:  # never upscaled, never resampled
        assert (out.width, out.height) == (width, height)
        assert np.array_equal(np.asarray(image), pixels)
        return
    scale = max_side / longest
    assert max(out.width, out.height) == max_side
    # each side is the exact scaled side, rounded (and at least one pixel)
    assert abs(out.width - max(1, width * scale)) <= 0.5 + 1e-9
    assert abs(out.height - max(1, height * scale)) <= 0.5 + 1e-9
    assert np.all(np.asarray(image) == 90)  # resampling a flat image keeps its value


def test_downscale_examples_by_hand() -> None:
    vga = encode_image(textured(480, 640), max_side=320)
    assert (vga.width, vga.height) == (320, 240) and decode(vga).size == (320, 240)
    tall = encode_image(textured(1000, 10, None), max_side=100)
    assert (tall.width, tall.height) == (1, 100)
    same = encode_image(textured(48, 64), max_side=64)
    assert (same.width, same.height) == (64, 48)


@pytest.mark.parametrize("channels", [None, 3])
def test_higher_jpeg_quality_gives_more_bytes_on_a_textured_image(channels: int | None) -> None:
    pixels = textured(96, 128, channels, seed=1)
    sizes = [len(encode_image(pixels, quality=q).data) for q in (5, 20, 40, 60, 80, 95)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[-1] > 4 * sizes[0]


def test_png_ignores_quality_and_numpy_integers_are_accepted() -> None:
    pixels = textured(16, 16)
    low = encode_image(pixels, image_format="png", quality=1)
    high = encode_image(pixels, image_format="png", quality=95)
    assert low.data == high.data
    numpy_opts = encode_image(pixels, quality=np.int64(70), max_side=np.uint16(8))  # type: ignore[arg-type]
    plain = encode_image(pixels, quality=70, max_side=8)
    assert numpy_opts == plain and (plain.width, plain.height) == (8, 8)


GOOD = np.zeros((4, 4, 3), np.uint8)


@pytest.mark.parametrize(
    ("pixels", "options", "match"),
    [
        (GOOD.astype(np.float32), {}, r"uint8 array, got float32 \(4, 4, 3\)"),
        (GOOD.astype(np.int64), {}, r"uint8 array, got int64"),
        (GOOD.astype(bool), {}, r"uint8 array, got bool"),
        (np.zeros(4, np.uint8), {}, r"uint8 array, got uint8 \(4,\)"),
        (np.zeros((4, 4, 4), np.uint8), {}, r"got uint8 \(4, 4, 4\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), {}, r"got uint8 \(2, 4, 4, 3\)"),
        (np.zeros((4, 4, 1), np.uint8), {}, r"got uint8 \(4, 4, 1\)"),
        ([[1, 2], [3]], {}, r"\(H, W\) or \(H, W, 3\) uint8 array"),
        (None, {}, r"uint8 array, got object \(\)"),
        (np.zeros((0, 4, 3), np.uint8), {}, r"must not be empty, got shape \(0, 4, 3\)"),
        (np.zeros((4, 0), np.uint8), {}, r"must not be empty, got shape \(4, 0\)"),
        (GOOD, {"quality": 0}, r"quality must be an integer from 1 to 95, got 0"),
        (GOOD, {"quality": 96}, r"quality must be an integer from 1 to 95, got 96"),
        (GOOD, {"quality": 80.0}, r"quality must be an integer from 1 to 95, got 80.0"),
        (GOOD, {"quality": True}, r"quality must be .* got True"),
        (GOOD, {"quality": "high"}, r"quality must be .* got 'high'"),
        (GOOD, {"max_side": 0}, r"max_side must be a positive integer or None, got 0"),
        (GOOD, {"max_side": -5}, r"max_side must be .* got -5"),
        (GOOD, {"max_side": 2.5}, r"max_side must be .* got 2.5"),
        (GOOD, {"max_side": False}, r"max_side must be .* got False"),
        (GOOD, {"image_format": "webp"}, r"image_format must be 'jpeg' or 'png', got 'webp'"),
        (GOOD, {"image_format": "JPEG"}, r"got 'JPEG'"),
        (GOOD, {"image_format": None}, r"got None"),
        (GOOD, {"image_format": ["png"]}, r"got \['png'\]"),
    ],
)
def test_bad_input_raises_invalid_input_naming_the_value(
    pixels: object, options: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        encode_image(pixels, **options)  # type: ignore[arg-type]


def test_a_side_the_format_cannot_hold_is_refused_unless_downscaled() -> None:
    wide = np.zeros((2, 65_501), np.uint8)
    with pytest.raises(InvalidInputError, match=r"jpeg image has at most 65500 .* got 65501x2"):
        encode_image(wide)
    assert encode_image(wide, image_format="png").width == 65_501
    with pytest.raises(InvalidInputError, match=r"png image has at most 65535 .* max_side"):
        encode_image(np.zeros((65_536, 1), np.uint8), image_format="png")
    small = encode_image(wide, max_side=1000)
    assert (small.width, small.height) == (1000, 1) and decode(small).size == (1000, 1)


def test_missing_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingDependencyError, match=r"curator\[edge\]"):
        encode_image(GOOD)


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_encoded_frame_goes_through_the_buffer_to_the_wire_record(
    tmp_path: Path, image_format: str
) -> None:
    out = encode_image(textured(120, 160), image_format=image_format, max_side=64)  # type: ignore[arg-type]
    frame = KeptFrame(
        image=out.data,
        width=out.width,
        height=out.height,
        image_format=out.image_format,
        embedding=np.ones(4, np.float32),
        model_version="m-1",
        scores={"entropy": 0.5},
        value=0.5,
        captured_at=datetime(2024, 5, 1, tzinfo=UTC),
        keep_reason="value_above_threshold",
    )
    with FrameBuffer(tmp_path / "b.db", max_bytes=4 * 2**20) as buf:
        assert buf.add(frame).stored
        (got,) = buf.claim(1)
    record = got.to_record("cam-1")
    assert (record.width, record.height, record.image_format) == (64, 48, image_format)
    assert decode(EncodedImage(record.image, 64, 48, out.image_format)).size == (64, 48)
