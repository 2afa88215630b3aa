"""The fleet demo's parts that need no processes: configuration, simulated cameras, the
selector summary, the stand-in labeler and the report. The whole demo runs end to end in
tests/e2e/test_e2e_demo.py."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curator.cli import build_parser
from curator.demo import QUICK, DemoConfig, DemoReport, FleetRound
from curator.demo.fleet import SelectorRun, parse_summary
from curator.demo.labeling import Oracle
from curator.demo.report import PLOTS, summary_rows, write_report
from curator.demo.streams import StreamPool, class_mix, make_round, write_frames
from curator.demo.uploads import encode_jpeg
from curator.errors import CuratorError, InvalidInputError


def _images(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize(
    ("field", "value"),
    [("devices", 0), ("rounds", -1), ("keep_ratio", 0.0), ("keep_ratio", 1.5),
     ("common_classes", 10), ("seed_labels", 5), ("fps", 0.0), ("label_budget", True)],
)  # fmt: skip
def test_config_refuses_a_bad_value_and_names_it(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=field):
        DemoConfig(**{field: value})  # type: ignore[arg-type]


def test_config_refuses_more_objects_than_fashion_mnist_has() -> None:
    with pytest.raises(InvalidInputError, match="60,000"):
        DemoConfig(devices=10, rounds=10, objects=600)


def test_quick_applies_the_quick_sizes_and_keeps_the_rest() -> None:
    config = DemoConfig(seed=7, out_dir=Path("x")).quick()
    assert {k: getattr(config, k) for k in QUICK} == QUICK
    assert (config.seed, config.out_dir) == (7, Path("x"))
    assert json.loads(json.dumps(config.as_dict()))["out_dir"] == "x"


def test_every_config_field_is_a_demo_flag_with_help() -> None:
    parser = build_parser()
    demo = parser._subparsers._group_actions[0].choices["demo"]  # type: ignore[union-attr]
    flags = {a.dest: a for a in demo._actions}
    for field in dataclasses.fields(DemoConfig):
        assert field.name in flags, field.name
        assert flags[field.name].help, field.name
    args = parser.parse_args(["demo", "--devices", "3", "--keep-ratio", "0.02", "--out", "o"])
    assert (args.devices, args.keep_ratio, args.out_dir) == (3, 0.02, Path("o"))


def test_class_mix_differs_per_camera_and_drifts_per_round() -> None:
    config = DemoConfig()
    mixes = {(d, r): class_mix(config, d, r) for d in range(4) for r in range(3)}
    for mix in mixes.values():
        assert mix.sum() == pytest.approx(1.0)
        top = np.sort(mix)[-config.common_classes :]
        assert top.sum() == pytest.approx(config.common_share)
    assert not np.allclose(mixes[0, 0], mixes[1, 0])  # another camera, another mix
    assert not np.allclose(mixes[0, 0], mixes[0, 1])  # drift


def test_the_fleet_shares_all_common_classes_but_one_and_they_move_each_round() -> None:
    config = DemoConfig(first_common_class=7, common_classes=3)

    def common(device: int, round_index: int) -> set[int]:
        mix = class_mix(config, device, round_index)
        return set(np.flatnonzero(mix > (1 - config.common_share)).tolist())

    assert common(0, 0) == {7, 8, 9}
    assert common(1, 0) == {7, 8, 0}
    assert common(3, 2) == {9, 0, 4}


def test_stream_pool_shows_each_object_once_and_follows_the_mix() -> None:
    _, labels = _images(2000)
    pool = StreamPool(labels, np.arange(2000), np.random.default_rng(0))
    mix = np.zeros(10)
    mix[[2, 5]] = 0.5
    drawn = pool.draw(mix, 150)
    assert len(set(drawn.tolist())) == 150
    assert set(labels[drawn].tolist()) == {2, 5}
    rest = pool.draw(np.full(10, 0.1), 2000 - 150)
    assert not set(rest.tolist()) & set(drawn.tolist())
    with pytest.raises(ValueError, match="ran out"):
        pool.draw(np.full(10, 0.1), 1)


def test_a_camera_round_holds_each_object_for_near_duplicate_frames() -> None:
    images, labels = _images()
    config = DemoConfig(objects=20, hold=5)

    def film(seed: int):  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(seed)
        pool = StreamPool(labels, np.arange(len(labels)), rng)
        return make_round(config, images, labels, pool, 1, 0, rng)

    cam = film(3)
    assert cam.frames.shape == (100, 28, 28) and cam.frames.dtype == np.uint8
    assert (cam.labels == labels[cam.objects]).all()
    assert (cam.objects.reshape(20, 5) == cam.objects[::5, None]).all()
    frames = cam.frames.astype(float)
    same = np.abs(frames[0] - frames[1]).mean()
    other = np.abs(frames[0] - frames[5]).mean()
    assert 0 < same < other / 2  # frames of one object differ a little, objects a lot
    again = film(3)
    assert (again.frames == cam.frames).all()


def test_write_frames_writes_png_files_in_capture_order(tmp_path: Path) -> None:
    images, _ = _images(3)
    paths = write_frames(images, tmp_path / "cam")
    assert [p.name for p in paths] == ["000000.png", "000001.png", "000002.png"]
    assert (np.asarray(Image.open(paths[2])) == images[2]).all()


def test_the_oracle_knows_a_frame_from_its_jpeg() -> None:
    images, labels = _images(300)
    oracle = Oracle()
    oracle.add(images[:150], labels[:150])
    oracle.add(images[150:], labels[150:])
    for i in (0, 149, 150, 299):
        assert oracle.label_of(encode_jpeg(images[i])) == labels[i]
    big = io.BytesIO()
    Image.fromarray(np.kron(images[7], np.ones((2, 2), np.uint8))).save(big, format="PNG")
    assert oracle.label_of(big.getvalue()) == labels[7]


SUMMARY = """\
2026-11-22 10:10:01 INFO edge_selector.run: selector started
frames: 300 seen, 12 kept (4.0%), 0 corrupt skipped, 207.1 frames/s
dropped: below_threshold 229, near_duplicate 59
buffer: 0 frames waiting, 0 evicted
upload: 15 acked (2 duplicates), 0 rejected, 0 transport errors
"""


def test_parse_summary_reads_the_selectors_closing_lines() -> None:
    run = parse_summary(SUMMARY)
    assert run == SelectorRun(12 + 288, 12, 15, 2, {"below_threshold": 229, "near_duplicate": 59})
    offline = parse_summary("frames: 10 seen, 1 kept (10.0%)\ndropped: none\n")
    assert (offline.uploaded, offline.dropped) == (0, {})
    total = run + offline
    assert (total.seen, total.kept, total.dropped) == (310, 13, run.dropped)
    with pytest.raises(CuratorError, match="no summary"):
        parse_summary("Traceback ...\n")


def _report() -> DemoReport:
    rounds: dict[str, list[FleetRound]] = {"curated": [], "random": []}
    for name, acc in (("curated", 0.7), ("random", 0.6)):
        for r in (1, 2):
            rounds[name].append(
                FleetRound(round=r, frames_seen=1000, frames_kept=40, frames_uploaded=40,
                           duplicates_dropped=5, accepted=35, labeled=20, bytes_uploaded=9000,
                           raw_bytes=784_000, model_version=f"ft-{name}-{r}",
                           accuracy=acc + r / 100)
            )  # fmt: skip
    seed = {"images": 300, "labels": {"curated": 300, "random": 300},
            "accuracy": {"curated": 0.5, "random": 0.5}}  # fmt: skip
    return DemoReport(config={"seed": 0}, seed=seed, rounds=rounds, offline=["cam-1", "cam-2"])


def test_totals_add_up_the_rounds() -> None:
    report = _report()
    report.finish(12.0)
    cur = report.totals["curated"]
    assert (cur["frames_seen"], cur["frames_uploaded"], cur["labeled"]) == (2000, 80, 40)
    assert cur["upload_share"] == pytest.approx(0.04)
    assert cur["final_accuracy"] == pytest.approx(0.72)
    assert cur["final_model_version"] == "ft-curated-2"
    rows = {row[0]: row[1:] for row in summary_rows(report.as_dict())}
    assert rows["uploaded / seen"] == ("4.00%", "4.00%")
    assert rows["final test accuracy"] == ("0.7200", "0.6200")


def test_write_report_writes_json_html_and_the_plots(tmp_path: Path) -> None:
    report = _report()
    report.finish(12.0)
    data = write_report(report, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == data
    page = (tmp_path / "report.html").read_text()
    for plot in PLOTS:
        assert (tmp_path / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="plots/{plot}"' in page
    assert "ft-curated-2" in page and "0.7200" in page
