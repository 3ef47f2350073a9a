"""Helpers for the ROS tests (no tests here).

- ``RosClient``: the test side over real DDS — lifecycle services, parameter services,
  ``~/request_key_frame``, an image publisher and collecting subscribers.
- ``ScriptedRunner``: a deterministic implementation of the runtime's Runner protocol whose
  output is a function of the key frame's pixels (labels = red channel // 13), so a test can
  tell from the published labels which frame was the key frame; ``delay_s`` makes every frame
  slow, ``first_delay_s`` only the first.
- Run as a script, it starts the real ``SegmenterNode`` with a ScriptedRunner:
  ``python test/test_ros_helpers.py [--delay S] [--first-delay S] [--load-delay S] [--load-onnx FILE]
  [--autostart] --ros-args ...``
  (``--load-delay``: model loading, i.e. configure, takes that long; ``--load-onnx``: configure
  also builds an ONNX Runtime session from FILE, e.g. ``write_slow_onnx``'s)
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

NODE = "/mpvss_segmenter"
NUM_CLASSES = 19


# --------------------------------------------------------------------------- scripted runner
def scripted_labels(image: np.ndarray) -> np.ndarray:
    return np.minimum(image[..., 0] // 13, NUM_CLASSES - 1).astype(np.uint8)


class ScriptedRunner:
    backend = "scripted"
    providers = ("CPU",)

    def __init__(self, input_size=(32, 64), delay_s: float = 0.0, first_delay_s: float = 0.0):
        from mpvss_ros.data.labels import TRAIN_CLASS_NAMES
        self.input_size = tuple(input_size)
        self.class_names = list(TRAIN_CLASS_NAMES)
        self.delay_s = delay_s
        self.first_delay_s = first_delay_s  # the first inference only (a frame held in inference)

    def _output(self, image: np.ndarray):
        labels = scripted_labels(image)
        confidence = (0.5 + image[..., 1].astype(np.float32) / 510.0).astype(np.float32)
        small = labels[::4, ::4]
        probs = np.full((NUM_CLASSES,) + small.shape, 0.01, np.float32)
        np.put_along_axis(probs, small[None].astype(np.int64), 0.82, axis=0)
        return SimpleNamespace(labels=labels, confidence=confidence, probs=probs, mask_logits=None)

    def key_frame(self, image):
        time.sleep(self.delay_s + self.first_delay_s)
        self.first_delay_s = 0.0
        out = self._output(image)
        return out, out

    def propagate(self, key, image):
        time.sleep(self.delay_s)
        return key  # the key frame's masks, unchanged


# --------------------------------------------------------------------------- test client
def rgb_image_msg(rgb: np.ndarray, stamp_s: float, frame_id: str = "camera", encoding="rgb8"):
    from sensor_msgs.msg import Image
    msg = Image()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = int(rgb.strides[0])
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll until predicate() is truthy; AssertionError naming ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class RosClient:
    def __init__(self, node_ns: str = NODE):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.ns = node_ns
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("mpvss_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.received: dict[str, list] = {}
        self._subs = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:
            pass

    def close(self):
        self.context.try_shutdown()
        self._thread.join(5)

    # services
    def call(self, srv_type, name: str, request, timeout: float = 30.0, resend_s: float | None = None):
        """The service's reply. `resend_s`, for requests that may be repeated (queries): send again
        when no reply came in that time. A server that has not yet matched our reply reader, or
        a dead node's service still in the graph, loses a request; a query need not wait 30 s."""
        client = self.node.create_client(srv_type, name)
        try:
            wait_for(lambda: client.service_is_ready(), timeout, f"service {name}")
            futures = [client.call_async(request)]
            deadline = last = time.monotonic()
            deadline += timeout
            while not any(f.done() for f in futures):
                now = time.monotonic()
                if now > deadline:
                    raise AssertionError(f"timed out waiting for reply from {name}")
                if resend_s and now - last > resend_s:
                    futures.append(client.call_async(request))
                    last = now
                time.sleep(0.02)
            return next(f for f in futures if f.done()).result()
        finally:
            self.node.destroy_client(client)

    def change_state(self, transition_id: int) -> bool:
        from lifecycle_msgs.srv import ChangeState
        req = ChangeState.Request()
        req.transition.id = transition_id
        return self.call(ChangeState, f"{self.ns}/change_state", req).success

    def get_state(self) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f"{self.ns}/get_state", GetState.Request(), resend_s=5.0).current_state.label

    def set_parameters(self, **values):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request()
        req.parameters = [Parameter(k.replace("__", "."), value=v).to_parameter_msg()
                          for k, v in values.items()]
        return self.call(SetParameters, f"{self.ns}/set_parameters", req).results

    def get_parameters(self, names):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        req = GetParameters.Request(names=list(names))
        res = self.call(GetParameters, f"{self.ns}/get_parameters", req)
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}

    def describe_parameters(self, names):
        from rcl_interfaces.srv import DescribeParameters
        req = DescribeParameters.Request(names=list(names))
        return list(self.call(DescribeParameters, f"{self.ns}/describe_parameters", req).descriptors)

    def list_parameters(self):
        from rcl_interfaces.srv import ListParameters
        return list(self.call(ListParameters, f"{self.ns}/list_parameters",
                              ListParameters.Request()).result.names)

    def request_key_frame(self):
        from std_srvs.srv import Trigger
        return self.call(Trigger, f"{self.ns}/request_key_frame", Trigger.Request())

    # topics
    def subscribe(self, topic: str, msg_type, qos=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.received[topic] = []

        def keep(msg):
            with self._lock:
                self.received[topic].append(msg)

        qos = qos or QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._subs[topic] = self.node.create_subscription(msg_type, topic, keep, qos)
        return self._subs[topic]

    def messages(self, topic: str) -> list:
        with self._lock:
            return list(self.received[topic])

    def clear(self, topic: str | None = None):
        with self._lock:
            for t in [topic] if topic else list(self.received):
                self.received[t].clear()

    def image_publisher(self, topic: str = "/image"):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        pub = self.node.create_publisher(Image, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: pub.get_subscription_count() > 0, 30, f"a subscriber on {topic}")
        return pub

    def wait_matched(self, topic: str, timeout: float = 30.0):
        sub = self._subs[topic]
        wait_for(lambda: sub.get_publisher_count() > 0, timeout, f"a publisher on {topic}")

    def send_and_wait(self, pub, msg, topic: str, timeout: float = 30.0, resend_every: float | None = None):
        """Publish ``msg`` and wait for a message on ``topic`` carrying its header that arrived
        after publishing (an earlier frame with the same stamp must not answer for this one).

        ``resend_every``: publish the same message again every so many seconds until it is
        answered. For a fresh subscription: the publisher may already see the node's reader while
        that reader has not yet matched the publisher and drops the sample (seen on a loaded
        machine). Only where processing a frame twice does not change what the test checks."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        seen = len(self.messages(topic))

        def arrived():
            for m in self.messages(topic)[seen:]:
                if (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == stamp:
                    return m
            return None

        pub.publish(msg)
        if resend_every is None:
            return wait_for(arrived, timeout, f"{topic} for stamp {stamp}")
        end = time.monotonic() + timeout
        while True:
            try:
                return wait_for(arrived, min(resend_every, max(0.0, end - time.monotonic())),
                                f"{topic} for stamp {stamp}")
            except AssertionError:
                if time.monotonic() >= end:
                    raise
                pub.publish(msg)


def stop_process(proc) -> None:
    """SIGINT the process, escalating if it has not exited within 15 s."""
    from mpvss_ros.ros.node_process import stop_process as stop

    stop(proc, timeout_s=15.0)


def write_slow_onnx(path, nodes: int = 100_000) -> Path:
    """A tiny-weight ONNX model whose ONNX Runtime session takes seconds to build (~6 s for
    100k nodes on 2 cores): native code that a signal cannot interrupt, like a large model's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ["x"] + [f"h{i}" for i in range(nodes)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", [a, "w"], [b]) for a, b in zip(names, names[1:])], "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Path(path)


def node_command(*ros_args: str, delay_s: float = 0.0, autostart: bool = False, load_s: float = 0.0,
                 first_delay_s: float = 0.0, load_onnx: str | Path = "", signal_at_load_end: str = "",
                 signal_at_activate: str = "") -> list[str]:
    """Command line that starts the real SegmenterNode with a ScriptedRunner."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--delay", str(delay_s), "--load-delay", str(load_s),
           "--first-delay", str(first_delay_s)]
    if signal_at_load_end:
        cmd += ["--signal-at-load-end", signal_at_load_end]
    if signal_at_activate:
        cmd += ["--signal-at-activate", signal_at_activate]
    if load_onnx:
        cmd += ["--load-onnx", str(load_onnx)]
    if autostart:
        cmd.append("--autostart")
    return cmd + ["--ros-args", *ros_args]


def _native_like_load(seconds: float) -> None:
    """Sleep like a model load inside C code (ONNX Runtime, torch).

    A SIGINT's KeyboardInterrupt only comes once it returns (a plain time.sleep in the main
    thread would end at once). Interpreter teardown while it runs ends the process with 134,
    as ONNX Runtime does when torn down under a session being built (seen: abort or segfault)."""
    import atexit
    import os

    done = threading.Event()

    def teardown_during_the_load():
        if not done.is_set():
            print("interpreter teardown during the model load", flush=True)
            os._exit(134)

    atexit.register(teardown_during_the_load)
    end = time.monotonic() + seconds
    interrupted = False
    while time.monotonic() < end:
        try:
            time.sleep(max(0.0, end - time.monotonic()))
        except KeyboardInterrupt:
            interrupted = True
    done.set()
    if interrupted:
        raise KeyboardInterrupt


def _main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mpvss_ros.ros.node_main import run

    own, ros = (argv[: argv.index("--ros-args")], argv[argv.index("--ros-args"):]) \
        if "--ros-args" in argv else (argv, [])
    delay = float(own[own.index("--delay") + 1]) if "--delay" in own else 0.0
    load_s = float(own[own.index("--load-delay") + 1]) if "--load-delay" in own else 0.0
    first_s = float(own[own.index("--first-delay") + 1]) if "--first-delay" in own else 0.0
    onnx_path = own[own.index("--load-onnx") + 1] if "--load-onnx" in own else ""
    signal_at_end = own[own.index("--signal-at-load-end") + 1] if "--signal-at-load-end" in own else ""
    if "--signal-at-activate" in own:  # the operator's Ctrl-C while the node activates
        import os
        import signal

        from mpvss_ros.ros import node as node_module

        sig = getattr(signal, own[own.index("--signal-at-activate") + 1])
        start = node_module.Worker.start

        def start_after_a_signal(self):
            os.kill(os.getpid(), sig)
            start(self)

        node_module.Worker.start = start_after_a_signal

    def factory(model_dir, **kw):
        if load_s or onnx_path:  # a large model loading: configure takes this long
            print("loading the model", flush=True)
        if onnx_path:
            import onnxruntime as ort
            ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            print("model loaded", flush=True)
        if load_s:
            _native_like_load(load_s)
        if signal_at_end:  # the operator's Ctrl-C just as the load ends
            import os
            import signal
            os.kill(os.getpid(), getattr(signal, signal_at_end))
        return ScriptedRunner(delay_s=delay, first_delay_s=first_s)

    return run(["scripted_node"] + ros, autostart="--autostart" in own, runner_factory=factory)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
