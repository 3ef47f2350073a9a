"""The segmentation node as a child process for `mpvss bag evaluate` / `mpvss demo`:
``python -m mpvss_ros.cli node`` on sim time with the camera topic remapped, stopped by its PID."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mpvss_ros.ros.replay import IMAGE_OUT


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """SIGINT (clean rclpy shutdown), then SIGTERM, then SIGKILL, to this PID only; the exit code."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


class NodeProcess:
    """``mpvss node`` as a child process; its output goes to ``log_path``."""

    def __init__(self, params: str | Path | None = None, namespace: str = "",
                 overrides: dict[str, str] | None = None, log_path: str | Path | None = None,
                 image_topic: str = IMAGE_OUT):
        ros_args = ["--ros-args"]
        if params is not None:
            if not Path(params).is_file():
                raise FileNotFoundError(f"parameter file not found: {params}")
            ros_args += ["--params-file", str(params)]
        # After the file, so that these win over its values.
        for name, value in {"use_sim_time": "true", **(overrides or {})}.items():
            ros_args += ["-p", f"{name}:={value}"]
        ros_args += ["-r", f"image:={image_topic}"]
        if namespace.strip("/"):
            ros_args += ["-r", f"__ns:=/{namespace.strip('/')}"]
        self.command = [sys.executable, "-m", "mpvss_ros.cli", "node", *ros_args]
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "NodeProcess":
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, stdout=self._log or subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def last_log_line(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the node (`stop_process`) and close its log."""
        if self.process is None:
            return None
        stop_process(self.process, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.poll()
