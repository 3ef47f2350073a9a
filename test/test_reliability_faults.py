"""Faults around a running node over real DDS: the camera publisher going away and coming back
(its clock restarted), an exception during inference on one frame, deactivate/activate and
cleanup/configure cycles while frames are streaming into a slow node, and shutdown (SIGINT,
SIGTERM, the lifecycle shutdown transition) while the worker is busy — the process must exit
within a bound even when inference is stuck."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from mpvss_ros.msg import ClassStats
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from test_reliability_helpers import diagnostics, node_args, poisoned_frame, running_node, settled_counts
from test_ros_helpers import NODE, RosClient, rgb_image_msg, wait_for

pytestmark = pytest.mark.ros
STATS = f"{NODE}/class_stats"
EXIT_BOUND_S = 30.0  # 10 s worker join at shutdown + start-up slack; a hang never meets it


@pytest.fixture(scope="module")
def node(ros_domain, tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    with running_node(log, "-p", f"model:={log.parent}", "-r", "image:=/image",
                      "-p", "input_reliability:=reliable", "-p", "diagnostics_period_s:=0.2",
                      "-p", "schedule.interval:=3", delay_s=0.05) as (client, proc):
        client.proc = proc
        client.subscribe(STATS, ClassStats)
        client.subscribe("/diagnostics", DiagnosticArray)
        client.wait_matched(STATS)
        yield client


def _frame(value: int) -> np.ndarray:
    img = np.zeros((48, 80, 3), np.uint8)
    img[..., 0] = value
    return img


def _publisher(client, topic: str = "/image"):
    pub = client.node.create_publisher(Image, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node's image subscription")
    return pub


def test_camera_publisher_disappears_and_comes_back(node):
    pub = _publisher(node)
    flags = [node.send_and_wait(pub, rgb_image_msg(_frame(40), 100.0 + i / 10, "cam"), STATS).key_frame
             for i in range(4)]
    assert flags == [True, False, False, True]
    node.node.destroy_publisher(pub)  # the camera driver dies ...
    time.sleep(1.0)
    pub = _publisher(node)  # ... and restarts, its clock from zero: a new key frame at once
    stats = node.send_and_wait(pub, rgb_image_msg(_frame(40), 0.5, "cam"), STATS)
    assert stats.key_frame and stats.frames_since_key == 0
    assert not node.send_and_wait(pub, rgb_image_msg(_frame(40), 0.6, "cam"), STATS).key_frame
    node.node.destroy_publisher(pub)
    assert node.get_state() == "active"


def test_inference_exception_on_one_frame(node):
    pub = _publisher(node)
    before = settled_counts(node)
    node.send_and_wait(pub, rgb_image_msg(_frame(40), 200.0, "faulty"), STATS)
    pub.publish(rgb_image_msg(poisoned_frame(), 200.1, "faulty"))
    wait_for(lambda: "frame failed: RuntimeError: injected inference fault" in node.log(), 30, "the error logged")
    after_fault = diagnostics(node)
    # the next frame is processed as usual
    stats = node.send_and_wait(pub, rgb_image_msg(_frame(40), 200.2, "faulty"), STATS)
    counts = settled_counts(node)
    assert counts["frames_failed"] - before["frames_failed"] == 1
    assert counts["frames_processed"] - before["frames_processed"] == 2
    assert not any(s.header.stamp.sec == 200 and s.header.stamp.nanosec == 100_000_000
                   for s in node.messages(STATS))  # nothing published for the failed frame
    values, seg, inp = diagnostics(node)
    assert seg.level == DiagnosticStatus.WARN
    assert "last: inference failed: RuntimeError: injected inference fault" in seg.message
    assert inp.level == DiagnosticStatus.OK  # the newest frame was fine again
    assert after_fault is not None and stats.header.frame_id == "faulty"
    node.node.destroy_publisher(pub)


def test_lifecycle_cycles_with_frames_in_flight(node):
    """A 30 Hz stream into a node that needs 50 ms per frame, while it is deactivated and
    activated five times and cleaned up and configured once: no frame fails, every frame is
    accounted for, and the node serves frames afterwards."""
    pub = _publisher(node)
    stop, sent = threading.Event(), [0]

    def stream():
        while not stop.is_set():
            pub.publish(rgb_image_msg(_frame(60), 300.0 + sent[0] / 30, "cycles"))
            sent[0] += 1
            time.sleep(1 / 30)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        for i in range(6):
            time.sleep(0.3)
            assert node.change_state(Transition.TRANSITION_DEACTIVATE) is True
            if i == 5:
                assert node.change_state(Transition.TRANSITION_CLEANUP) is True
                assert node.change_state(Transition.TRANSITION_CONFIGURE) is True
            assert node.change_state(Transition.TRANSITION_ACTIVATE) is True
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(5)
    assert node.get_state() == "active"
    # counters restart at configure: they cover the frames since the cleanup/configure
    counts = settled_counts(node)
    assert counts["frames_failed"] == 0 and counts["frames_bad"] == 0
    assert counts["frames_processed"] > 0
    log = node.log()
    assert log.count("inactive: not taking frames") >= 6 and "cleaned up: model released" in log
    assert "Traceback" not in log
    assert all("injected inference fault" in ln for ln in log.splitlines() if "frame failed" in ln)
    stats = node.send_and_wait(pub, rgb_image_msg(_frame(60), 400.0, "after"), STATS)
    assert stats.key_frame
    assert node.proc.poll() is None
    node.node.destroy_publisher(pub)


@pytest.mark.parametrize("how,delay_s", [("SIGINT", 60.0), ("SIGTERM", 2.0), ("shutdown transition", 2.0)])
def test_shutdown_while_the_worker_is_busy(ros_domain, tmp_path, how, delay_s):
    """SIGINT with inference stuck for 60 s (longer than the join bound: the process still
    exits, saying it stopped waiting), SIGTERM and the shutdown transition with a 2 s frame."""
    log = tmp_path / "node.log"
    # a name of its own per case: the previous case's node may still be in the graph, and a
    # get_state sent to its dead service is never answered
    name = "mpvss_busy_" + how.replace(" ", "_").lower()
    with open(log, "wb") as f:
        proc = subprocess.Popen(node_args("-p", f"model:={tmp_path}", "-r", "image:=/busy_image",
                                          "-p", "input_reliability:=reliable", "-p", "diagnostics_period_s:=0.2",
                                          # its own name and topics: the module's node is still running
                                          # (with the same name, a lifecycle service call could
                                          # be answered by either node)
                                          "-r", f"__node:={name}",
                                          "-r", "/diagnostics:=/busy_diagnostics", delay_s=delay_s, autostart=True),
                                stdout=f, stderr=subprocess.STDOUT)
    client = RosClient(f"/{name}")
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active")
        client.subscribe("/busy_diagnostics", DiagnosticArray)
        pub = _publisher(client, "/busy_image")
        pub.publish(rgb_image_msg(_frame(10), 1.0))

        def busy():  # the worker has taken the frame and is inside inference
            d = diagnostics(client, topic="/busy_diagnostics")
            return d and d[0]["frames_received"] == "1" and d[0]["frames_pending"] == "0" \
                and d[0]["frames_processed"] == "0"
        wait_for(busy, 30, "the worker busy with the frame")
        t0 = time.monotonic()
        if how == "shutdown transition":
            assert client.change_state(Transition.TRANSITION_ACTIVE_SHUTDOWN) is True
            assert client.get_state() == "finalized"
            os.kill(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, getattr(signal, how))
        code = proc.wait(EXIT_BOUND_S)  # raises TimeoutExpired on a hang
        print(f"{how}: exited with {code} after {time.monotonic() - t0:.1f} s")
        assert code == 0, log.read_text(errors="replace")
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "frame failed" not in text
        if delay_s > 10:
            assert "the frame in inference did not finish within 10 s; not waiting for it" in text
    finally:
        client.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
