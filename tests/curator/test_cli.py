from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator import __version__
from curator.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_has_help_text() -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    assert "demo" in commands
    for name, sub in commands.items():
        assert sub.description, f"command {name} has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_bad_usage_exits_2_with_a_one_line_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "curator.cli", "demo", "--keep-ratio", "lots"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "invalid float value: 'lots'" in out.stderr
    assert "Traceback" not in out.stderr


def test_curator_errors_become_one_line_and_exit_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "curator.cli",
            "demo",
            "--keep-ratio",
            "1.5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("curator: error: keep_ratio")
    assert "Traceback" not in out.stderr


def test_every_nested_command_and_option_has_help_text() -> None:
    model = _subcommands(build_parser())["model"]
    actions = _subcommands(model)
    assert "init" in actions
    for name, sub in actions.items():
        assert sub.description, f"command model {name} has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"model {name} {action.option_strings} has no help"


def _model_init(out: object, *extra: str) -> list[str]:
    return [
        "model",
        "init",
        "--arch",
        "tiny_cnn",
        "--input-size",
        "28",
        "--channels",
        "gray",
        "--version",
        "tiny-0",
        "--out",
        str(out),
        *extra,
    ]


def test_model_init_exports_a_contract_model_and_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    import hashlib

    from curator.inference import ModelMetadata, OnnxModel

    path = tmp_path / "model.onnx"
    argv = _model_init(path, "--classes", "cat, dog,bird", "--embedding-dim", "16")
    assert main([*argv, "--mean", "0.5", "--std", "0.25"]) == 0
    line = capsys.readouterr().out.strip()
    data = path.read_bytes()
    assert line == (
        f"{path} version=tiny-0 sha256={hashlib.sha256(data).hexdigest()} size={len(data)}"
    )
    model = OnnxModel(path)
    assert model.metadata == ModelMetadata(
        "tiny-0", ("cat", "dog", "bird"), 16, (28, 28), channels="gray", mean=(0.5,), std=(0.25,)
    )
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32)
    pred = model.run(x)
    assert pred.logits is not None and pred.logits.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0, atol=1e-5)

    # the same seed gives the same bytes; another seed other weights
    again, other = tmp_path / "again.onnx", tmp_path / "other.onnx"
    assert main([*_model_init(again, "--num-classes", "3", "--embedding-dim", "16")]) == 0
    assert (
        main([*_model_init(other, "--num-classes", "3", "--embedding-dim", "16", "--seed", "1")])
        == 0
    )
    capsys.readouterr()
    assert OnnxModel(again).class_names == ("class_0", "class_1", "class_2")
    assert OnnxModel(again).sha256 != OnnxModel(other).sha256
    third = tmp_path / "third.onnx"
    assert main([*_model_init(third, "--num-classes", "3", "--embedding-dim", "16")]) == 0
    assert third.read_bytes() == again.read_bytes()


def test_model_init_default_is_a_224_mobilenet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from curator.inference import OnnxModel

    path = tmp_path / "m.onnx"
    assert main(["model", "init", "--num-classes", "2", "--version", "m0", "--out", str(path)]) == 0
    model = OnnxModel(path)
    assert (model.input_size, model.embedding_dim, model.metadata.channels) == (
        (224, 224),
        128,
        "rgb",
    )
    assert 4_000_000 < path.stat().st_size < 8_000_000  # ~1.65 M float32 parameters


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-classes", "0"], "argument --num-classes: must be a positive integer, got '0'"),
        (["--classes", "a,,b"], "argument --classes: class names must be non-empty"),
        (["--classes", "a,a"], "argument --classes: class names must be unique"),
        (["--classes", "a", "--num-classes", "2"], "not allowed with argument"),
        ([], "one of the arguments --classes --num-classes is required"),
        (["--num-classes", "2", "--mean", "x"], "argument --mean: must be comma-separated numbers"),
        (["--num-classes", "2", "--arch", "resnet"], "argument --arch: invalid choice: 'resnet'"),
    ],
)
def test_model_init_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(_model_init(tmp_path / "m.onnx", *extra))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-classes", "2", "--mean", "0.1,0.2"], "mean must hold 1 value(s), one per channel"),
        (["--num-classes", "2", "--std", "0"], "std must be positive"),
        (["--num-classes", "2", "--input-size", "4"], "input_size 4 is too small for tiny_cnn"),
    ],
)
def test_model_init_bad_values_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pytest.importorskip("torch")
    assert main(_model_init(tmp_path / "m.onnx", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("curator model init: error: ")
    assert message in err[0]
    assert not (tmp_path / "m.onnx").exists()


def test_model_init_unwritable_out_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "missing-dir" / "m.onnx"
    assert main(_model_init(out, "--num-classes", "2")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"curator: error: cannot write {str(out)!r}")
