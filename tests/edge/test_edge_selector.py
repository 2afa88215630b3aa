"""Selector on real bikes.mp4 frames, a real onnxruntime linear model and real FrameBuffer files."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit.models import linear_onnx
from testkit.videos import bikes_frames

from curator.data.video import VideoFrame
from curator.inference import ModelMetadata, OnnxModel
from curator.inference.build import OPSET, finish_model
from curator.uncertainty import softmax
from edge_selector.buffer import BufferedFrame, FrameBuffer
from edge_selector.selector import DROP_REASONS, SelectionPolicy, Selector

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BIG = 64 * 2**20
FPS = 25  # bikes.mp4: frame i at i / 25 s


@pytest.fixture(scope="module")
def frames() -> tuple[VideoFrame, ...]:
    return bikes_frames(250)


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel(linear_onnx(version="lin-1"))


def run(selector: Selector, frames: Sequence[VideoFrame], batch: int = 16) -> None:
    for start in range(0, len(frames), batch):
        selector.process(frames[start : start + batch], started=T0)


def make(model: OnnxModel, buffer: FrameBuffer, **policy: Any) -> Selector:
    clock_kw = {k: policy.pop(k) for k in ("resumable", "source") if k in policy}
    return Selector(model, buffer, SelectionPolicy(**policy), clock=lambda: 0.0, **clock_kw)


def all_frames(buffer: FrameBuffer) -> list[BufferedFrame]:
    got = buffer.claim(10_000)
    buffer.release(f.device_seq for f in got)
    return got


def assert_accounted(selector: Selector) -> None:
    """Every frame seen is kept or dropped for exactly one known reason."""
    counts = selector.counts
    known = {"frames.seen", "frames.kept", "evicted"} | {f"dropped.{r}" for r in DROP_REASONS}
    assert set(counts) <= known, set(counts) - known
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped."))
    assert counts["frames.kept"] + dropped == counts["frames.seen"]


def black(index: int) -> VideoFrame:
    return VideoFrame(index, index / FPS, np.zeros((272, 640, 3), np.uint8))


@pytest.fixture(scope="module")
def full_run(
    tmp_path_factory: pytest.TempPathFactory, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> tuple[Selector, FrameBuffer]:
    buf = FrameBuffer(tmp_path_factory.mktemp("full") / "b.db", max_bytes=BIG)
    sel = make(model, buf, keep_ratio=0.3, window=100)
    run(sel, frames)
    return sel, buf


def test_every_frame_ends_in_one_outcome_and_keep_ratio_is_near_target(
    full_run: tuple[Selector, FrameBuffer], frames: tuple[VideoFrame, ...]
) -> None:
    sel, buf = full_run
    assert sel.counts["frames.seen"] == len(frames) == 250
    assert_accounted(sel)
    ratio = sel.counts["frames.kept"] / sel.counts["frames.seen"]
    assert 0.1 <= ratio <= 0.45, dict(sel.counts)  # 68 / 250 = 0.27 when written
    assert buf.stats().frames == sel.counts["frames.kept"]
    assert sel.counts["evicted"] == 0
    assert len(sel.recent) == sel.counts["frames.kept"]


def test_kept_frames_hold_the_models_outputs(
    full_run: tuple[Selector, FrameBuffer], model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    _, buf = full_run
    kept = all_frames(buf)
    assert kept
    assert len({f.frame_id for f in kept}) == len(kept)
    by_index = {}
    for f in kept:
        secs = (f.frame.captured_at - T0).total_seconds()
        assert secs * FPS == pytest.approx(round(secs * FPS), abs=1e-3)
        by_index[round(secs * FPS)] = f
    assert len(by_index) == len(kept)
    images = np.stack([frames[i].image for i in sorted(by_index)])
    want = model.predict(images)  # the model on the decoded frames, preprocessed its own way
    assert want.logits is not None
    probs = softmax(want.logits).astype(np.float32)
    for j, i in enumerate(sorted(by_index)):
        got = by_index[i].frame
        assert got.model_version == "lin-1"
        assert (got.width, got.height) == (640, 272)
        embedding = np.asarray(got.embedding)
        np.testing.assert_allclose(embedding, want.embeddings[j], atol=1e-5)
        np.testing.assert_allclose(np.asarray(got.class_probabilities), probs[j], atol=1e-5)
        assert got.predicted_class == int(np.argmax(np.asarray(got.class_probabilities)))
        scores = dict(got.scores)
        assert set(scores) == {"value", "novelty", "entropy"}
        p = np.asarray(got.class_probabilities, np.float64)
        entropy = -(p * np.log(np.where(p > 0, p, 1))).sum() / math.log(len(p))
        assert scores["entropy"] == pytest.approx(entropy, abs=1e-4)
        assert 0 <= scores["novelty"] <= 1
        assert scores["value"] == pytest.approx((scores["entropy"] + scores["novelty"]) / 2, 1e-5)
        assert got.value == pytest.approx(scores["value"])
        assert got.keep_reason in ("above_threshold", "overdue")
        assert set(got.quality) >= {"blur", "brightness", "overexposed"}
    assert by_index[min(by_index)].frame.scores["novelty"] == 1.0  # the first kept: nothing before


def test_same_batch_twice_keeps_nothing_new(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = make(model, buf, keep_ratio=1.0)
        sel.process(frames[:32], started=T0)
        first = sel.counts["frames.kept"]
        assert first > 0
        before_dup = sel.counts["dropped.near_duplicate"]
        sel.process(frames[:32], started=T0)
        assert sel.counts["frames.kept"] == first
        assert sel.counts["dropped.near_duplicate"] == before_dup + 32
        assert buf.stats().frames == first
        assert_accounted(sel)


def test_same_batch_twice_at_low_ratio_never_keeps_a_frame_twice(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = make(model, buf, keep_ratio=0.3)
        sel.process(frames[:32], started=T0)
        first = sel.counts["frames.kept"]
        dup = sel.counts["dropped.near_duplicate"]
        sel.process(frames[:32], started=T0)
        # every frame kept the first time is a near-duplicate the second time
        assert sel.counts["dropped.near_duplicate"] - dup >= first
        ids = [f.frame_id for f in all_frames(buf)]
        assert len(ids) == len(set(ids)) == sel.counts["frames.kept"]
        assert_accounted(sel)


def test_black_frames_dropped_without_running_the_model(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...], monkeypatch: Any
) -> None:
    batches: list[int] = []
    real_run = model.run

    def spy(batch: Any) -> Any:
        batches.append(len(batch))
        return real_run(batch)

    monkeypatch.setattr(model, "run", spy)
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = make(model, buf, keep_ratio=0.5)
        sel.process([black(i) for i in range(8)])
        assert batches == []
        assert sel.counts["dropped.black"] == 8 and sel.counts["frames.seen"] == 8
        mixed = [black(100), *frames[101:104], black(104)]
        sel.process(mixed)
        assert batches == [3]  # only the three real frames reach the model
        assert sel.counts["dropped.black"] == 10
        assert_accounted(sel)


def nan_model(where: str) -> bytes:
    """A contract-shaped model whose ``where`` output ("embedding" or "logits") is all NaN."""
    import onnx
    from onnx import helper, numpy_helper

    size, dim, classes = 16, 8, 3
    meta = ModelMetadata(
        model_version="nan-1",
        class_names=tuple(f"c{i}" for i in range(classes)),
        embedding_dim=dim,
        input_size=(size, size),
    )
    rng = np.random.default_rng(0)
    w_e = rng.standard_normal((3 * size * size, dim)).astype(np.float32)
    w_h = rng.standard_normal((dim, classes)).astype(np.float32)
    nan = np.array([np.nan], np.float32)
    inits = [
        numpy_helper.from_array(w_e, "W_e"),
        numpy_helper.from_array(w_h, "W_h"),
        numpy_helper.from_array(nan, "nan"),
    ]
    emb = "raw" if where == "embedding" else "embedding"
    logits = "raw_logits" if where == "logits" else "logits"
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W_e"], [emb]),
        helper.make_node("MatMul", [emb, "W_h"], [logits]),
    ]
    if where == "embedding":
        nodes.append(helper.make_node("Mul", ["raw", "nan"], ["embedding"]))
    else:
        nodes.append(helper.make_node("Mul", ["raw_logits", "nan"], ["logits"]))
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "nan_model",
        [helper.make_tensor_value_info("images", f32, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("embedding", f32, ["N", dim]),
            helper.make_tensor_value_info("logits", f32, ["N", classes]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    return finish_model(proto, meta)


@pytest.mark.parametrize("where", ["embedding", "logits"])
def test_nonfinite_model_output_is_dropped_and_counted(
    tmp_path: Path, frames: tuple[VideoFrame, ...], where: str, caplog: Any
) -> None:
    bad = OnnxModel(nan_model(where))
    out = bad.predict(np.stack([frames[0].image]))
    nan_output = out.embeddings if where == "embedding" else out.logits
    assert nan_output is not None and np.isnan(nan_output).all()
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = make(bad, buf, keep_ratio=1.0)
        run(sel, frames[:40])
        sel.process([black(1000)])
        assert sel.counts["dropped.nonfinite_output"] == 40
        assert sel.counts["dropped.black"] == 1
        assert sel.counts["frames.kept"] == 0 and buf.stats().frames == 0
        assert len(sel.recent) == 0
        assert_accounted(sel)
    assert any("NaN" in r.getMessage() for r in caplog.records)


def test_state_resume_skips_done_frames_and_restores_the_budget(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        first = make(model, buf, keep_ratio=0.3, resumable=True, source="bikes.mp4")
        assert first.resume_after == -1
        run(first, frames[:32])
        assert first.save()
        saved = buf.load_state("selector")
        assert saved is not None and saved["position"] == 31
        assert saved["stream"] == first.stream.to_dict()
        assert first.stream.seen == 32

        again = make(model, buf, keep_ratio=0.3, resumable=True, source="bikes.mp4")
        assert again.resume_after == 31
        assert again.stream.to_dict() == saved["stream"]
        run(again, frames[:64])
        assert again.counts["frames.seen"] == 32  # frames 32..63 only
        assert again.stream.seen == 64
        assert_accounted(again)

        other = make(model, buf, keep_ratio=0.3, resumable=True, source="other.mp4")
        assert other.resume_after == -1
        assert other.stream.to_dict() == saved["stream"]  # the budget carries on regardless
        live = make(model, buf, keep_ratio=0.3, source="bikes.mp4")
        assert live.resume_after == -1
        changed = make(model, buf, keep_ratio=0.5, resumable=True, source="bikes.mp4")
        assert changed.stream.seen == 0 and changed.stream.budget.keep_ratio == 0.5


@pytest.mark.parametrize(
    "state", [{"stream": {"version": 99}}, {"stream": "x"}, {"position": 3}, {"stream": {}}]
)
def test_unusable_saved_state_starts_afresh(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...], state: dict[str, Any]
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        assert buf.save_state("selector", state)
        sel = make(model, buf, keep_ratio=0.3, resumable=True)
        assert sel.stream.seen == 0 and sel.stream.budget.keep_ratio == 0.3
        run(sel, frames[:16])
        assert sel.counts["frames.seen"] == 16
        assert_accounted(sel)


def test_restart_with_a_new_hourly_cap_honours_it(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        first = make(model, buf, keep_ratio=1.0)
        run(first, frames[:32])
        first.save()
        capped = make(model, buf, keep_ratio=1.0, max_per_hour=2)
        run(capped, frames[100:150])  # the clock stands still: one hour
        assert capped.counts["frames.kept"] <= 2


def test_novelty_seeded_from_buffered_frames_of_the_same_version(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    other = OnnxModel(linear_onnx(version="lin-2", seed=1, dim=12))
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        run(make(model, buf, keep_ratio=1.0), frames[:48])  # kept, or a near-copy of a kept
        ours = buf.stats().frames
        assert ours > 0
        seeded = make(model, buf, keep_ratio=0.5)
        assert len(seeded.recent) == ours
        held = np.stack([np.asarray(f.frame.embedding) for f in all_frames(buf)])
        np.testing.assert_allclose(seeded.recent.similarity(held), 1.0, atol=1e-5)

        fresh = make(other, buf, keep_ratio=0.5)
        assert len(fresh.recent) == 0 and fresh.recent.model_version == "lin-2"
        run(fresh, frames[100:148])
        theirs = buf.stats().frames - ours
        assert theirs > 0
        assert len(make(model, buf, keep_ratio=0.5).recent) == ours
        assert len(make(other, buf, keep_ratio=0.5).recent) == theirs
        # a seeded selector finds every frame it has kept (or a near-copy of one) redundant
        again = make(model, buf, keep_ratio=1.0)
        run(again, frames[:48])
        assert again.counts["frames.kept"] == 0
        assert again.counts["dropped.near_duplicate"] == 48


def test_same_version_name_with_another_width_is_not_seeded(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    wider = OnnxModel(linear_onnx(version="lin-1", dim=24, seed=3))
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        run(make(model, buf, keep_ratio=1.0), frames[:16])
        assert buf.stats().frames > 0
        sel = make(wider, buf, keep_ratio=1.0)
        assert len(sel.recent) == 0
        run(sel, frames[16:32])  # no dimension mismatch on the way
        assert sel.counts["frames.kept"] > 0
        assert_accounted(sel)


def test_tiny_buffer_never_exceeds_its_cap_and_keeps_the_highest_values(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_selector.selector")
    cap = 768 * 1024  # 256 KiB for frames after the default 512 KiB headroom: ~8 bikes frames
    sizes: list[int] = []
    with FrameBuffer(tmp_path / "b.db", max_bytes=cap) as buf:
        real_add = buf.add

        def add(frame: Any) -> Any:
            outcome = real_add(frame)
            sizes.append(buf.file_bytes())
            return outcome

        buf.add = add  # type: ignore[method-assign]
        sel = make(model, buf, keep_ratio=0.3, window=100)
        run(sel, frames, batch=8)
        assert_accounted(sel)
        stats = buf.stats()
        assert sizes and max(sizes) <= cap
        assert buf.file_bytes() <= cap
        assert sel.counts["evicted"] > 0
        assert sel.counts["evicted"] == stats.evicted
        assert sel.counts["frames.kept"] - sel.counts["evicted"] == stats.frames
        values = {r.device_seq: r.value for r in caplog.records if r.getMessage() == "frame kept"}
        assert len(values) == sel.counts["frames.kept"]
        held = {f.device_seq: f.frame.value for f in all_frames(buf)}
        assert set(held) <= set(values)
        evicted = [v for s, v in values.items() if s not in held]
        assert len(evicted) == sel.counts["evicted"]
        assert max(evicted) <= min(held.values())


def test_prepare_changes_nothing_and_decide_equals_process(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    batch = [black(0), *frames[1:24]]
    with (
        FrameBuffer(tmp_path / "a.db", max_bytes=BIG) as buf_a,
        FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf_b,
    ):
        one, two = make(model, buf_a, keep_ratio=0.5), make(model, buf_b, keep_ratio=0.5)
        one.process(batch, started=T0)
        prepared = two.prepare(batch)
        assert prepared is not None
        assert prepared.gated == ["black"] and prepared.passing == list(range(1, 24))
        assert not two.counts and two.stream.seen == 0 and buf_b.stats().frames == 0
        two.decide(prepared, started=T0)
        assert two.counts == one.counts
        assert two.stream.to_dict() == one.stream.to_dict()
        a = [(f.frame_id, f.frame.value) for f in all_frames(buf_a)]
        assert a == [(f.frame_id, f.frame.value) for f in all_frames(buf_b)]
        two.resume_after = 23
        assert two.prepare(batch) is None


def test_wallclock_stamps_live_frames(tmp_path: Path, model: OnnxModel, frames: Any) -> None:
    now = T0 + timedelta(days=3)
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = Selector(model, buf, SelectionPolicy(keep_ratio=1.0), wallclock=lambda: now)
        sel.process(frames[:4])
        got = all_frames(buf)
        assert got and all(f.frame.captured_at == now for f in got)
        assert sel.started_at == now


def test_frames_too_large_for_the_buffer_are_dropped_and_counted(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    # the default 512 KiB headroom leaves 3 pages for frames: no bikes JPEG fits
    with FrameBuffer(tmp_path / "b.db", max_bytes=512 * 1024 + 3 * 4096) as buf:
        assert buf.limits.max_frame_cost == 3 * 4096
        sel = make(model, buf, keep_ratio=1.0)
        run(sel, frames[:16])
        assert sel.counts["dropped.too_large"] > 0
        assert sel.counts["frames.kept"] == 0 and buf.stats().frames == 0
        assert len(sel.recent) == 0  # nothing kept: nothing to be novel against
        assert_accounted(sel)


def test_a_batch_of_frames_of_different_sizes_is_processed(
    tmp_path: Path, model: OnnxModel, frames: tuple[VideoFrame, ...]
) -> None:
    small = VideoFrame(1, 1.0, np.ascontiguousarray(frames[40].image[::2, ::2]))
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buf:
        sel = make(model, buf, keep_ratio=1.0)
        # an image folder or a stream changing resolution: one batch, two sizes
        sel.process([VideoFrame(0, 0.0, frames[0].image), small], started=T0)
        assert sel.counts["frames.seen"] == 2
        assert_accounted(sel)
        got = {f.frame.width: f.frame for f in all_frames(buf)}
        assert set(got) == {640, 320}
        want = model.predict([small.image]).embeddings[0]
        np.testing.assert_allclose(np.asarray(got[320].embedding), want, atol=1e-5)
