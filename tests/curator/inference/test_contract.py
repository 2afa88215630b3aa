from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curator.errors import InvalidInputError, ModelContractError
from curator.inference.contract import (
    METADATA_KEYS,
    ModelMetadata,
    check_input,
    check_output,
)

finite = st.floats(-10, 10, allow_nan=False)
positive = st.floats(0.01, 10, allow_nan=False)


@st.composite
def metadata(draw: st.DrawFn) -> ModelMetadata:
    channels = draw(st.sampled_from(["rgb", "gray"]))
    n = 3 if channels == "rgb" else 1
    return ModelMetadata(
        model_version=draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        class_names=tuple(draw(st.lists(st.text(min_size=1, max_size=8), unique=True))),
        embedding_dim=draw(st.integers(1, 4096)),
        input_size=(draw(st.integers(1, 2048)), draw(st.integers(1, 2048))),
        channels=channels,
        mean=tuple(draw(st.lists(finite, min_size=n, max_size=n))),
        std=tuple(draw(st.lists(positive, min_size=n, max_size=n))),
        resize=draw(st.sampled_from(["bilinear", "nearest"])),
    )


@given(metadata())
def test_props_round_trip(meta: ModelMetadata) -> None:
    props = meta.to_props()
    assert set(props) == set(METADATA_KEYS)
    assert all(isinstance(v, str) for v in props.values())
    assert ModelMetadata.from_props(props) == meta


def test_props_are_the_documented_strings(make_meta: Callable[..., ModelMetadata]) -> None:
    props = make_meta().to_props()
    assert props == {
        "curator.model_version": "test-1",
        "curator.class_names": '["a", "b", "c", "d"]',
        "curator.embedding_dim": "3",
        "curator.input_size": "[4, 5]",
        "curator.channels": "gray",
        "curator.mean": "[0.25]",
        "curator.std": "[0.5]",
        "curator.resize": "bilinear",
    }


def test_unrelated_props_are_ignored(make_meta: Callable[..., ModelMetadata]) -> None:
    props = {**make_meta().to_props(), "author": "someone", "curator.future_key": "x"}
    assert ModelMetadata.from_props(props) == make_meta()


def test_default_mean_and_std_fit_the_channels() -> None:
    gray = ModelMetadata("v", (), 2, (3, 3), channels="gray")
    rgb = ModelMetadata("v", (), 2, (3, 3), channels="rgb")
    assert (gray.mean, gray.std, gray.num_channels) == ((0.0,), (1.0,), 1)
    assert (rgb.mean, rgb.std, rgb.num_channels) == ((0.0,) * 3, (1.0,) * 3, 3)


@pytest.mark.parametrize("key", METADATA_KEYS)
def test_each_missing_key_is_named(key: str, make_meta: Callable[..., ModelMetadata]) -> None:
    props = make_meta().to_props()
    del props[key]
    with pytest.raises(ModelContractError, match=key.replace(".", r"\.")):
        ModelMetadata.from_props(props)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("curator.class_names", "not json", "curator.class_names"),
        ("curator.class_names", '{"a": 1}', "class_names"),
        ("curator.class_names", '["a", "a"]', "unique"),
        ("curator.class_names", '["a", 3]', "class_names"),
        ("curator.embedding_dim", "three", "embedding_dim"),
        ("curator.embedding_dim", "0", "embedding_dim"),
        ("curator.embedding_dim", "-2", "embedding_dim"),
        ("curator.input_size", "[4]", "input_size"),
        ("curator.input_size", "[4, 0]", "W"),
        ("curator.input_size", "[4, 5.5]", "W"),
        ("curator.input_size", "[4, 5", "curator.input_size"),
        ("curator.channels", "bgr", "channels"),
        ("curator.mean", "[0.1, 0.2, 0.3]", "mean"),
        ("curator.mean", '"0.1"', "mean"),
        ("curator.std", "[0]", "std must be positive"),
        ("curator.std", "[NaN]", "std"),
        ("curator.resize", "bicubic", "resize"),
        ("curator.model_version", " ", "model_version"),
    ],
)
def test_unparseable_values_are_named(
    key: str, value: str, named: str, make_meta: Callable[..., ModelMetadata]
) -> None:
    props = {**make_meta().to_props(), key: value}
    with pytest.raises(ModelContractError, match=named):
        ModelMetadata.from_props(props)


def test_constructor_rejects_bad_fields_with_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="std"):
        ModelMetadata("v", (), 2, (3, 3), channels="rgb", std=(1.0, 0.0, 1.0))
    with pytest.raises(InvalidInputError, match="one per channel"):
        ModelMetadata("v", (), 2, (3, 3), channels="rgb", mean=(0.5,))
    with pytest.raises(InvalidInputError, match="class_names"):
        ModelMetadata("v", "abc", 2, (3, 3))  # type: ignore[arg-type]


def test_metadata_is_frozen(make_meta: Callable[..., ModelMetadata]) -> None:
    meta = make_meta()
    with pytest.raises(AttributeError):
        meta.embedding_dim = 5  # type: ignore[misc]
    assert replace(meta, embedding_dim=5).embedding_dim == 5
    assert json.loads(meta.to_props()["curator.class_names"]) == list(meta.class_names)


@pytest.mark.parametrize(
    ("elem_type", "shape", "message"),
    [
        ("tensor(int64)", ["N", 1, 4, 5], "tensor\\(float\\)"),
        ("tensor(float)", ["N", 4, 5], "4-D"),
        ("tensor(float)", [2, 1, 4, 5], "fixed batch size 2"),
        ("tensor(float)", ["N", 3, 4, 5], "3 channel"),
        ("tensor(float)", ["N", 1, 5, 5], "input_size"),
        ("tensor(float)", ["N", 1, 4, 6], "input_size"),
    ],
)
def test_check_input_rejects(
    elem_type: str, shape: list[object], message: str, make_meta: Callable[..., ModelMetadata]
) -> None:
    with pytest.raises(ModelContractError, match=message):
        check_input("images", elem_type, shape, make_meta())  # type: ignore[arg-type]


def test_check_input_accepts_dynamic_dims(make_meta: Callable[..., ModelMetadata]) -> None:
    check_input("images", "tensor(float)", [None, "C", "H", "W"], make_meta())
    check_input("images", "tensor(float)", ["batch", 1, 4, 5], make_meta())


def test_check_output() -> None:
    check_output("embedding", "embedding", "tensor(float)", ["N", 8], 8, "k")
    check_output("embedding", "embedding", "tensor(float)", ["N", "D"], 8, "k")
    with pytest.raises(ModelContractError, match="width 7 but metadata k says 8"):
        check_output("embedding", "embedding", "tensor(float)", ["N", 7], 8, "k")
    with pytest.raises(ModelContractError, match="2-D"):
        check_output("logits", "fc", "tensor(float)", ["N", 1, 8], 8, "k")
    with pytest.raises(ModelContractError, match=r"graph output 'fc'.*tensor\(double\)"):
        check_output("logits", "fc", "tensor(double)", ["N", 8], 8, "k")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channels": ["gray"]}, "channels must be one of"),
        ({"class_names": None}, "class_names must be a sequence"),
        ({"mean": 0.5}, "mean"),
    ],
)
def test_wrongly_typed_fields_are_invalid_input(
    make_meta: Callable[..., ModelMetadata], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make_meta(**overrides)


def test_numpy_mean_and_std_are_accepted(make_meta: Callable[..., ModelMetadata]) -> None:
    meta = make_meta(channels="gray", mean=np.array([0.5]), std=np.array([0.25]))
    assert meta.mean == (0.5,) and meta.std == (0.25,)
