"""Validation of uploaded frame images: JPEG or PNG, within size limits, fully decodable.

:func:`inspect_image` checks an encoded image in this order and raises
:class:`~server.errors.ImageRejected` at the first failure, with the message
``"<reason code>: <detail>"`` (the code is stable, for metrics and the warehouse):

======================  ====================================================================
code                    when
======================  ====================================================================
``too_large``           more than ``max_bytes`` bytes
``not_an_image``        empty, or the first bytes match no image signature
``unsupported_format``  GIF, BMP, WebP, TIFF, ...; an animated PNG (APNG); a multi-picture
                        JPEG (MPO); a JPEG that is not 8-bit baseline/extended/progressive
``format_mismatch``     the bytes are JPEG but ``png`` was declared, or the reverse
``truncated``           the data ends before the end of the image
``corrupt``             a broken structure (markers, chunk CRCs, headers, image data of the
                        wrong length, bytes after the end) or data the decoder refuses
``too_many_pixels``     the header declares more than ``max_pixels`` pixels
``size_mismatch``       the header's width x height differs from ``declared_size``
======================  ====================================================================

Two passes:

1. **Structure, in Python, before Pillow sees the bytes** (:mod:`server.images.jpeg`,
   :mod:`server.images.png`): the JPEG marker segments or the PNG chunks and their CRCs. The
   pixel limit is checked from the header, so a decompression bomb (a tiny file declaring
   50000x50000) is refused before anything is allocated. Pillow's own limit,
   ``Image.MAX_IMAGE_PIXELS``, is never changed; the effective limit is the smaller of the two,
   so Pillow's ``DecompressionBombWarning`` and ``DecompressionBombError`` cannot fire.
2. **A decode** with Pillow (``Image.load()``, never ``LOAD_TRUNCATED_IMAGES``), for
   truncated and corrupt data; a JPEG at 1/8 scale, which still entropy-decodes all its data.
   Any exception Pillow raises on hostile bytes becomes ``ImageRejected``.

No warning filter is touched (``warnings.catch_warnings`` is not thread-safe, and this runs in
a thread pool): the structural pass refuses what would make Pillow warn while opening a JPEG or
PNG (bombs, malformed MPO, malformed APNG).

Limits: JPEG has no checksum, and libjpeg treats damaged entropy-coded data as a warning, not
an error, so a bit flip inside a JPEG scan that keeps the marker structure intact decodes to
wrong pixels and is accepted. Corruption in transit or storage is caught before this by the
frame id, the sha256 of the bytes (``curator.wire.frame_problems``). PNG chunks carry CRCs, so
any changed byte of a PNG is caught.

Multi-frame images are refused (``unsupported_format``): a frame is one picture, and decoding
every frame of an APNG or MPO would multiply the cost an uploader controls.

Modules: :mod:`~server.images.inspection` (``inspect_image``, the order of the checks),
:mod:`~server.images.checker` (``ImageChecker``: a batch's images, in worker processes if asked),
:mod:`~server.images.jpeg` and :mod:`~server.images.png` (the structural walks),
:mod:`~server.images.reasons` (the codes). docs/dedup.md has the measured cost.
"""

from server.images.checker import ImageCheck, ImageChecker
from server.images.inspection import IMAGE_FORMATS, ImageInfo, inspect_image
from server.images.reasons import REASON_CODES

__all__ = [
    "IMAGE_FORMATS",
    "REASON_CODES",
    "ImageCheck",
    "ImageChecker",
    "ImageInfo",
    "inspect_image",
]
