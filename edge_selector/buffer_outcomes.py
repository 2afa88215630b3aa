"""What the buffer tells its callers: :class:`AddOutcome`, :class:`BufferStats` and
:class:`FrameTooLargeError`. :mod:`edge_selector.buffer` re-exports all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from curator.errors import InvalidInputError

__all__ = ["AddOutcome", "BufferStats", "FrameTooLargeError"]


class FrameTooLargeError(InvalidInputError):
    """A frame whose cost exceeds what the buffer's cap can ever hold (a configuration error)."""


@dataclass(frozen=True)
class AddOutcome:
    """What :meth:`edge_selector.buffer.FrameBuffer.add` did.

    Attributes:
        device_seq: the stored frame's sequence number, or None when it was dropped.
        evicted: sequence numbers of frames evicted to make room (lowest value first).
        dropped: why the frame was not stored: ``"low_value"`` (the budget is full and it is
            worth less than what could be evicted) or ``"disk_full"`` (the filesystem has no
            room for it, even after evicting what is worth less); None when stored.
    """

    device_seq: int | None
    evicted: tuple[int, ...] = ()
    dropped: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the frame is now in the buffer (committed, durable)."""
        return self.device_seq is not None


@dataclass(frozen=True)
class BufferStats:
    """Counts since the file was created (``claimed`` is this process's)."""

    frames: int
    claimed: int
    stored_bytes: int
    file_bytes: int
    max_bytes: int
    budget_bytes: int
    last_device_seq: int
    evicted: int
    uploaded: int
    disk_full: int
    dropped: dict[str, int]
