"""Frame counters of the node and their /diagnostics message.

Counters are written by the subscription callback (received, dropped, bad) and by the worker
(processed, failed, key frames, latencies) under one lock; the diagnostics timer reads a snapshot.
Accounting invariant: received = processed + dropped + bad + failed + pending (pending is 0 or
1 — the mailbox has a single slot, so no queue can grow). "bad" frames were rejected before
inference (encoding, sizes, step), "failed" ones raised during inference.

Two statuses per message: ``<node>: segmentation`` (OK, or WARN once bad or failed frames have
been seen, with the last reason) and ``<node>: input`` (ERROR while the newest frame could not
be segmented — e.g. a camera publishing an unsupported encoding — OK again after a good one).
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class FrameStats:
    def __init__(self, window: int = 100):
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad = 0
        self.failed = 0
        self.key_frames = 0
        self.last_error = ""
        self.current_error = ""  # why the newest frame could not be segmented; "" after a good one
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=window)

    def on_received(self) -> None:
        with self._lock:
            self.received += 1

    def on_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def on_bad(self, reason: str) -> None:
        with self._lock:
            self.bad += 1
            self.last_error = self.current_error = reason

    def on_failed(self, reason: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = self.current_error = f"inference failed: {reason}"

    def on_processed(self, key_frame: bool, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self.current_error = ""
            self.key_frames += int(key_frame)
            self._latency_ms.append(latency_ms)
            self._done_at.append(time.monotonic())

    def snapshot(self) -> dict:
        with self._lock:
            lat = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            done = list(self._done_at)
            rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
            return {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_bad": self.bad,
                "frames_failed": self.failed,
                "key_frames": self.key_frames,
                "key_fraction": self.key_frames / self.processed if self.processed else 0.0,
                "rate_hz": rate,
                "latency_ms_mean": float(lat.mean()),
                "latency_ms_p95": float(np.percentile(lat, 95)),
                "last_error": self.last_error,
                "current_error": self.current_error,
            }


def diagnostic_array(stamp, name: str, snapshot: dict, pending: int, backend: str, providers,
                     model: str) -> DiagnosticArray:
    """The segmentation status (WARN once bad or failed frames were seen) and the input status
    (ERROR while the newest frame could not be segmented)."""
    status = DiagnosticStatus()
    status.name = f"{name}: segmentation"
    status.hardware_id = backend
    troubles = snapshot["frames_bad"] + snapshot["frames_failed"]
    if troubles:
        status.level = DiagnosticStatus.WARN
        status.message = (f"{snapshot['frames_bad']} bad frames, {snapshot['frames_failed']} failed; "
                          f"last: {snapshot['last_error']}")
    else:
        status.level = DiagnosticStatus.OK
        status.message = "ok" if snapshot["frames_processed"] else "waiting for images"
    values = dict(snapshot)
    values.pop("last_error")
    values.pop("current_error")
    values.update({"frames_pending": pending, "backend": backend,
                   "providers": ",".join(providers), "model": model})
    status.values = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))
                     for k, v in values.items()]
    current = snapshot["current_error"]
    inputs = DiagnosticStatus(name=f"{name}: input", hardware_id=backend,
                              level=DiagnosticStatus.ERROR if current else DiagnosticStatus.OK,
                              message=f"frames cannot be segmented: {current}" if current else "ok")
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status, inputs]
    return msg


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    """KeyValue list -> dict (for clients and tests)."""
    return {kv.key: kv.value for kv in status.values}


class LogThrottle:
    """At most one log line per key per period: a camera streaming an unsupported encoding at
    30 Hz logs once every few seconds, and cannot hide a different problem (another key)."""

    def __init__(self, period_s: float, max_keys: int = 64):
        self._period, self._max = period_s, max_keys
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._period) < self._period:
                return False
            if len(self._last) >= self._max:  # keys come from senders: keep the table bounded
                self._last.clear()
            self._last[key] = now
            return True
