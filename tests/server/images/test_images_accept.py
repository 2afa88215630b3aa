"""inspect_image accepts real JPEG and PNG images and reports their size and mode."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from curator.errors import InvalidInputError
from server.errors import ImageRejected
from server.images import IMAGE_FORMATS, REASON_CODES, ImageInfo, inspect_image


@pytest.mark.parametrize(
    ("mode", "options", "expected_mode"),
    [
        ("RGB", {"quality": 90}, "RGB"),
        ("RGB", {"quality": 30, "progressive": True}, "RGB"),
        ("RGB", {"restart_marker_blocks": 2}, "RGB"),
        ("RGB", {"subsampling": 0}, "RGB"),
        ("L", {}, "L"),
        ("CMYK", {}, "CMYK"),
    ],
)
def test_real_jpegs_are_accepted_with_their_size_and_mode(
    encode: Any, mode: str, options: dict[str, Any], expected_mode: str
) -> None:
    data = encode("JPEG", mode=mode, **options)
    info = inspect_image(data, declared_format="jpeg", declared_size=(96, 64))
    assert info == ImageInfo("jpeg", 96, 64, expected_mode)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {}),
        ("RGBA", {}),
        ("L", {}),
        ("LA", {}),
        ("P", {}),
        ("1", {}),
        ("I;16", {}),
        ("RGB", {"interlace": 1}),
        ("RGB", {"optimize": True}),
    ],
)
def test_real_pngs_are_accepted_with_their_size_and_mode(
    encode: Any, mode: str, options: dict[str, Any]
) -> None:
    data = encode("PNG", mode=mode, **options)
    info = inspect_image(data, declared_format="png", declared_size=(96, 64))
    assert info == ImageInfo("png", 96, 64, mode)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 9), (9, 17)])
@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGB", "RGBA", "I;16"])
def test_pngs_of_odd_sizes_and_depths_are_accepted(
    encode: Any, picture: Image.Image, size: tuple[int, int], mode: str
) -> None:
    data = encode("PNG", image=picture.resize(size), mode=mode)
    assert inspect_image(data, declared_format="png") == ImageInfo("png", *size, mode)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _interlaced_png(pixels: np.ndarray, bit_depth: int) -> bytes:
    """A grayscale Adam7-interlaced PNG written by hand (Pillow does not write interlaced)."""
    raw = b""
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            for row in sub:
                packed = np.packbits(row > 0) if bit_depth == 1 else row.astype(np.uint8)
                raw += b"\x00" + packed.tobytes()
    h, w = pixels.shape
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 9), (9, 17), (64, 48)])
@pytest.mark.parametrize("bit_depth", [1, 8])
def test_interlaced_pngs_are_accepted(size: tuple[int, int], bit_depth: int) -> None:
    w, h = size
    pixels = np.random.default_rng(w * h).integers(0, 256, (h, w), dtype=np.uint8)
    if bit_depth == 1:
        pixels = (pixels > 127).astype(np.uint8) * 255
    data = _interlaced_png(pixels, bit_depth)
    mode = "1" if bit_depth == 1 else "L"
    assert inspect_image(data, declared_format="png") == ImageInfo("png", w, h, mode)
    with Image.open(io.BytesIO(data)) as im:  # the hand-made file is right
        assert np.array_equal(np.asarray(im.convert("L")), pixels)
    # one byte fewer in the interlaced image data: the size the header implies is checked
    stream = data[33 + 8 : data.index(b"IEND") - 8]  # after signature + IHDR, IDAT's body
    one_byte_short = zlib.compress(zlib.decompress(stream)[:-1])
    broken = data[:33] + _chunk(b"IDAT", one_byte_short) + _chunk(b"IEND", b"")
    with pytest.raises(ImageRejected, match=r"^truncated: the PNG image data holds"):
        inspect_image(broken, declared_format="png")


def test_a_camera_sized_jpeg_with_exif_and_icc_is_accepted(encode: Any) -> None:
    rng = np.random.default_rng(1)
    frame = Image.fromarray(rng.integers(0, 256, (272, 640, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0110] = "edge-camera"  # Model
    data = encode("JPEG", image=frame, quality=75, exif=exif, icc_profile=b"\x00" * 128)
    assert inspect_image(data, declared_format="jpeg") == ImageInfo("jpeg", 640, 272, "RGB")


def test_bytes_like_inputs_are_accepted(jpeg: bytes) -> None:
    for data in (bytearray(jpeg), memoryview(jpeg)):
        assert inspect_image(data, declared_format="jpeg").width == 96  # type: ignore[arg-type]


def test_the_size_limits_are_inclusive(jpeg: bytes) -> None:
    info = inspect_image(jpeg, declared_format="jpeg", max_pixels=96 * 64, max_bytes=len(jpeg))
    assert (info.width, info.height) == (96, 64)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"declared_format": "jpg"}, "declared_format must be one of jpeg, png"),
        ({"declared_format": "JPEG"}, "declared_format"),
        ({"declared_format": "jpeg", "max_pixels": 0}, "max_pixels"),
        ({"declared_format": "jpeg", "max_pixels": 1.5}, "max_pixels"),
        ({"declared_format": "jpeg", "max_bytes": -1}, "max_bytes"),
        ({"declared_format": "jpeg", "max_bytes": True}, "max_bytes"),
        ({"declared_format": "jpeg", "declared_size": (96,)}, "declared_size"),
        ({"declared_format": "jpeg", "declared_size": [96, 64]}, "declared_size"),
        ({"declared_format": "jpeg", "declared_size": (96, 0)}, "declared height"),
        ({"declared_format": "jpeg", "declared_size": (96.0, 64)}, "declared width"),
    ],
)
def test_bad_arguments_are_invalid_input_not_rejections(
    jpeg: bytes, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        inspect_image(jpeg, **kwargs)


def test_data_that_is_not_bytes_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="data must be bytes, got str"):
        inspect_image("\xff\xd8\xff", declared_format="jpeg")  # type: ignore[arg-type]


def test_pillow_global_state_is_left_alone(jpeg: bytes, png: bytes) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    inspect_image(jpeg, declared_format="jpeg")
    inspect_image(png, declared_format="png")
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_concurrent_calls_from_threads_agree(jpeg: bytes, png: bytes) -> None:
    results: list[ImageInfo] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            out = [
                inspect_image(jpeg, declared_format="jpeg"),
                inspect_image(png, declared_format="png"),
            ]
            with lock:
                results.extend(out)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {ImageInfo("jpeg", 96, 64, "RGB"), ImageInfo("png", 96, 64, "RGB")}
    assert len(results) == 160


def test_public_constants() -> None:
    assert IMAGE_FORMATS == ("jpeg", "png")
    assert len(set(REASON_CODES)) == len(REASON_CODES) == 8
