"""make_index / load_index, and that importing curator.index leaves faiss unimported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.index import INDEX_KINDS, BruteForceIndex, FaissIndex, load_index, make_index


@pytest.mark.parametrize(
    ("kind", "cls", "structure"),
    [
        ("brute", BruteForceIndex, None),
        ("flat", FaissIndex, "flat"),
        ("hnsw", FaissIndex, "hnsw"),
        ("auto", FaissIndex, "flat"),
    ],
)
def test_make_index_builds_each_kind(kind: str, cls: type, structure: str | None) -> None:
    index = make_index(kind, 16)
    assert type(index) is cls and index.dim == 16 and len(index) == 0
    if structure is not None:
        assert isinstance(index, FaissIndex) and index.structure == structure


def test_make_index_passes_options_to_faiss() -> None:
    index = make_index("hnsw", 8, m=8, ef_search=12)
    assert isinstance(index, FaissIndex)
    assert index.description == "HNSW8,efConstruction=160,efSearch=12"


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'ivfpq'.*'auto', 'brute', 'flat', 'hnsw'"):
        make_index("ivfpq", 8)
    assert INDEX_KINDS == ("auto", "brute", "flat", "hnsw")


def test_brute_takes_no_options() -> None:
    with pytest.raises(ValueError, match="no options"):
        make_index("brute", 8, m=8)


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_load_index_recognises_each_saved_kind(kind: str, tmp_path: Path) -> None:
    index = make_index(kind, 4)
    x = np.random.default_rng(0).standard_normal((20, 4))
    index.add(np.arange(20), x)
    index.save(tmp_path / "saved")
    loaded = load_index(tmp_path / "saved")
    assert type(loaded) is type(index) and len(loaded) == 20
    np.testing.assert_array_equal(loaded.search(x, 3)[1], index.search(x, 3)[1])


def test_load_index_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a saved"):
        load_index(tmp_path / "notes.txt")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_index(tmp_path / "missing")


def test_importing_curator_index_does_not_import_faiss() -> None:
    code = "import sys, curator.index; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
