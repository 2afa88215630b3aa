"""Hostile bytes: inspect_image only ever returns ImageInfo or raises ImageRejected, silently."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ImageRejected
from server.images import REASON_CODES, ImageInfo, inspect_image


def outcome(data: bytes, declared_format: str) -> str:
    """``"ok"`` or the reason code; fails on any other exception or any warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            info = inspect_image(data, declared_format=declared_format)
        except ImageRejected as exc:
            code, _, detail = str(exc).partition(": ")
            assert code in REASON_CODES and detail
            result = code
        else:
            assert isinstance(info, ImageInfo) and info.format == declared_format
            assert info.width > 0 and info.height > 0
            result = "ok"
    assert [str(w.message) for w in caught] == []
    return result


@settings(max_examples=200)
@given(data=st.binary(max_size=4096), declared=st.sampled_from(["jpeg", "png"]))
def test_random_bytes(data: bytes, declared: str) -> None:
    assert outcome(data, declared) != "ok"


@settings(max_examples=100)
@given(
    body=st.binary(max_size=2048),
    prefix=st.sampled_from(
        [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n"]
    ),
)
def test_random_bytes_behind_a_real_signature(body: bytes, prefix: bytes) -> None:
    declared = "png" if prefix.startswith(b"\x89") else "jpeg"
    assert outcome(prefix + body, declared) != "ok"


def _mutate(original: bytes, data: st.DataObject) -> bytes:
    out = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["set", "flip", "insert", "delete", "cut", "ff"]))
        pos = data.draw(st.integers(0, max(0, len(out) - 1)))
        if op == "set":
            out[pos] = data.draw(st.integers(0, 255))
        elif op == "flip":
            out[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[pos : pos + data.draw(st.integers(1, 8))]
        elif op == "cut":
            del out[pos:]
        else:  # a marker-looking pair, the JPEG walker's favourite
            out[pos : pos + 2] = b"\xff" + bytes([data.draw(st.integers(0, 255))])
        if not out:
            break
    return bytes(out)


@settings(max_examples=300)
@given(data=st.data())
@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("JPEG", {"restart_marker_blocks": 1}),
        ("PNG", {}),
        ("PNG", {"mode": "P"}),
    ],
)
def test_mutated_real_images(encode: Any, fmt: str, options: dict[str, Any], data: Any) -> None:
    original = encode(fmt, **options)
    declared = fmt.lower()
    assert outcome(original, declared) == "ok"
    mutated = _mutate(original, data)
    result = outcome(mutated, declared)
    if fmt == "PNG":  # every byte of a PNG is covered by a CRC or by the structure
        assert result != "ok" or mutated == original
