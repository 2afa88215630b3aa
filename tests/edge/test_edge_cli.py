"""``edge-selector`` end to end, run as a user runs it: ``python -m edge_selector ...``.

Every check starts the real command in a subprocess, with an environment stripped of
``CURATOR_*`` variables (plus those a test sets), on real files: ``bikes.mp4`` (whole, damaged
or cut short), real ONNX models (good, broken, NaN-producing), a real SQLite buffer read back
with ``sqlite3`` and, for tokens, a real ``python -m server serve``. Bad input must end in one
``edge-selector: error:`` line and the documented exit status, or in a counted skip; never a
traceback. Independent commands are started together (:func:`_cli_many`) to keep the file fast.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from testkit.images import jpeg
from testkit.models import write_linear_onnx
from testkit.server import ROOT, ServeProcess, create_token, free_port
from testkit.videos import bikes_path

from curator.inference import ModelMetadata, linear_model
from curator.inference.build import finish_model
from edge_selector.cli import _FLAGS

pytestmark = pytest.mark.integration

VIDEO = bikes_path()
VIDEO_FRAMES = 250
ERROR = "edge-selector: error:"
Command = tuple[Sequence[object], Mapping[str, str] | None]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any ``CURATOR_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_")}
    env.update(extra or {})
    return env


def _cli_many(
    commands: Sequence[Command], timeout: float = 90
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m edge_selector ARGS`` for each command at once; their results in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edge_selector", *map(str, args)],
            cwd=ROOT,
            env=_env(extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, extra in commands
    ]
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    return done


def _cli(*args: object, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _cli_many([([str(a) for a in args], env)])[0]


def _run_args(source: object, model: Path, buffer: Path, *more: object) -> list[str]:
    return ["run", "--source", str(source), "--model", str(model), "--buffer", str(buffer),
            "--progress", "off", *map(str, more)]  # fmt: skip


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]


def _one_error(
    done: subprocess.CompletedProcess[str], status: int, *words: str, after_logs: bool = False
) -> str:
    """Assert exit ``status`` and one ``edge-selector: error:`` line on stderr holding ``words``.

    With ``after_logs`` (a failure once the run had started) log records may come before it;
    the error line is still the only one of its kind and the last.
    """
    _no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr[-3000:]
    errors = [line for line in lines if line.startswith(ERROR)]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr[-3000:]
    if not after_logs:
        assert len(lines) == 1, done.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _summary(stderr: str) -> dict[str, int]:
    """The counts of the summary :meth:`RunSummary.lines` prints at the end of a run."""
    frames = re.findall(
        r"^frames: (\d+) seen, (\d+) kept \([^)]*\), (\d+) corrupt skipped", stderr, re.MULTILINE
    )
    assert len(frames) == 1, stderr[-3000:]
    seen, kept, skipped = map(int, frames[0])
    out = {"seen": seen, "kept": kept, "skipped": skipped}
    dropped = re.findall(r"^dropped: (.*)$", stderr, re.MULTILINE)
    assert len(dropped) == 1, stderr[-3000:]
    if dropped[0] != "none":
        for part in dropped[0].split(", "):
            reason, count = part.rsplit(" ", 1)
            out[f"dropped.{reason}"] = int(count)
    waiting = re.findall(r"^buffer: (\d+) frames waiting, (\d+) evicted$", stderr, re.MULTILINE)
    assert len(waiting) == 1, stderr[-3000:]
    out["waiting"], out["evicted"] = map(int, waiting[0])
    return out


def _ok_run(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    _no_traceback(done)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = _summary(done.stderr)
    drops = sum(v for k, v in summary.items() if k.startswith("dropped."))
    assert summary["kept"] + drops == summary["seen"], summary  # every frame decided once
    return summary


def _rows(buffer: Path) -> tuple[int, int, int]:
    """(frames, max device_seq, counters.last_device_seq) read-only; the file must be healthy."""
    with sqlite3.connect(f"file:{buffer}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        query = "SELECT count(*), coalesce(max(device_seq), 0) FROM frames"
        frames, top = conn.execute(query).fetchone()
        last = conn.execute("SELECT value FROM counters WHERE name = 'last_device_seq'")
        return int(frames), int(top), int(last.fetchone()[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    write_linear_onnx(path, size=32)
    return path


def _normalise(text: str) -> str:
    return " ".join(text.split())


def test_help_names_every_flag_with_its_text_and_no_command_is_usage_error() -> None:
    top, run, status, bare = _cli_many(
        [(["--help"], None), (["run", "--help"], None), (["status", "--help"], None), ([], None)]
    )
    for done in (top, run, status):
        _no_traceback(done)
        assert done.returncode == 0, done.stderr
    assert "capture, select, buffer and upload" in top.stdout
    assert "what the buffer holds and what was synced" in _normalise(top.stdout)
    run_help = _normalise(run.stdout)
    for flag in _FLAGS:
        assert f"{flag.flag} VALUE {_normalise(flag.help)}" in run_help, flag.flag
    for text in ("--loop loop a file or folder", "--config FILE TOML settings file"):
        assert text in run_help
    status_help = _normalise(status.stdout)
    assert "--json print JSON instead of text" in status_help
    for flag in _FLAGS:
        shown = f"{flag.flag} VALUE {_normalise(flag.help)}" in status_help
        assert shown == (flag.flag in ("--buffer", "--max-buffer-mb")), flag.flag
    assert bare.returncode == 2 and bare.stdout == ""
    assert "the following arguments are required: COMMAND" in bare.stderr
    _no_traceback(bare)


def test_unreadable_sources_exit_1_with_one_line_naming_the_source(
    tmp_path: Path, model: Path
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(1).randbytes(20_000))
    empty, texts, broken = tmp_path / "empty", tmp_path / "texts", tmp_path / "broken"
    for folder in (empty, texts, broken):
        folder.mkdir()
    (texts / "notes.txt").write_text("not a frame\n")
    (texts / "clip.mp4.part").write_bytes(VIDEO.read_bytes()[:1000])
    for i in range(3):  # image names, bytes PIL cannot read: skipped and counted, not fatal
        (broken / f"{i}.jpg").write_bytes(random.Random(i).randbytes(500))
    sources = [tmp_path / "missing.mp4", garbage, empty, texts]
    done = _cli_many(
        [(_run_args(s, model, tmp_path / f"b{i}.db"), None) for i, s in enumerate(sources)]
        + [(_run_args(broken, model, tmp_path / "broken.db"), None)]
    )
    for source, result in zip(sources, done[:-1], strict=True):
        _one_error(result, 1, repr(str(source)))
    assert "No such file" in done[0].stderr
    assert "no image files" in done[2].stderr and "no image files" in done[3].stderr
    for i in range(len(sources)):  # failed before touching the buffer
        assert not (tmp_path / f"b{i}.db").exists()
    summary = _ok_run(done[-1])
    assert summary["seen"] == 0 and summary["skipped"] == 3 and summary["waiting"] == 0


def _damaged_copy(path: Path, seed: int = 5, chunks: int = 20, size: int = 4096) -> Path:
    """bikes.mp4 with ``chunks`` seeded random blocks written over its frame data (``mdat``),
    after the first 10% and before the index (``moov``) at its end, so it still opens."""
    data = bytearray(VIDEO.read_bytes())
    end = data.rfind(b"moov") - 8
    assert end > len(data) // 2, "bikes.mp4 is expected to keep its index at the end"
    rng = random.Random(seed)
    for _ in range(chunks):
        start = rng.randrange(len(data) // 10, end - size)
        data[start : start + size] = rng.randbytes(size)
    path.write_bytes(bytes(data))
    return path


def test_corrupt_frames_are_skipped_and_counted_and_a_cut_video_is_refused(
    tmp_path: Path, model: Path
) -> None:
    damaged = _damaged_copy(tmp_path / "damaged.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(VIDEO.read_bytes()[: int(VIDEO.stat().st_size * 0.6)])
    buffer = tmp_path / "damaged.db"
    whole, short = _cli_many(
        [
            (_run_args(damaged, model, buffer), None),
            (_run_args(cut, model, tmp_path / "c.db"), None),
        ]
    )
    summary = _ok_run(whole)
    assert summary["skipped"] > 0 and summary["seen"] < VIDEO_FRAMES, summary  # counted skips
    assert summary["seen"] + summary["skipped"] <= VIDEO_FRAMES, summary
    assert summary["seen"] > VIDEO_FRAMES // 2, summary  # the intact frames still decoded
    frames, top, last = _rows(buffer)
    assert frames == summary["kept"] == summary["waiting"] == top == last > 0
    # the first 60% holds frame data but not the index at the end: it cannot be opened
    _one_error(short, 1, repr(str(cut)), "cannot open video source")


def _linear(version: str, embedding_name: str = "embedding") -> tuple[bytes, ModelMetadata]:
    """A linear contract-shaped model on 32x32 input (two classes) and its metadata."""
    rng = np.random.default_rng(0)
    meta = ModelMetadata(
        model_version=version, class_names=("a", "b"), embedding_dim=8, input_size=(32, 32),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    data = linear_model(
        rng.standard_normal((3 * 32 * 32, 8)).astype(np.float32) / 55,
        np.zeros(8, np.float32), rng.standard_normal((8, 2)).astype(np.float32),
        np.zeros(2, np.float32), meta, activation="l2", embedding_name=embedding_name,
    )  # fmt: skip
    return data, meta


def _nan_model(path: Path) -> Path:
    """A contract-shaped model whose embedding is ``(linear features) * NaN``: NaN at run time,
    while its logits stay finite."""
    data, meta = _linear("nan-1", embedding_name="raw")
    proto = onnx.load_from_string(data)
    graph = proto.graph
    graph.initializer.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan"))
    graph.node.append(helper.make_node("Mul", ["raw", "nan"], ["embedding"]))
    (raw,) = [o for o in graph.output if o.name == "raw"]
    raw.name = "embedding"
    path.write_bytes(finish_model(proto, meta))
    return path


def test_models_that_break_the_contract(tmp_path: Path, model: Path) -> None:
    not_onnx, empty = tmp_path / "notes.onnx", tmp_path / "empty.onnx"
    not_onnx.write_text("this is not a model\n")
    empty.write_bytes(b"")
    feat = tmp_path / "feat.onnx"
    feat.write_bytes(_linear("feat-1", embedding_name="feat")[0])
    nan = _nan_model(tmp_path / "nan.onnx")
    frames = ["--max-frames", 48]
    done = _cli_many(
        [
            (_run_args(VIDEO, not_onnx, tmp_path / "a.db", *frames), None),
            (_run_args(VIDEO, empty, tmp_path / "b.db", *frames), None),
            (_run_args(VIDEO, feat, tmp_path / "c.db", *frames), None),
            (_run_args(VIDEO, feat, tmp_path / "d.db", *frames, "--embedding-output", "feat",
                       "--logits-output", "logits"), None),
            (_run_args(VIDEO, nan, tmp_path / "e.db", *frames, "--log-level", "ERROR"), None),
        ]
    )  # fmt: skip
    _one_error(done[0], 1, str(not_onnx), "not a valid ONNX model")
    _one_error(done[1], 1, str(empty), "empty")
    _one_error(done[2], 1, "no output 'embedding'", "feat")
    mapped = _ok_run(done[3])
    assert mapped["seen"] == 48 and mapped["kept"] > 0
    assert _rows(tmp_path / "d.db")[0] == mapped["kept"]
    broken = _ok_run(done[4])
    gated = sum(
        v for k, v in broken.items() if k.startswith("dropped.") and k != "dropped.nonfinite_output"
    )
    assert broken["seen"] == 48 and broken["kept"] == 0, broken
    assert broken["dropped.nonfinite_output"] == 48 - gated > 0, broken
    assert _rows(tmp_path / "e.db")[0] == 0


def _frame_ids(buffer: Path) -> dict[int, str]:
    with sqlite3.connect(f"file:{buffer}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT device_seq, frame_id FROM frames").fetchall())


def test_a_refused_token_exits_3_and_keeps_the_buffered_frames(tmp_path: Path, model: Path) -> None:
    data, buffer, other = tmp_path / "data", tmp_path / "edge.db", tmp_path / "other.db"
    token = create_token(data, "cam-a")
    server = ServeProcess(data, tmp_path / "logs")
    server.start()
    try:
        offline = _ok_run(_cli(*_run_args(VIDEO, model, buffer, "--max-frames", 64)))
        kept = _frame_ids(buffer)
        assert len(kept) == offline["kept"] > 0
        for suffix in ("", "-wal"):  # a second device's buffer holding the same frames
            if Path(f"{buffer}{suffix}").exists():
                shutil.copyfile(f"{buffer}{suffix}", f"{other}{suffix}")
        # the same 64 frames again: the run resumes past them, so only the uploader has work
        online = ["--server", server.base, "--max-frames", 64, "--log-level", "ERROR"]
        made_up, other_device, no_token = _cli_many(
            [
                (_run_args(VIDEO, model, buffer, *online, "--device-id", "cam-a"),
                 {"CURATOR_EDGE_TOKEN": "cur_" + "x" * 43}),
                (_run_args(VIDEO, model, other, *online, "--device-id", "cam-b", "--token", token),
                 None),
                (_run_args(VIDEO, model, tmp_path / "none.db", *online, "--device-id", "cam-a"),
                 None),
            ]
        )  # fmt: skip
    finally:
        server.stop()
    line = _one_error(made_up, 3, "401", server.base, after_logs=True)
    assert "x" * 43 not in line  # the token is never printed
    line = _one_error(other_device, 3, "403", server.base, after_logs=True)
    assert token not in line
    _one_error(no_token, 1, "--server needs --token")
    assert not (tmp_path / "none.db").exists()
    for path in (buffer, other):
        assert _frame_ids(path) == kept, path  # nothing acked, dropped or lost
        assert _rows(path) == (len(kept), max(kept), max(kept))
    status = json.loads(_cli("status", "--buffer", buffer, "--json").stdout)
    assert status["uploaded"] == 0 and status["frames"] == len(kept) and status["claimed"] == 0


def test_settings_layering_flag_over_environment_over_toml(tmp_path: Path, model: Path) -> None:
    toml = tmp_path / "edge.toml"
    toml.write_text("max_per_hour = 5\nkeep_ratio = 1.0\nduplicate_similarity = 1.5\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("keep_ratio = 0.5\nkeep_ration = 0.5\n")
    env_cap = {"CURATOR_EDGE_MAX_PER_HOUR": "3"}
    frames = ["--max-frames", 48]
    done = _cli_many(
        [
            (_run_args(VIDEO, model, tmp_path / "a.db", *frames, "--config", toml), None),
            (_run_args(VIDEO, model, tmp_path / "b.db", *frames, "--config", toml), env_cap),
            (_run_args(VIDEO, model, tmp_path / "c.db", *frames, "--max-per-hour", 2),
             {**env_cap, "CURATOR_EDGE_CONFIG": str(toml)}),
            (_run_args(VIDEO, model, tmp_path / "d.db", *frames, "--keep-ratio", 2), None),
            (_run_args(VIDEO, model, tmp_path / "e.db", *frames),
             {"CURATOR_EDGE_KEEP_RATIO": "0"}),
            (_run_args(VIDEO, model, tmp_path / "f.db", *frames, "--config", bad), None),
        ]
    )  # fmt: skip
    kept = [_ok_run(d)["kept"] for d in done[:3]]
    assert kept == [5, 3, 2]  # TOML alone, env over TOML, flag over env over TOML
    assert [_ok_run(d)["dropped.hourly_cap"] for d in done[:3]] == [43, 45, 46]
    _one_error(done[3], 1, "keep_ratio", "2")
    _one_error(done[4], 1, "keep_ratio")
    _one_error(done[5], 1, "keep_ration")


def _wait_for(condition: object, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"exited with {proc.returncode} before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def _metrics(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return {}
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(curator_edge_[a-z_]+) (\S+)$", text, re.MULTILINE)
    }


def _start_logged(args: Sequence[object], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_selector", *map(str, args)], cwd=ROOT, env=_env(),
            stdout=out, stderr=out,
        )  # fmt: skip


def _terminate(proc: subprocess.Popen[bytes], within: float) -> int | None:
    """SIGTERM ``proc``; its exit status, or None (and SIGKILLed) when not out ``within`` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def _kept_logged(log: Path) -> bool:
    return '"frame kept"' in log.read_text(errors="replace")


def test_sigterm_exits_promptly_when_capture_is_slower_than_decoding(tmp_path: Path) -> None:
    frames = tmp_path / "frames"  # tiny images decode far faster than each kept frame is written
    frames.mkdir()
    for i in range(64):
        (frames / f"{i:03d}.jpg").write_bytes(jpeg(i, (32, 32)))
    model = write_linear_onnx(tmp_path / "m.onnx", size=32)
    log = tmp_path / "run.log"
    proc = _start_logged(
        _run_args(frames, model, tmp_path / "edge.db", "--loop", "--batch-size", 8,
                  "--keep-ratio", 1, "--duplicate-similarity", 1.5,
                  "--log-level", "DEBUG", "--log-format", "json"),
        log,
    )  # fmt: skip
    try:
        _wait_for(lambda: _kept_logged(log), 30, "frame kept", proc)
    finally:
        status = _terminate(proc, within=5)
    assert status == 0, f"still running 5 s after SIGTERM:\n{log.read_text()[-2000:]}"
    assert _summary(log.read_text())["kept"] > 0


def test_sigterm_saves_and_the_next_run_resumes_metrics_on_the_way(
    tmp_path: Path, model: Path
) -> None:
    buffer, log, port = tmp_path / "edge.db", tmp_path / "run.log", free_port()
    proc = _start_logged(
        _run_args(VIDEO, model, buffer, "--loop", "--max-frames", 100_000, "--batch-size", 8,
                  "--keep-ratio", 0.2, "--metrics-port", port,
                  "--log-level", "DEBUG", "--log-format", "json"),
        log,
    )  # fmt: skip
    metrics: dict[str, float] = {}
    try:
        _wait_for(lambda: _kept_logged(log), 30, "frame kept", proc)
        _wait_for(lambda: _metrics(port).get("curator_edge_frames_seen_total", 0) >= 24, 10,
                  "metrics", proc)  # fmt: skip
        metrics = _metrics(port)
    finally:
        sent = time.monotonic()
        status = _terminate(proc, within=10)
    stopped_in = time.monotonic() - sent
    text = log.read_text()
    assert status == 0 and stopped_in < 5, (status, stopped_in, text[-3000:])
    assert "Traceback" not in text
    assert metrics["curator_edge_frames_kept_total"] >= 1
    assert metrics["curator_edge_buffer_bytes"] > 0 and metrics["curator_edge_buffer_frames"] >= 1
    assert metrics["curator_edge_buffer_max_bytes"] == 512 * 1024 * 1024
    first = _summary(text)
    assert 0 < first["seen"] < VIDEO_FRAMES - 16, first  # the signal, not the source, ended it
    assert first["seen"] >= metrics["curator_edge_frames_seen_total"]
    assert _rows(buffer)[0] == first["waiting"] == first["kept"]
    # same buffer and source, one pass: the frames up to the saved position are not seen again
    again = _ok_run(_cli(*_run_args(VIDEO, model, buffer, "--keep-ratio", 0.2)))
    assert again["seen"] == VIDEO_FRAMES - first["seen"], (first, again)
    frames, top, last = _rows(buffer)
    assert frames == top == last == first["kept"] + again["kept"]


def test_status_of_a_missing_buffer_and_of_a_used_one(tmp_path: Path, model: Path) -> None:
    buffer = tmp_path / "edge.db"
    missing, ran = _cli_many(
        [
            (["status", "--buffer", tmp_path / "nope.db"], None),
            (_run_args(VIDEO, model, buffer, "--max-frames", 64, "--keep-ratio", 0.5), None),
        ]
    )
    _one_error(missing, 1, "no buffer file", str(tmp_path / "nope.db"))
    assert not (tmp_path / "nope.db").exists()
    summary = _ok_run(ran)
    as_json, as_text = _cli_many(
        [(["status", "--buffer", buffer, "--json"], None), (["status", "--buffer", buffer], None)]
    )
    for done in (as_json, as_text):
        _no_traceback(done)
        assert done.returncode == 0, done.stderr
    status = json.loads(as_json.stdout)
    frames, top, last = _rows(buffer)
    assert status["frames"] == frames == summary["kept"] > 0
    assert status["last_device_seq"] == last == top
    assert status["uploaded"] == 0 and status["evicted"] == 0 and status["journal_mode"] == "wal"
    assert f"frames waiting: {frames} " in as_text.stdout
    assert f"last device_seq: {last}" in as_text.stdout
