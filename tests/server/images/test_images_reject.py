"""inspect_image rejects every kind of bad image with its reason code, before or while decoding."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server.errors import BadRequest, ImageRejected
from server.images import inspect_image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def hand_made_png(width: int, height: int, idat: bytes, *, bit_depth: int = 8) -> bytes:
    """A grayscale PNG written by hand: signature, IHDR, one IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def scan_data(jpeg: bytes) -> tuple[int, int]:
    """``(start, end)`` of the entropy-coded data of a single-scan JPEG (end: its EOI)."""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big")
    assert jpeg.endswith(b"\xff\xd9")
    return start, len(jpeg) - 2


def rejected(data: bytes, **kwargs: Any) -> str:
    """The rejection message, asserting no warning escaped."""
    kwargs.setdefault("declared_format", "jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageRejected) as info:
            inspect_image(data, **kwargs)
    assert caught == []
    assert isinstance(info.value, BadRequest) and info.value.status_code == 400
    return str(info.value)


def test_empty_bytes_are_not_an_image() -> None:
    assert rejected(b"") == "not_an_image: empty"
    assert rejected(b"", declared_format="png") == "not_an_image: empty"


@pytest.mark.parametrize("data", [b"hello world", b"\x00" * 64, b"\xff\xd8", b"<svg/>"])
def test_bytes_without_an_image_signature_are_not_an_image(data: bytes) -> None:
    assert rejected(data).startswith("not_an_image: the bytes start with ")


@pytest.mark.parametrize(
    ("fmt", "options", "name"),
    [
        ("GIF", {}, "gif"),
        ("BMP", {}, "bmp"),
        ("WEBP", {}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
        ("TIFF", {}, "tiff"),
        ("JPEG2000", {}, "jpeg2000"),
    ],
)
@pytest.mark.parametrize("declared", ["jpeg", "png"])
def test_other_image_formats_are_unsupported(
    encode: Any, fmt: str, options: dict[str, Any], name: str, declared: str
) -> None:
    data = encode(fmt, **options)
    assert rejected(data, declared_format=declared) == f"unsupported_format: {name}"


def test_animated_png_is_unsupported(encode: Any, picture: Image.Image) -> None:
    data = encode("PNG", save_all=True, append_images=[picture.rotate(180)])
    assert rejected(data, declared_format="png") == "unsupported_format: apng (animated PNG)"


def test_multi_picture_jpeg_is_unsupported(encode: Any, picture: Image.Image) -> None:
    data = encode("MPO", save_all=True, append_images=[picture.rotate(180)])
    assert data.startswith(b"\xff\xd8\xff")
    assert rejected(data) == "unsupported_format: mpo (multi-picture JPEG)"


def test_a_lossless_or_12_bit_jpeg_is_unsupported(jpeg: bytes) -> None:
    sof = jpeg.index(b"\xff\xc0")
    lossless = jpeg[: sof + 1] + b"\xc3" + jpeg[sof + 2 :]
    assert rejected(lossless) == "unsupported_format: jpeg coding process SOF3"
    twelve_bit = jpeg[: sof + 4] + b"\x0c" + jpeg[sof + 5 :]
    assert rejected(twelve_bit) == "unsupported_format: jpeg with 12-bit samples"


def test_format_mismatch_names_both_formats(jpeg: bytes, png: bytes) -> None:
    assert rejected(jpeg, declared_format="png") == "format_mismatch: declared png, found jpeg"
    assert rejected(png, declared_format="jpeg") == "format_mismatch: declared jpeg, found png"


def test_size_mismatch_names_both_sizes(jpeg: bytes, png: bytes) -> None:
    message = rejected(jpeg, declared_size=(640, 480))
    assert message == "size_mismatch: declared 640x480, image is 96x64"
    message = rejected(png, declared_format="png", declared_size=(64, 96))
    assert message == "size_mismatch: declared 64x96, image is 96x64"


def test_too_large_is_checked_on_the_byte_count(jpeg: bytes) -> None:
    message = rejected(jpeg, max_bytes=len(jpeg) - 1)
    assert message == f"too_large: {len(jpeg)} bytes > {len(jpeg) - 1}"
    assert rejected(b"x" * 17 * 2**20).startswith("too_large: 17825792 bytes > 16777216")


def test_too_many_pixels_against_the_caller_limit(jpeg: bytes, png: bytes) -> None:
    assert rejected(jpeg, max_pixels=96 * 64 - 1) == f"too_many_pixels: 96x64 > {96 * 64 - 1}"
    assert rejected(png, declared_format="png", max_pixels=100).startswith("too_many_pixels:")


def test_a_png_bomb_is_refused_from_its_header_before_any_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bomb = hand_made_png(50_000, 50_000, zlib.compress(b"\x00" * 50_001))
    assert len(bomb) < 200

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Pillow must not open a bomb")

    monkeypatch.setattr(Image, "open", no_decoding)
    message = rejected(bomb, declared_format="png")
    assert message == "too_many_pixels: 50000x50000 > 40000000"


def test_a_complete_png_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20000 x 20000 1-bit pixels, every row present: 50 MB of zeros deflated to ~50 kB
    rows = zlib.compress(bytes(20_000 * (2_500 + 1)), 9)
    bomb = hand_made_png(20_000, 20_000, rows, bit_depth=1)
    assert len(bomb) < 100_000
    assert rejected(bomb, declared_format="png") == "too_many_pixels: 20000x20000 > 40000000"


def test_a_jpeg_declaring_a_huge_size_is_refused(jpeg: bytes) -> None:
    sof = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: sof + 5] + struct.pack(">HH", 50_000, 50_000) + jpeg[sof + 9 :]
    assert rejected(bomb) == "too_many_pixels: 50000x50000 > 40000000"


def test_pillows_own_limit_still_applies_without_its_warning_or_error() -> None:
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    # over 2x Pillow's limit (its DecompressionBombError) and between 1x and 2x (its warning)
    for side in (20_000, 10_000):
        bomb = hand_made_png(side, side, zlib.compress(b"\x00" * (side + 1)))
        message = rejected(bomb, declared_format="png", max_pixels=10**12)
        assert message == f"too_many_pixels: {side}x{side} > {limit} (Image.MAX_IMAGE_PIXELS)"


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_truncated_jpeg_is_rejected_as_truncated(jpeg: bytes, fraction: float) -> None:
    cut = jpeg[: int(len(jpeg) * fraction)]
    assert rejected(cut).startswith("truncated: ")


@pytest.mark.parametrize("missing", [1, 2, 3, 10])
def test_a_jpeg_missing_its_last_bytes_is_truncated(jpeg: bytes, missing: int) -> None:
    assert rejected(jpeg[:-missing]).startswith("truncated: ")


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_a_truncated_png_is_rejected_as_truncated(png: bytes, fraction: float) -> None:
    cut = png[: int(len(png) * fraction)]
    assert rejected(cut, declared_format="png").startswith("truncated: ")


def test_png_image_data_of_the_wrong_length_is_refused() -> None:
    # every chunk and the zlib stream valid, but 3 of 64 rows (Pillow alone would accept it)
    short = hand_made_png(64, 64, zlib.compress(b"\x00" * 65 * 3))
    message = rejected(short, declared_format="png")
    assert message == "truncated: the PNG image data holds 195 of 4160 bytes"
    long = hand_made_png(64, 64, zlib.compress(b"\x00" * 65 * 65))
    message = rejected(long, declared_format="png")
    assert message == "corrupt: the PNG image data holds more than 4160 bytes"
    cut_stream = hand_made_png(64, 64, zlib.compress(b"\x00" * 65 * 64)[:-6])
    assert rejected(cut_stream, declared_format="png") == (
        "truncated: the PNG image data stream ends early"
    )
    after = hand_made_png(64, 64, zlib.compress(b"\x00" * 65 * 64) + b"junk")
    assert rejected(after, declared_format="png") == (
        "corrupt: bytes after the end of the PNG image data stream"
    )
    garbage = hand_made_png(64, 64, b"\x78\x9c" + b"\xff" * 40)
    assert rejected(garbage, declared_format="png").startswith(
        "corrupt: the PNG image data is not a valid zlib stream"
    )


def test_a_stuffed_ff_byte_overwritten_in_the_scan_is_corrupt(jpeg: bytes) -> None:
    start, end = scan_data(jpeg)
    stuffed = jpeg.index(b"\xff\x00", start)
    assert stuffed < end
    damaged = jpeg[: stuffed + 1] + b"\x3c" + jpeg[stuffed + 2 :]
    assert rejected(damaged).startswith("corrupt: ")


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_an_end_of_image_marker_inside_the_scan_is_corrupt(jpeg: bytes, where: float) -> None:
    start, end = scan_data(jpeg)
    pos = start + int((end - start) * where)
    damaged = jpeg[:pos] + b"\xff\xd9" + jpeg[pos + 2 :]
    assert rejected(damaged).startswith("corrupt: ")


def test_restart_markers_out_of_order_are_corrupt(encode: Any) -> None:
    data = encode("JPEG", restart_marker_blocks=1)
    rst = data.index(b"\xff\xd1")  # the second restart marker, RST1
    damaged = data[:rst] + b"\xff\xd5" + data[rst + 2 :]
    expected = f"corrupt: restart marker RST5 at byte {rst} where RST1 was expected"
    assert rejected(damaged) == expected


def test_a_damaged_huffman_table_is_corrupt(jpeg: bytes) -> None:
    dht = jpeg.index(b"\xff\xc4")
    damaged = jpeg[: dht + 5] + b"\xff" * 16 + jpeg[dht + 21 :]
    assert rejected(damaged).startswith("corrupt: ")


@pytest.mark.parametrize("seed", range(5))
def test_a_flipped_byte_anywhere_in_a_png_is_corrupt(png: bytes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos = int(rng.integers(8, len(png)))  # past the signature
    damaged = bytearray(png)
    damaged[pos] ^= int(rng.integers(1, 256))
    assert rejected(bytes(damaged), declared_format="png").split(":")[0] in ("corrupt", "truncated")


def test_a_flipped_byte_in_png_image_data_fails_its_crc(png: bytes) -> None:
    idat = png.index(b"IDAT")
    damaged = bytearray(png)
    damaged[idat + 40] ^= 0x01
    assert "fails its CRC" in rejected(bytes(damaged), declared_format="png")


def test_bytes_after_the_end_of_the_image_are_corrupt(jpeg: bytes, png: bytes) -> None:
    assert rejected(jpeg + b"PK\x03\x04 smuggled") == (
        "corrupt: 13 byte(s) after the JPEG end-of-image marker"
    )
    assert rejected(png + b"\x00", declared_format="png") == (
        "corrupt: 1 byte(s) after the PNG IEND chunk"
    )


def test_png_chunk_order_is_checked() -> None:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00" * 2))
    sig, iend = b"\x89PNG\r\n\x1a\n", png_chunk(b"IEND", b"")
    cases = {
        "no IHDR first": sig + idat + ihdr + iend,
        "two IHDR": sig + ihdr + ihdr + idat + iend,
        "no IDAT": sig + ihdr + iend,
        "split IDAT": sig + ihdr + idat + png_chunk(b"tEXt", b"a\x00b") + idat + iend,
        "zero size": sig
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 2, 8, 0, 0, 0, 0))
        + idat
        + iend,
    }
    for name, data in cases.items():
        assert rejected(data, declared_format="png").startswith("corrupt: "), name
    assert inspect_image(sig + ihdr + idat + iend, declared_format="png").mode == "L"


def test_a_jpeg_with_a_zero_height_or_two_frame_headers_is_corrupt(jpeg: bytes) -> None:
    sof = jpeg.index(b"\xff\xc0")
    zero = jpeg[: sof + 5] + b"\x00\x00" + jpeg[sof + 7 :]
    assert rejected(zero) == "corrupt: the JPEG frame header declares 96x0"
    length = int.from_bytes(jpeg[sof + 2 : sof + 4], "big")
    segment = jpeg[sof : sof + 2 + length]
    twice = jpeg[: sof + 2 + length] + segment + jpeg[sof + 2 + length :]
    assert rejected(twice).startswith("corrupt: a second JPEG frame header")


def test_image_rejected_round_trips_through_pillow_errors(png: bytes) -> None:
    # Pillow raises for a bad filter type byte inside a PNG with valid CRCs
    bad_filter = hand_made_png(2, 2, zlib.compress(b"\x09\x00\x00" * 2))
    assert rejected(bad_filter, declared_format="png").startswith("corrupt: ")
    assert io.BytesIO(png).read(8) == b"\x89PNG\r\n\x1a\n"
