"""Helpers for the reliability tests (no tests here).

- ``FaultyRunner``: the ScriptedRunner (labels = red // 13) that raises on a poisoned frame
  (uniformly magenta), so one inference exception can be injected in a stream over DDS.
- ``running_node(...)``: a SegmenterNode process with a FaultyRunner (or the real runners) and a
  connected ``RosClient``; killed by PID on exit. Run as a script, this file starts the node:
  ``python test/test_reliability_helpers.py [--delay S] [--autostart] [--real] --ros-args ...``
- ``diagnostics(client)`` / ``settled_counts(client)``: read the node's /diagnostics.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ros_helpers import RosClient, ScriptedRunner, stop_process, wait_for  # noqa: E402

POISON = (255, 0, 255)  # a frame of this colour makes FaultyRunner raise


def poisoned_frame(h: int = 48, w: int = 80) -> np.ndarray:
    return np.full((h, w, 3), POISON, np.uint8)


class FaultyRunner(ScriptedRunner):
    def _check(self, image):
        if tuple(int(v) for v in image[0, 0]) == POISON and (image == image[0, 0]).all():
            raise RuntimeError("injected inference fault")

    def key_frame(self, image):
        self._check(image)
        return super().key_frame(image)

    def propagate(self, key, image):
        self._check(image)
        return super().propagate(key, image)


def node_args(*ros_args: str, delay_s: float = 0.0, autostart: bool = False, real: bool = False) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--delay", str(delay_s)]
    cmd += ["--autostart"] if autostart else []
    cmd += ["--real"] if real else []
    return cmd + ["--ros-args", *ros_args]




@contextlib.contextmanager
def running_node(log_path: Path, *ros_args: str, delay_s: float = 0.0, autostart: bool = True,
                 real: bool = False, state: str = "active"):
    """Start the node, wait for ``state``; yields (client, proc). ``client.log()`` reads its log."""
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(node_args(*ros_args, delay_s=delay_s, autostart=autostart, real=real),
                                stdout=f, stderr=subprocess.STDOUT)
    client = RosClient()
    client.log = lambda: log_path.read_text(errors="replace")
    try:
        wait_for(lambda: client.get_state() == state, 60, f"node {state}")
        yield client, proc
    finally:
        client.close()
        stop_process(proc)


def diagnostics(client, after: int = 0, topic: str = "/diagnostics"):
    """(segmentation values dict, segmentation status, input status) of the newest /diagnostics."""
    from mpvss_ros.ros.diagnostics import values_of
    msgs = client.messages(topic)[after:]
    if not msgs:
        return None
    seg, inp = msgs[-1].status
    return values_of(seg), seg, inp


def settled_counts(client, timeout: float = 30.0) -> dict[str, int]:
    """Counters once two consecutive reports agree, nothing is pending and every received frame
    is accounted for (received = processed + dropped + bad + failed)."""
    keys = ("frames_received", "frames_processed", "frames_dropped", "frames_bad", "frames_failed")
    seen = len(client.messages("/diagnostics"))

    def settled():
        from mpvss_ros.ros.diagnostics import values_of
        msgs = client.messages("/diagnostics")[seen:]
        if len(msgs) < 2:
            return None
        a, b = values_of(msgs[-2].status[0]), values_of(msgs[-1].status[0])
        counts = {k: int(b[k]) for k in keys}
        done = sum(counts[k] for k in keys[1:])
        same = all(a[k] == b[k] for k in keys)
        return counts if same and int(b["frames_pending"]) == 0 and done == counts["frames_received"] else None

    return wait_for(settled, timeout, "diagnostics accounting for every received frame")


def _main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mpvss_ros.ros.node_main import run

    own, ros = (argv[: argv.index("--ros-args")], argv[argv.index("--ros-args"):]) \
        if "--ros-args" in argv else (argv, [])
    delay = float(own[own.index("--delay") + 1]) if "--delay" in own else 0.0
    factory = None if "--real" in own else (lambda model_dir, **kw: FaultyRunner(delay_s=delay))
    return run(["reliability_node"] + ros, autostart="--autostart" in own, runner_factory=factory)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
