"""QualityGates on synthetic frames and at each threshold; ValueModel against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.quality import FrameQuality, measure
from edge_selector.scoring import GATE_REASONS, FrameScores, QualityGates, ValueModel

GATES = QualityGates()


def q(blur: float = 100.0, brightness: float = 0.5, overexposed: float = 0.0) -> FrameQuality:
    return FrameQuality(blur=blur, brightness=brightness, overexposed=overexposed, underexposed=0.0)


def textured(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 210, (16, 16, 3), dtype=np.uint8)


# -- quality gates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (np.zeros((16, 16, 3), np.uint8), "black"),
        (np.full((16, 16, 3), 255, np.uint8), "overexposed"),
        (np.full((16, 16, 3), 128, np.uint8), "blurred"),
        (np.full((24, 16), 90, np.uint8), "blurred"),  # grey frames too
        (textured(), None),
    ],
)
def test_gates_on_synthetic_frames(frame: np.ndarray, reason: str | None) -> None:
    assert GATES.reason(measure(frame)) == reason


def test_dark_but_textured_frame_is_black_and_bright_textured_is_overexposed() -> None:
    dark = np.where(textured() > 125, 10, 0).astype(np.uint8)  # mean luma ~ 5 / 255, sharp
    assert measure(dark).blur > GATES.min_sharpness
    assert GATES.reason(measure(dark)) == "black"
    mask = np.random.default_rng(1).random((16, 16, 1)) < 0.7  # 70 % of the pixels blown out
    bright = np.broadcast_to(np.where(mask, 255, 120), (16, 16, 3)).astype(np.uint8)
    assert measure(bright).overexposed > 0.5
    assert GATES.reason(measure(bright)) == "overexposed"


def test_threshold_boundaries() -> None:
    g = QualityGates(min_brightness=0.2, max_overexposed=0.3, min_sharpness=40.0)
    assert g.reason(q(blur=40.0, brightness=0.2, overexposed=0.3)) is None  # all exactly at
    assert g.reason(q(brightness=math.nextafter(0.2, 0))) == "black"
    assert g.reason(q(overexposed=math.nextafter(0.3, 1))) == "overexposed"
    assert g.reason(q(blur=math.nextafter(40.0, 0))) == "blurred"


def test_gate_order_black_then_overexposed_then_blurred() -> None:
    assert GATES.reason(q(blur=0.0, brightness=0.0, overexposed=1.0)) == "black"
    assert GATES.reason(q(blur=0.0, brightness=0.9, overexposed=1.0)) == "overexposed"
    assert GATES.reason(q(blur=0.0)) == "blurred"
    assert GATE_REASONS == ("black", "overexposed", "blurred")


def test_zero_sharpness_turns_the_blur_gate_off() -> None:
    flat = measure(np.full((16, 16, 3), 128, np.uint8))
    assert QualityGates(min_sharpness=0).reason(flat) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_brightness": -0.1},
        {"min_brightness": 1.5},
        {"max_overexposed": 2},
        {"max_overexposed": float("nan")},
        {"min_sharpness": -1.0},
        {"min_sharpness": float("nan")},
        {"min_sharpness": True},
        {"min_brightness": "0.1"},
    ],
)
def test_gate_validation(kwargs: dict[str, object]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(InvalidInputError, match=name):
        QualityGates(**kwargs)  # type: ignore[arg-type]


# -- value ----------------------------------------------------------------------------------------

PROBS = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]], np.float32)
SIM = np.array([0.25, -np.inf, 0.9], np.float32)
NOVELTY = np.array([0.75, 1.0, 0.1])


def hand_uncertainty(name: str) -> np.ndarray:
    out = []
    for p in PROBS.astype(np.float64):
        top = sorted(p, reverse=True)
        if name == "entropy":
            out.append(-sum(x * math.log(x) for x in p if x > 0) / math.log(3))
        elif name == "margin":
            out.append(1 - (top[0] - top[1]))
        else:
            out.append((1 - top[0]) * 3 / 2)
    return np.array(out)


@pytest.mark.parametrize("measure_name", ["entropy", "margin", "least_confidence"])
@pytest.mark.parametrize(("wu", "wn"), [(1.0, 1.0), (3.0, 1.0), (0.5, 2)])
def test_value_is_weighted_mean_of_uncertainty_and_novelty(
    measure_name: str, wu: float, wn: float
) -> None:
    model = ValueModel(uncertainty=measure_name, uncertainty_weight=wu, novelty_weight=wn)
    s = model.scores(SIM, PROBS)
    unc = hand_uncertainty(measure_name)
    np.testing.assert_allclose(s.novelty, NOVELTY, atol=1e-6)
    assert s.uncertainty is not None
    np.testing.assert_allclose(s.uncertainty, unc, atol=1e-5)
    np.testing.assert_allclose(s.value, (wu * unc + wn * NOVELTY) / (wu + wn), atol=1e-5)
    assert s.similarity[0] == np.float32(0.25) and np.isneginf(s.similarity[1])
    named = s.named(0, measure_name)
    assert set(named) == {"novelty", "value", measure_name}
    assert named[measure_name] == pytest.approx(unc[0], abs=1e-5)
    assert all(v.dtype == np.float32 for v in (s.novelty, s.value, s.uncertainty))


def test_novelty_clipped_to_unit_interval() -> None:
    s = ValueModel().scores(np.array([-0.5, 1.0, 1.0000001], np.float32), None)
    np.testing.assert_allclose(s.novelty, [1.0, 0.0, 0.0])


def test_embedding_only_value_is_novelty() -> None:
    s = ValueModel(uncertainty_weight=5.0).scores(SIM, None)
    assert s.uncertainty is None
    np.testing.assert_array_equal(s.value, s.novelty)
    np.testing.assert_allclose(s.value, NOVELTY, atol=1e-6)
    assert set(s.named(1, "entropy")) == {"novelty", "value"}


def test_zero_uncertainty_weight_value_is_novelty_but_uncertainty_recorded() -> None:
    s = ValueModel(uncertainty_weight=0.0).scores(SIM, PROBS)
    np.testing.assert_allclose(s.value, NOVELTY, atol=1e-6)
    assert s.uncertainty is not None
    np.testing.assert_allclose(s.uncertainty, hand_uncertainty("entropy"), atol=1e-5)


def test_zero_novelty_weight_value_is_uncertainty() -> None:
    s = ValueModel(novelty_weight=0, uncertainty="margin").scores(SIM, PROBS)
    np.testing.assert_allclose(s.value, hand_uncertainty("margin"), atol=1e-5)


def test_malformed_probabilities_raise() -> None:
    with pytest.raises(InvalidInputError):
        ValueModel().scores(SIM, np.array([[0.9, 0.9, 0.1]] * 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"uncertainty": "bald"}, "unknown uncertainty score 'bald'.*entropy"),
        ({"uncertainty": "nope"}, "valid: entropy, least_confidence, margin"),
        ({"uncertainty_weight": -1}, "uncertainty_weight"),
        ({"novelty_weight": float("nan")}, "novelty_weight"),
        ({"novelty_weight": False}, "novelty_weight"),
        ({"uncertainty_weight": 0, "novelty_weight": 0}, "cannot both be 0"),
        ({"duplicate_similarity": -0.1}, "duplicate_similarity"),
    ],
)
def test_value_model_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ValueModel(**kwargs)  # type: ignore[arg-type]


def test_duplicate_threshold_inclusive_and_off_above_one() -> None:
    model = ValueModel(duplicate_similarity=0.95)
    assert model.is_duplicate(0.95)
    assert model.is_duplicate(1.0)
    assert not model.is_duplicate(math.nextafter(0.95, 0))
    assert not model.is_duplicate(-math.inf)
    off = ValueModel(duplicate_similarity=1.01)
    assert not off.is_duplicate(1.0)
    assert ValueModel().duplicate_similarity == 0.98


def test_frame_scores_named_without_uncertainty() -> None:
    one = np.ones(1, np.float32)
    s = FrameScores(novelty=one * 0.5, similarity=one * 0.5, uncertainty=None, value=one * 0.5)
    assert s.named(0, "entropy") == {"novelty": 0.5, "value": 0.5}
