""":func:`inspect_image`: the checks of :mod:`server.images`, in order, then a decode."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from curator.errors import InvalidInputError
from server.errors import ImageRejected
from server.images.jpeg import jpeg_size
from server.images.png import SIGNATURE as PNG_SIGNATURE
from server.images.png import check_image_data, png_layout
from server.images.reasons import reject

__all__ = ["IMAGE_FORMATS", "ImageInfo", "inspect_image"]

IMAGE_FORMATS = ("jpeg", "png")
"""The encodings accepted, as named on the wire (``FrameRecord.image_format``)."""

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG"}
# Signatures of formats that are images but not accepted, so the rejection can name them.
_OTHER_SIGNATURES = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jpegxl"),
    (b"\xff\x0a", "jpegxl"),
    (b"qoif", "qoi"),
    (b"8BPS", "psd"),
)


@dataclass(frozen=True)
class ImageInfo:
    """What a valid image is.

    Attributes:
        format: ``"jpeg"`` or ``"png"``.
        width: pixels.
        height: pixels.
        mode: Pillow's mode of the decoded image, e.g. ``"RGB"``, ``"L"``, ``"RGBA"``, ``"P"``.
    """

    format: Literal["jpeg", "png"]
    width: int
    height: int
    mode: str


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _sniff(data: bytes) -> str:
    """``"jpeg"``, ``"png"``, or another image format's name; rejects bytes that are none."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "avif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "heif"
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    reject("not_an_image", f"the bytes start with {data[:8].hex()}, not a JPEG or PNG signature")


def _decode(data: bytes, fmt: str, size: tuple[int, int]) -> str:
    """Decode the whole image with Pillow; return its mode.

    A JPEG is decoded at 1/8 scale (libjpeg's DCT scaling): all of its entropy-coded data is
    read and Huffman-decoded, as in a full decode, but the inverse DCT and colour conversion
    run on 1/64 of the pixels (a 224x168 frame: 120 us instead of 180 us).
    """
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]]) as im:
            if im.size != size:
                w, h = im.size
                reject("corrupt", f"Pillow reads {w}x{h}, the header says {size[0]}x{size[1]}")
            if fmt == "jpeg":  # every coefficient is still entropy-decoded, at 1/8 the pixels
                im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
            return str(im.mode)
    except (ImageRejected, MemoryError):
        raise
    except Image.DecompressionBombError as exc:  # only if MAX_IMAGE_PIXELS changed meanwhile
        reject("too_many_pixels", str(exc))
    except UnidentifiedImageError:  # its message names the BytesIO object, not the cause
        reject("corrupt", f"Pillow cannot read the {fmt} header")
    except Exception as exc:  # hostile bytes may raise anything: reject them all
        message = f"{type(exc).__name__}: {exc}"
        reject("truncated" if "truncated" in message.lower() else "corrupt", message)


def inspect_image(
    data: bytes,
    *,
    declared_format: str,
    declared_size: tuple[int, int] | None = None,
    max_pixels: int = 40_000_000,
    max_bytes: int = 16 * 2**20,
) -> ImageInfo:
    """Check that ``data`` is one whole JPEG or PNG image within the limits.

    Costs one decode (a JPEG's at 1/8 scale, see :func:`_decode`): about 0.1 ms for a 10 kB
    224x168 JPEG on one core. Thread-safe: touches no global state.

    Args:
        data: the encoded image (``bytes``, ``bytearray`` or ``memoryview``).
        declared_format: what the uploader says it is: ``"jpeg"`` or ``"png"``.
        declared_size: ``(width, height)`` the uploader says, or ``None`` to skip that check.
        max_pixels: the most ``width * height`` accepted; Pillow's ``Image.MAX_IMAGE_PIXELS``
            also applies when it is smaller.
        max_bytes: the most bytes accepted.

    Returns:
        The image's format, width, height and decoded mode.

    Raises:
        ImageRejected: the image fails a check; the message starts with one of
            ``REASON_CODES`` (see :mod:`server.images`).
        InvalidInputError: ``data`` is not bytes-like, ``declared_format`` is not one of
            ``IMAGE_FORMATS``, or a limit or ``declared_size`` is not positive integers.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"data must be bytes, got {type(data).__name__}")
    if declared_format not in IMAGE_FORMATS:
        raise InvalidInputError(
            f"declared_format must be one of {', '.join(IMAGE_FORMATS)}, got {declared_format!r}"
        )
    max_pixels = _positive_int(max_pixels, "max_pixels")
    max_bytes = _positive_int(max_bytes, "max_bytes")
    if declared_size is not None:
        if not isinstance(declared_size, tuple) or len(declared_size) != 2:
            raise InvalidInputError(f"declared_size must be (width, height), got {declared_size!r}")
        _positive_int(declared_size[0], "declared width")
        _positive_int(declared_size[1], "declared height")
    data = bytes(data)
    if len(data) > max_bytes:
        reject("too_large", f"{len(data)} bytes > {max_bytes}")
    if not data:
        reject("not_an_image", "empty")
    found = _sniff(data)
    if found not in IMAGE_FORMATS:
        reject("unsupported_format", found)
    if found != declared_format:
        reject("format_mismatch", f"declared {declared_format}, found {found}")
    layout = png_layout(data) if found == "png" else None
    width, height = (layout.width, layout.height) if layout else jpeg_size(data)
    if width * height > max_pixels:
        reject("too_many_pixels", f"{width}x{height} > {max_pixels}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and width * height > pillow_limit:
        reject("too_many_pixels", f"{width}x{height} > {pillow_limit} (Image.MAX_IMAGE_PIXELS)")
    if declared_size is not None and declared_size != (width, height):
        reject(
            "size_mismatch",
            f"declared {declared_size[0]}x{declared_size[1]}, image is {width}x{height}",
        )
    if layout is not None:
        check_image_data(layout)
    mode = _decode(data, found, (width, height))
    return ImageInfo("png" if layout else "jpeg", width, height, mode)
