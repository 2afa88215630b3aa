"""``ImageChecker``: the same answers in the calling thread and in worker processes, and a
worker that dies costs no answer."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from testkit.images import CRASH, SLOW, check_or_crash

from curator.errors import InvalidInputError
from server.errors import Unavailable
from server.images import ImageCheck, ImageChecker
from server.images.checker import check_images

LIMITS = {"max_pixels": 10_000_000, "max_bytes": 1 << 20}


@pytest.fixture
def batch(jpeg: bytes, png: bytes) -> list[ImageCheck]:
    """Good and bad images, in a known order."""
    return [
        (jpeg, "jpeg", (96, 64)),
        (jpeg[: len(jpeg) // 2], "jpeg", (96, 64)),  # truncated
        (png, "png", (96, 64)),
        (png, "jpeg", (96, 64)),  # declared as the wrong format
        (jpeg, "jpeg", (64, 96)),  # declared the wrong size
        (b"not an image at all", "jpeg", (96, 64)),
    ]


@pytest.fixture
def checker() -> Iterator[ImageChecker]:
    checker = ImageChecker(workers=2, check=check_or_crash, **LIMITS)
    yield checker
    checker.close()


def _worker_pids(checker: ImageChecker) -> list[int]:
    pool = checker._pool
    assert pool is not None
    return list(pool._processes)  # type: ignore[attr-defined]


def test_workers_answer_as_the_calling_thread_does(
    batch: list[ImageCheck], checker: ImageChecker
) -> None:
    here = ImageChecker(workers=0, **LIMITS).reasons(batch)
    assert here == check_images(batch, **LIMITS)
    assert here[0] is None and here[2] is None
    assert [r.split(":")[0] for r in here[1:2] + here[3:]] == [  # type: ignore[union-attr]
        "truncated",
        "format_mismatch",
        "size_mismatch",
        "not_an_image",
    ]
    assert checker.reasons(batch) == here
    assert checker.reasons(batch[::-1]) == here[::-1]  # order is kept across the parts


def test_an_image_that_kills_its_worker_is_rejected_and_nothing_else_is(
    batch: list[ImageCheck], checker: ImageChecker
) -> None:
    expected = check_images(batch, **LIMITS)
    hostile: ImageCheck = (CRASH + b"\xff\xd8", "jpeg", (96, 64))
    reasons = checker.reasons([*batch[:3], hostile, *batch[3:]])
    assert reasons[3] is not None and reasons[3].startswith("corrupt:")
    assert reasons[:3] + reasons[4:] == expected
    assert checker.reasons(batch) == expected  # a new pool took over


def test_an_image_that_kills_the_shared_workers_costs_other_requests_nothing(
    batch: list[ImageCheck], checker: ImageChecker
) -> None:
    """A request whose image is on the pool when another request's image kills it gets its
    own answers, not ``corrupt``."""
    innocent: list[ImageCheck] = [(SLOW + b"not an image", "jpeg", (96, 64)), *batch]
    expected = check_images(innocent, **LIMITS)
    got: list[list[str | None]] = []
    other = threading.Thread(target=lambda: got.append(checker.reasons(innocent)))
    other.start()
    time.sleep(0.5)  # the slow image is on a worker now
    hostile = checker.reasons([(CRASH, "jpeg", (96, 64)), (SLOW + b"x", "jpeg", (96, 64))])
    other.join(timeout=60)
    assert hostile[0] is not None and hostile[0].startswith("corrupt:")
    assert hostile[1] is not None and hostile[1].startswith("not_an_image")
    assert got == [expected]


def test_a_worker_killed_between_batches_costs_no_answer(
    batch: list[ImageCheck], checker: ImageChecker
) -> None:
    expected = checker.reasons(batch)
    for pid in _worker_pids(checker):
        os.kill(pid, signal.SIGKILL)
    assert checker.reasons(batch) == expected
    assert checker.reasons(batch) == expected


def test_an_empty_batch_starts_no_worker(checker: ImageChecker) -> None:
    assert checker.reasons([]) == []
    assert checker._pool is None


def test_a_closed_checker_refuses_work(batch: list[ImageCheck], checker: ImageChecker) -> None:
    checker.reasons(batch)
    checker.close()
    checker.close()  # idempotent
    with pytest.raises(Unavailable, match="closed"):
        checker.reasons(batch)


@pytest.mark.parametrize("workers", [-1, 1.5, True, "2"])
def test_workers_must_be_a_count(workers: object) -> None:
    with pytest.raises(InvalidInputError, match="workers"):
        ImageChecker(workers=workers, **LIMITS)  # type: ignore[arg-type]
