from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.inference.contract import ModelMetadata
from curator.inference.preprocess import (
    LUMA_WEIGHTS,
    as_frames,
    normalize,
    preprocess_frames,
    resize,
)

sizes = st.integers(1, 40)


@given(sizes, sizes, sizes, sizes, st.integers(0, 255), st.sampled_from(["bilinear", "nearest"]))
def test_resizing_a_constant_image_keeps_it_constant(
    h: int, w: int, oh: int, ow: int, value: int, method: str
) -> None:
    img = np.full((2, h, w, 3), value, np.uint8)
    out = resize(img, (oh, ow), method)
    assert out.shape == (2, oh, ow, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, value, atol=1e-3)


@given(st.integers(2, 30), st.integers(2, 30), sizes, sizes)
def test_bilinear_reproduces_a_linear_gradient(h: int, w: int, oh: int, ow: int) -> None:
    # f(y, x) = 3y + 2x is reproduced exactly by bilinear sampling at clamped half-pixel centres.
    ys, xs = np.mgrid[0:h, 0:w]
    img = (3 * ys + 2 * xs).astype(np.uint8)[None, :, :, None]
    sy = np.clip((np.arange(oh) + 0.5) * h / oh - 0.5, 0, h - 1)
    sx = np.clip((np.arange(ow) + 0.5) * w / ow - 0.5, 0, w - 1)
    expected = 3 * sy[:, None] + 2 * sx[None, :]
    np.testing.assert_allclose(resize(img, (oh, ow))[0, :, :, 0], expected, atol=1e-3)


def test_bilinear_hand_computed_values() -> None:
    row = np.array([[0, 10, 20, 30]], np.uint8)[None, :, :, None]
    # halving: sources at x = 0.5 and 2.5
    np.testing.assert_allclose(resize(row, (1, 2))[0, 0, :, 0], [5.0, 25.0])
    pair = np.array([[0, 10]], np.uint8)[None, :, :, None]
    # doubling: sources at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    np.testing.assert_allclose(resize(pair, (1, 4))[0, 0, :, 0], [0.0, 2.5, 7.5, 10.0])
    square = np.array([[0, 100], [200, 40]], np.uint8)[None, :, :, None]
    # 2x2 -> 1x1 samples the centre: the mean of the four pixels
    np.testing.assert_allclose(resize(square, (1, 1))[0, 0, 0, 0], 85.0)


def test_nearest_picks_the_pixel_under_each_centre() -> None:
    row = np.arange(6, dtype=np.uint8).reshape(1, 1, 6, 1)
    # centres of 4 output pixels fall at x = 0.75, 2.25, 3.75, 5.25
    np.testing.assert_array_equal(resize(row, (1, 4), "nearest")[0, 0, :, 0], [0, 2, 3, 5])
    np.testing.assert_array_equal(resize(row, (1, 12), "nearest")[0, 0, :, 0], np.repeat(row, 2))


def test_unknown_resize_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="bilinear, nearest"):
        resize(np.zeros((1, 2, 2, 1), np.uint8), (1, 1), "bicubic")


@pytest.mark.parametrize(
    ("method", "mode"), [("bilinear", "bilinear"), ("nearest", "nearest-exact")]
)
def test_resize_matches_torch_interpolate(method: str, mode: str) -> None:
    # torch computes source coordinates in float32, hence the tolerance (in 0-255 pixel units)
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for (h, w), (oh, ow) in [((37, 53), (28, 28)), ((9, 7), (20, 31)), ((272, 640), (64, 96))]:
        img = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        x = torch.from_numpy(img.astype(np.float32)).permute(0, 3, 1, 2)
        kwargs = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
        ref = torch.nn.functional.interpolate(x, size=(oh, ow), mode=mode, **kwargs)
        np.testing.assert_allclose(
            resize(img, (oh, ow), method), ref.permute(0, 2, 3, 1).numpy(), atol=0.02
        )


def test_normalisation_applies_mean_and_std() -> None:
    meta = ModelMetadata("v", (), 2, (2, 3), "rgb", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    out = preprocess_frames(frame, meta)
    assert out.shape == (1, 3, 2, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = (frame / 255.0 - np.array(meta.mean)) / np.array(meta.std)
    np.testing.assert_allclose(out[0], expected.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)


def test_rgb_to_gray_uses_bt601_luma() -> None:
    meta = ModelMetadata("v", (), 2, (2, 2), "gray")
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 90]], np.uint8)
    frames = np.repeat(np.repeat(colours[:, None, None, :], 2, axis=1), 2, axis=2)
    out = preprocess_frames(frames, meta)
    assert out.shape == (4, 1, 2, 2)
    expected = colours @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(out[:, 0, 0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(out.reshape(4, -1), np.repeat(expected[:, None], 4, 1), rtol=1e-5)
    np.testing.assert_allclose(LUMA_WEIGHTS.sum(), 1.0, rtol=1e-6)


def test_gray_to_rgb_repeats_the_plane() -> None:
    meta = ModelMetadata("v", (), 2, (3, 4), "rgb", mean=(0.0, 0.5, 1.0), std=(1.0, 1.0, 1.0))
    frame = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = preprocess_frames(frame, meta)
    assert out.shape == (1, 3, 3, 4)
    for c, m in enumerate(meta.mean):
        np.testing.assert_allclose(out[0, c], frame / 255.0 - m, atol=1e-6)


def test_all_input_forms_agree(make_meta: Callable[..., ModelMetadata]) -> None:
    meta = make_meta(channels="rgb", mean=(), std=(), input_size=(6, 6))
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(6, 6, 3), (9, 13, 3), (6, 6)]]
    each = np.concatenate([preprocess_frames(f, meta) for f in frames])
    np.testing.assert_array_equal(preprocess_frames(frames, meta), each)
    np.testing.assert_array_equal(preprocess_frames(tuple(frames), meta), each)
    batch = rng.integers(0, 256, (5, 8, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        preprocess_frames(batch, meta), preprocess_frames(list(batch), meta)
    )
    gray = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(
        preprocess_frames(gray, meta), preprocess_frames(gray[:, :, None], meta)
    )
    assert preprocess_frames([], meta).shape == (0, 3, 6, 6)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((2, 4, 4, 3), np.int16), "uint8"),
        (np.zeros((4, 4, 4), np.uint8), "\\(H, W, 3\\)"),
        (np.zeros((2, 4, 4, 2), np.uint8), "\\(N, H, W, 3\\)"),
        (np.zeros((1, 2, 4, 4, 3), np.uint8), "\\(H, W\\)"),
        (np.zeros((4,), np.uint8), "\\(H, W\\)"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float64)], "frames\\[1\\]"),
        ("frame.png", "list of them"),
        (None, "list of them"),
    ],
)
def test_bad_frames_are_rejected(frames: object, message: str) -> None:
    meta = ModelMetadata("v", (), 2, (4, 4), "rgb")
    with pytest.raises(InvalidInputError, match=message):
        preprocess_frames(frames, meta)


def test_as_frames_returns_views() -> None:
    batch = np.zeros((3, 4, 5, 1), np.uint8)
    frames = as_frames(batch)
    assert len(frames) == 3 and all(f.base is not None for f in frames)


@pytest.mark.parametrize("channels", ["rgb", "gray"])
def test_normalize_of_resized_pixels_equals_preprocess_frames(channels: str) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, 27, 41, 3), dtype=np.uint8)
    meta = ModelMetadata(
        model_version="m", class_names=("a", "b"), embedding_dim=4, input_size=(9, 13),
        channels=channels, mean=(0.4,) * (3 if channels == "rgb" else 1),
        std=(0.2,) * (3 if channels == "rgb" else 1),
    )  # fmt: skip
    pixels = np.stack([resize(f[None], meta.input_size)[0] for f in frames])
    np.testing.assert_allclose(
        normalize(pixels, meta), preprocess_frames(frames, meta), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(InvalidInputError, match="pixels must be"):
        normalize(pixels[:, :5], meta)
