"""One-slot mailbox, the inference worker thread, and the model-load thread.

The subscription callback only drops the newest message into the mailbox (O(1), never blocks
on inference); a frame still waiting there when a newer one arrives is superseded and counted
as dropped. The worker takes the newest frame whenever it is free, so latency stays bounded
by one inference and memory by one frame, whatever the input rate.

A model load (``ModelLoad``) runs on a thread of its own so that a shutdown during configure
does not wait for it.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any, Callable


class Mailbox:
    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it superseded a frame nobody had taken."""
        with self._cond:
            superseded = self._item is not None
            self._item = item
            self._cond.notify()
            return superseded

    def take(self, timeout: float | None = None) -> Any:
        """The newest item (removing it), or None on timeout / close."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def pending(self) -> int:
        with self._cond:
            return int(self._item is not None)

    def clear(self) -> int:
        """Discard a waiting frame; returns how many were discarded (0 or 1)."""
        with self._cond:
            n = int(self._item is not None)
            self._item = None
            return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class Worker:
    """Runs ``handle(item)`` for each item taken from ``mailbox`` on its own thread."""

    def __init__(self, mailbox: Mailbox, handle: Callable[[Any], None],
                 on_error: Callable[[BaseException], None], name: str = "mpvss_worker"):
        self._mailbox = mailbox
        self._handle = handle
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._mailbox.reopen()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the frame in progress (if any) has been handled; False if it was still
        running after ``timeout`` seconds (the daemon thread is then left to finish alone)."""
        self._stop.set()
        self._mailbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._mailbox.take(timeout=0.5)
            if item is None or self._stop.is_set():
                continue
            try:
                self._handle(item)
            except Exception as exc:  # keep serving frames; the node logs (throttled)
                self._on_error(exc)


class Controls:
    """Schedule changes and key-frame requests from service callbacks, handed to the worker.

    The worker applies them before its next frame, so a parameter or key-frame service returns at
    once instead of waiting for the inference in progress (which holds the segmenter)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._schedule: dict[str, Any] = {}
        self._key_frame = False

    def update_schedule(self, **settings: Any) -> None:
        with self._lock:
            self._schedule.update(settings)

    def request_key_frame(self) -> None:
        with self._lock:
            self._key_frame = True

    def take(self) -> tuple[dict[str, Any], bool]:
        """(schedule changes, key frame requested) since the last call; both reset."""
        with self._lock:
            schedule, key = self._schedule, self._key_frame
            self._schedule, self._key_frame = {}, False
            return schedule, key


class ShutdownRequested(BaseException):
    """The context shut down (SIGINT/SIGTERM) during a transition callback.

    A BaseException on purpose: rclpy's lifecycle turns an Exception from a callback into ERROR
    and then, publishing the transition on the shut-down context, logs "Failed to complete
    transition". This passes through it (and the executor) to ``node_main.run``, which exits quietly;
    elsewhere it ends a spin that shutdown would end anyway (ExternalShutdownException)."""


class ModelLoad:
    """Runs a model load on a daemon thread and waits for it only while ``context`` is up.

    Loading (ONNX Runtime sessions, torch weights) is native code a signal cannot interrupt, and
    rclpy's signal handler only shuts the context down (SIGTERM calls no Python code at all), so
    the waiting side polls ``context.ok()``: a stop request ends the wait at once instead of
    after a load of up to a minute (the loads release the GIL). The abandoned thread must not
    meet interpreter teardown: see ``exit_if_abandoned``."""

    def __init__(self, context, poll_s: float = 0.05):
        self._context = context
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None

    def __call__(self, load: Callable[[], Any]) -> Any:
        """``load()``'s result, or its exception re-raised here; ShutdownRequested on shutdown."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def target():
            try:
                outcome["result"] = load()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

        self._thread = threading.Thread(target=target, name="mpvss_model_load", daemon=True)
        self._thread.start()
        while not done.wait(self._poll_s):
            if not self._context.ok():
                raise ShutdownRequested
        self._thread = None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def abandoned(self) -> bool:
        """True while a load left behind at shutdown is still running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _finish_log_file(self) -> None:
        """Flush and close the ROS log file (~/.ros/log) as rclpy's own shutdown does.

        A signal shuts the context down in C, which leaves the file logger open; its lines are
        written at process teardown, which os._exit skips (seen: an empty log file). rclpy has no
        public call for it; the context's own step exists from Humble to Rolling."""
        fini = getattr(self._context, "_logging_fini", None)
        lock = getattr(self._context, "_lock", None)
        if fini is None or lock is None:
            return
        try:
            with lock:
                fini()
        except Exception:  # already finalised elsewhere: nothing left to flush
            pass

    def exit_if_abandoned(self, code: int) -> None:
        """End the process with ``code`` now if a load is still running (else return).

        Interpreter teardown under a session being built makes ONNX Runtime abort (exit 134) or
        segfault, so it is skipped (os._exit). The caller has destroyed the node; finalising the
        context here deletes the DDS participant, so peers see the node leave at once rather
        than when its lease runs out (20 s)."""
        if not self.abandoned():
            return
        gc.collect()  # a destroyed lifecycle node holds the context until it is collected
        self._context.destroy()
        self._finish_log_file()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
