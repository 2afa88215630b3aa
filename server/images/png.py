"""The structure of a PNG, walked chunk by chunk before Pillow decodes it.

:func:`png_layout` checks every chunk's length and CRC (so any changed byte is caught), that
``IHDR`` comes first and once with a valid size, bit depth and colour type, that the ``IDAT``
chunks are consecutive, that there is no APNG chunk (``unsupported_format``) and that ``IEND``
ends the data. :func:`check_image_data` then inflates the ``IDAT`` stream, discarding the
output, and checks it holds exactly the bytes the header implies: Pillow accepts a zlib stream
that ends early and leaves the missing rows blank. It runs after the pixel limit, and never
inflates more than the expected size plus 64 KiB, so it cannot be used as a zlib bomb.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from server.images.reasons import reject

__all__ = ["PngLayout", "check_image_data", "png_layout"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_APNG_CHUNKS = {b"acTL", b"fcTL", b"fdAT"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Adam7 passes as (x0, y0, dx, dy)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_STEP = 1 << 16


@dataclass(frozen=True)
class PngLayout:
    """What the chunk walk found: the header fields and the image data chunks."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool
    idat: tuple[memoryview, ...]

    @property
    def data_size(self) -> int:
        """Bytes the inflated image data must hold: filter byte + packed samples per row."""
        bits = _CHANNELS[self.color_type] * self.bit_depth
        passes = _ADAM7 if self.interlaced else ((0, 0, 1, 1),)
        total = 0
        for x0, y0, dx, dy in passes:
            w, h = -(-(self.width - x0) // dx), -(-(self.height - y0) // dy)
            if w > 0 and h > 0:
                total += h * (1 + -(-(w * bits) // 8))
        return total


def _header(body: memoryview) -> tuple[int, int, int, int, bool]:
    if len(body) != 13:
        reject("corrupt", f"PNG IHDR chunk is {len(body)} bytes long, not 13")
    width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
    depth, color, compression, filtering, interlace = body[8:13]
    if not width or not height:
        reject("corrupt", f"the PNG header declares {width}x{height}")
    if depth not in _BIT_DEPTHS.get(color, ()) or compression or filtering or interlace > 1:
        reject("corrupt", f"PNG header has bit depth {depth}, colour type {color}: not valid")
    return width, height, depth, color, interlace == 1


def png_layout(data: bytes) -> PngLayout:
    """The header and image data of a PNG (starting with its signature), all chunks checked.

    Raises:
        ImageRejected: ``truncated``, ``corrupt`` or ``unsupported_format``.
    """
    view, n, pos = memoryview(data), len(data), len(SIGNATURE)
    header: tuple[int, int, int, int, bool] | None = None
    idat: list[memoryview] = []
    idat_state = "before"  # "before" the first IDAT, "in" the IDAT run, "after" it
    while True:
        if pos + 12 > n:
            reject("truncated", f"the PNG ends at byte {n} before its IEND chunk")
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > n:
            reject("truncated", f"PNG chunk {kind!r} at byte {pos} runs past the end")
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            reject("corrupt", f"PNG chunk {kind!r} at byte {pos} fails its CRC")
        body = view[pos + 8 : end - 4]
        if (header is None) != (kind == b"IHDR"):
            reject("corrupt", f"PNG chunk {kind!r} at byte {pos}: IHDR must come first, once")
        if kind == b"IHDR":
            header = _header(body)
        elif kind in _APNG_CHUNKS:
            reject("unsupported_format", "apng (animated PNG)")
        elif kind == b"IDAT":
            if idat_state == "after":
                reject("corrupt", f"PNG IDAT chunks are not consecutive (byte {pos})")
            idat_state = "in"
            idat.append(body)
        elif kind == b"IEND":
            if header is None or not idat:
                reject("corrupt", "the PNG has no image data (IDAT)")
            if end != n:
                reject("corrupt", f"{n - end} byte(s) after the PNG IEND chunk")
            return PngLayout(*header, idat=tuple(idat))
        elif idat_state == "in":
            idat_state = "after"
        pos = end


def check_image_data(layout: PngLayout) -> None:
    """Inflate the image data and check its length against the header.

    Raises:
        ImageRejected: ``truncated`` (the stream or the rows end early) or ``corrupt`` (bad
            zlib data, more rows than the header implies, or bytes after the stream).
    """
    expected, produced, trailing = layout.data_size, 0, False
    inflater = zlib.decompressobj()
    try:
        for chunk in layout.idat:
            pending: bytes | memoryview = chunk
            if inflater.eof:
                trailing = trailing or len(chunk) > 0
            while pending and not inflater.eof:
                produced += len(inflater.decompress(pending, _INFLATE_STEP))
                if produced > expected:
                    reject("corrupt", f"the PNG image data holds more than {expected} bytes")
                pending = inflater.unconsumed_tail
        produced += len(inflater.flush())
    except zlib.error as exc:
        reject("corrupt", f"the PNG image data is not a valid zlib stream: {exc}")
    if produced > expected:
        reject("corrupt", f"the PNG image data holds more than {expected} bytes")
    if not inflater.eof:
        reject("truncated", "the PNG image data stream ends early")
    if produced < expected:
        reject("truncated", f"the PNG image data holds {produced} of {expected} bytes")
    if trailing or inflater.unused_data:
        reject("corrupt", "bytes after the end of the PNG image data stream")
