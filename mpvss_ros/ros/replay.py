"""Bag replay over DDS into a running ``mpvss_segmenter`` and collection of its outputs.

The replayer publishes each frame's raw CDR from the bag (no deserialisation) on
``/camera/image_raw`` (a bag of CompressedImages on ``/camera/image_raw/compressed``, for a node
with ``input_transport: compressed``) and ``/camera/camera_info``, preceded by ``/clock`` at the frame's stamp
(the node runs on ``use_sim_time``), and matches ``~/labels``, ``~/confidence`` and
``~/class_stats`` back to the frame by header stamp (the node copies the input header).

Pacing: with a rate, frames go out on a wall-clock schedule and the node's one-slot mailbox
decides what it skips (real-time behaviour). Without one (as fast as possible), frame i+1 is
sent only when all outputs of frame i arrived or a timeout passed (counted), so every frame is
segmented and the result does not depend on machine speed.

Start-up: a warm-up frame (the first image, stamped before the bag starts) is sent until its
outputs come back, which proves that discovery has matched both directions (the node builds
an output only for topics with a subscriber). At every sequence start a key frame is requested
through ``~/request_key_frame`` so that key frames fall where offline evaluation puts them
(frame 0, k, 2k, ... of each sequence); the bag keeps one ``frame_id`` for all sequences.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

IMAGE_OUT = "/camera/image_raw"
CAMERA_INFO_OUT = "/camera/camera_info"
NODE_NAME = "mpvss_segmenter"


@dataclass
class ReplayOptions:
    rate_hz: float | None = None        # None: as fast as the node keeps up (flow control)
    timeout_s: float = 10.0             # flow control: wait at most this long per frame
    namespace: str = ""
    node_name: str = NODE_NAME
    startup_timeout_s: float = 120.0    # node discovery + model load + warm-up
    request_key_frames: bool = True     # at each sequence start
    is_alive: Callable[[], bool] | None = None  # e.g. the node subprocess; stop waiting if it dies
    compressed: bool = False            # the records are CompressedImages


@dataclass
class FrameOutcome:
    """One replayed frame and what the node answered (None fields: no answer)."""

    index: int
    stamp_ns: int
    name: str | None
    sequence: str
    new_sequence: bool
    record: object                      # the data.bag.BagRecord (image decodable on demand)
    sent_at: float                      # time.perf_counter() just before publishing
    labels: np.ndarray | None = None    # (H, W) uint8 train ids
    labels_at: float | None = None
    confidence: np.ndarray | None = None  # (H, W) float32
    stats: dict | None = None           # key_frame, frames_since_key, inference_ms, total_ms
    timed_out: bool = False

    @property
    def complete(self) -> bool:
        return self.labels is not None and self.confidence is not None and self.stats is not None

    @property
    def latency_ms(self) -> float | None:
        return None if self.labels_at is None else (self.labels_at - self.sent_at) * 1e3


@dataclass
class ReplaySummary:
    frames: int = 0
    answered: int = 0
    timeouts: int = 0
    wall_s: float = 0.0
    key_requests: int = 0
    label_info: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


def node_topic(namespace: str, node_name: str, leaf: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{node_name}/{leaf}"


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _image_array(msg, dtype, channels: int = 1) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    flat = np.frombuffer(bytes(msg.data), np.uint8)
    rows = flat[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * itemsize * channels]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)


class _Collector:
    """Output callbacks (executor thread) -> outcomes by stamp; the main thread waits on it."""

    def __init__(self):
        self.cond = threading.Condition()
        self.by_stamp: dict[int, FrameOutcome] = {}
        self.label_ids_to_train = None  # LUT when the node publishes labelIds
        self.label_info: dict = {}

    def expect(self, outcome: FrameOutcome) -> None:
        with self.cond:
            self.by_stamp[outcome.stamp_ns] = outcome

    def forget(self, stamp_ns: int) -> None:
        with self.cond:
            self.by_stamp.pop(stamp_ns, None)

    def on_labels(self, msg) -> None:
        now = time.perf_counter()
        labels = _image_array(msg, np.uint8)
        with self.cond:
            o = self.by_stamp.get(_stamp_ns(msg.header.stamp))
            if o is not None and o.labels is None:
                lut = self.label_ids_to_train
                o.labels, o.labels_at = (lut[labels] if lut is not None else labels), now
                self.cond.notify_all()

    def on_confidence(self, msg) -> None:
        conf = _image_array(msg, np.float32)
        with self.cond:
            o = self.by_stamp.get(_stamp_ns(msg.header.stamp))
            if o is not None and o.confidence is None:
                o.confidence = conf
                self.cond.notify_all()

    def on_stats(self, msg) -> None:
        stats = {"key_frame": bool(msg.key_frame), "frames_since_key": int(msg.frames_since_key),
                 "inference_ms": float(msg.inference_ms), "total_ms": float(msg.total_ms)}
        with self.cond:
            o = self.by_stamp.get(_stamp_ns(msg.header.stamp))
            if o is not None and o.stats is None:
                o.stats = stats
                self.cond.notify_all()

    def on_label_info(self, msg) -> None:
        try:
            info = json.loads(msg.data)
        except ValueError:
            return
        with self.cond:
            self.label_info = info
            if info.get("label_format") == "labelid":
                from mpvss_ros.data.labels import LABEL_ID_TO_TRAIN_ID
                self.label_ids_to_train = np.asarray(LABEL_ID_TO_TRAIN_ID, np.uint8)
            else:
                self.label_ids_to_train = None
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float,
             alive: Callable[[], bool] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or (alive is not None and not alive()):
                    return predicate()
                self.cond.wait(min(left, 0.5))
            return True


class BagReplayer:
    """Owns an rclpy context and a node that plays a bag into the segmenter."""

    def __init__(self, options: ReplayOptions):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from std_msgs.msg import String

        from mpvss_ros.msg import ClassStats
        from mpvss_ros.ros.large_buffers import keep_large_buffers_on_heap

        keep_large_buffers_on_heap()  # it publishes and receives camera-sized messages
        self.options = options
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("mpvss_bag_replay", context=self.context,
                                      start_parameter_services=False)
        self.collector = _Collector()
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.clock_pub = self.node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self.image_out = IMAGE_OUT + "/compressed" if options.compressed else IMAGE_OUT
        self.image_pub = self.node.create_publisher(CompressedImage if options.compressed else Image,
                                                    self.image_out, QoSProfile(depth=10))
        self.info_pub = self.node.create_publisher(CameraInfo, CAMERA_INFO_OUT, QoSProfile(depth=10))
        topic = lambda leaf: node_topic(options.namespace, options.node_name, leaf)  # noqa: E731
        c = self.collector
        self.subs = [
            self.node.create_subscription(Image, topic("labels"), c.on_labels, reliable),
            self.node.create_subscription(Image, topic("confidence"), c.on_confidence, reliable),
            self.node.create_subscription(ClassStats, topic("class_stats"), c.on_stats, reliable),
            self.node.create_subscription(String, topic("label_info"), c.on_label_info, QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)),
        ]
        self._Clock = Clock
        self._clients: dict = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:
            pass
        self.node.destroy_node()
        if self.context.ok():
            self.context.try_shutdown()
        self._spinner.join(timeout=5.0)

    # ---------------------------------------------------------------------------- services
    def _call(self, srv_type, name: str, request, timeout_s: float):
        """Service call from the main thread (the executor thread completes the future);
        clients are kept, so a request per sequence costs no new discovery."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            return None
        return future.result()

    def request_key_frame(self, timeout_s: float = 5.0) -> bool:
        from std_srvs.srv import Trigger

        name = node_topic(self.options.namespace, self.options.node_name, "request_key_frame")
        response = self._call(Trigger, name, Trigger.Request(), timeout_s)
        return bool(response is not None and response.success)

    def node_parameters(self, names: list[str], timeout_s: float = 5.0) -> dict:
        """Values of the segmenter's parameters (empty dict when the service does not answer)."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        name = node_topic(self.options.namespace, self.options.node_name, "get_parameters")
        response = self._call(GetParameters, name, GetParameters.Request(names=names), timeout_s)
        if response is None:
            return {}
        return {n: parameter_value_to_python(v) for n, v in zip(names, response.values)}

    # ---------------------------------------------------------------------------- publishing
    def _publish(self, stamp_ns: int, image_cdr: bytes, info_cdr: bytes | None) -> float:
        clock = self._Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.clock_pub.publish(clock)
        if info_cdr is not None:
            self.info_pub.publish(info_cdr)
        sent_at = time.perf_counter()
        self.image_pub.publish(image_cdr)  # raw CDR straight from the bag
        return sent_at

    def _wait_for_node(self, first_record) -> None:
        """Wait until the node is active and both directions are matched (warm-up frames)."""
        opts, c = self.options, self.collector
        deadline = time.monotonic() + opts.startup_timeout_s
        while self.image_pub.get_subscription_count() == 0 or any(
                s.get_publisher_count() == 0 for s in self.subs[:3]):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no active {opts.node_name} (namespace {opts.namespace or '/'}) subscribed to "
                    f"{self.image_out} within {opts.startup_timeout_s:.0f} s")
            time.sleep(0.1)
        warm = _restamped(first_record, first_record.stamp_ns - 10_000_000_000)
        attempt = 0
        while True:
            stamp = warm.stamp_ns + attempt * 1_000_000  # forward in time: no needless resets
            outcome = FrameOutcome(-1, stamp, None, "", True, None, 0.0)
            c.expect(outcome)
            outcome.sent_at = self._publish(stamp, _restamped(first_record, stamp).image_cdr,
                                            first_record.camera_info_cdr)
            ok = c.wait(lambda: outcome.complete, 2.0, opts.is_alive)
            c.forget(stamp)
            if ok:
                return
            self._check_alive()
            attempt += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{opts.node_name} took no warm-up frame within "
                                   f"{opts.startup_timeout_s:.0f} s (is it Active?)")

    def _check_alive(self) -> None:
        if self.options.is_alive is not None and not self.options.is_alive():
            raise RuntimeError(f"{self.options.node_name} exited during the replay")

    # ---------------------------------------------------------------------------- replay
    def replay(self, records: Iterable, on_frame: Callable[[FrameOutcome], None],
               progress: Callable[[int], None] | None = None) -> ReplaySummary:
        """Play ``records`` (data.bag.BagRecord, in order); ``on_frame`` gets every outcome in order."""
        opts, c = self.options, self.collector
        summary = ReplaySummary()
        pending: list[FrameOutcome] = []
        started = None
        period = None if opts.rate_hz is None else 1.0 / opts.rate_hz

        def finish(outcome: FrameOutcome) -> None:
            c.forget(outcome.stamp_ns)
            summary.answered += outcome.labels is not None
            on_frame(outcome)
            if progress:
                progress(1)

        def flush(force: bool) -> None:
            now = time.perf_counter()
            while pending and (pending[0].complete or force or now - pending[0].sent_at > opts.timeout_s):
                finish(pending.pop(0))

        for index, record in enumerate(records):
            if started is None:
                self._wait_for_node(record)
                c.wait(lambda: bool(c.label_info), 2.0)
                summary.label_info = dict(c.label_info)
                started = time.perf_counter()
            if record.new_sequence and opts.request_key_frames:
                # With flow control the node is idle here, so the request lands exactly on this
                # frame; at a fixed rate it is best effort (an older frame may still be queued).
                summary.key_requests += self.request_key_frame()
            if period is not None:
                delay = started + index * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            outcome = FrameOutcome(index, record.stamp_ns, record.name, record.sequence,
                                   record.new_sequence, record, 0.0)
            c.expect(outcome)
            outcome.sent_at = self._publish(record.stamp_ns, record.image_cdr, record.camera_info_cdr)
            summary.frames += 1
            pending.append(outcome)
            if period is None:
                if not c.wait(lambda: outcome.complete, opts.timeout_s, opts.is_alive):
                    outcome.timed_out = True
                    summary.timeouts += 1
                    self._check_alive()
            flush(force=False)
        if pending:  # the last frames: wait for their answers, then give up on the rest
            last = pending[-1]
            c.wait(lambda: all(p.complete for p in pending),
                   max(0.0, last.sent_at + opts.timeout_s - time.perf_counter()), opts.is_alive)
            for p in pending:
                if not p.complete and not p.timed_out and period is None:
                    p.timed_out = True
            flush(force=True)
        summary.wall_s = 0.0 if started is None else time.perf_counter() - started
        return summary


def _restamped(record, stamp_ns: int):
    """A copy of the record whose image carries another header stamp (for warm-up frames)."""
    from dataclasses import replace

    ts = record._ts
    msg = ts.deserialize_cdr(record.image_cdr, record.msgtype)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return replace(record, stamp_ns=stamp_ns, image_cdr=bytes(ts.serialize_cdr(msg, record.msgtype)))

