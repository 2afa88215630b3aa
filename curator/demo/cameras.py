"""The curated fleet's cameras: one ``edge-selector run`` process per camera and round.

Each process replays the camera's PNG folder at ``fps``, keeps ``keep_ratio`` of the frames by
value (uncertainty x novelty), buffers them in its SQLite file and uploads them with its device
token. The buffer and the downloaded models live in the camera's folder across rounds, so a
camera starts each round with the newest model it installed and polls for a newer one every
second. The camera that is offline in a round captures its first ``offline_share`` of frames
with a server URL nothing answers on; what it kept waits in the buffer and is uploaded when the
second part runs with the real URL.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from curator.demo.config import DemoConfig
from curator.demo.fleet import (
    FleetServer,
    ProcessGroup,
    SelectorRun,
    closed_port_url,
    command,
    parse_summary,
)
from curator.errors import CuratorError

__all__ = ["CameraPart", "run_cameras", "selector_args"]


@dataclass(frozen=True)
class CameraPart:
    """A stretch of one camera's round: its frames' folder and whether its link is up."""

    device_id: str
    folder: Path
    online: bool


def selector_args(
    config: DemoConfig, part: CameraPart, server_url: str, model: Path, device_dir: Path
) -> list[str]:
    """The ``edge-selector run`` command line for one part of a camera's round."""
    return [
        *command("edge-selector", "edge_selector"), "run",
        "--source", str(part.folder), "--fps", str(config.fps),
        "--model", str(model), "--threads", "1", "--batch-size", "32",
        "--buffer", str(device_dir / "buffer.db"), "--model-dir", str(device_dir / "models"),
        "--keep-ratio", str(config.keep_ratio),
        # Fashion-MNIST objects lie on a black background: loosen the dark and blur gates
        "--min-brightness", "0.01", "--min-sharpness", "0",
        "--server", server_url if part.online else closed_port_url(),
        "--device-id", part.device_id, "--model-poll-s", "1",
        "--drain-timeout-s", "60" if part.online else "0.5",
        "--progress", "off", "--log-format", "text",
    ]  # fmt: skip


def run_cameras(
    group: ProcessGroup,
    config: DemoConfig,
    fleet: FleetServer,
    parts: list[list[CameraPart]],
    model: Path,
    root: Path,
    timeout_s: float = 600.0,
) -> dict[str, SelectorRun]:
    """Run every camera's parts in order, the cameras side by side; wait for all.

    Args:
        parts: per camera, its parts in capture order.
        model: the seed ONNX file (``--model``); cameras move on to what they downloaded.
        root: the fleet's folder (``devices/<id>/`` and ``logs/`` go under it).

    Returns:
        Per device id, the summaries of its runs added up.

    Raises:
        CuratorError: a selector failed (its log's end is in the message).
    """
    pending = {camera[0].device_id: list(camera) for camera in parts if camera}
    totals = {device: SelectorRun() for device in pending}
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    deadline = time.monotonic() + timeout_s
    env = dict(os.environ)
    while pending or running:
        for device in list(pending):
            if device in running:
                continue
            part = pending[device].pop(0)
            if not pending[device]:
                del pending[device]
            env["CURATOR_EDGE_TOKEN"] = fleet.device_tokens[device]
            round_name = part.folder.parent.parent.name  # streams/<round>/<device>/<part>
            log = root / "logs" / f"{device}-{round_name}-{part.folder.name}.log"
            device_dir = root / "devices" / device
            device_dir.mkdir(parents=True, exist_ok=True)
            args = selector_args(config, part, fleet.base_url, model, device_dir)
            running[device] = (group.start(args, log, dict(env)), log)
        for device, (proc, log) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            text = log.read_text(errors="replace")
            if code != 0:
                raise CuratorError(f"edge-selector for {device} exited {code}:\n{text[-1500:]}")
            totals[device] = totals[device] + parse_summary(text)
            group.stop(proc)
            del running[device]
        if time.monotonic() > deadline:
            raise CuratorError(f"cameras still running after {timeout_s} s: {sorted(running)}")
        time.sleep(0.1)
    return totals
