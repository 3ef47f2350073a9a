"""What the node publishes, over real DDS: headers copied from each input, the values of every
output against the offline VideoSegmenter on the same frames, input encodings and step
padding, label formats, bad frames, ~/label_info (transient local) and /diagnostics."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from mpvss_ros.data.labels import PALETTE, TRAIN_CLASS_NAMES, TRAIN_ID_TO_LABEL_ID
from mpvss_ros.msg import ClassStats
from mpvss_ros.ros.conversions import image_msg_to_array
from mpvss_ros.ros.diagnostics import values_of
from mpvss_ros.ros.publishers import overlay
from mpvss_ros.runtime.schedule import KeyFrameSchedule
from mpvss_ros.runtime.segmenter import VideoSegmenter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from test_ros_helpers import (NODE, RosClient, ScriptedRunner, node_command, rgb_image_msg, stop_process,
                              wait_for)

pytestmark = pytest.mark.ros
TOPICS = {"labels": Image, "confidence": Image, "overlay": Image, "class_stats": ClassStats,
          "class_confidence/traffic_light": Image, "class_confidence/car": Image}


@pytest.fixture(scope="module")
def node(ros_domain, tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-p", f"model:={log.parent}", "-r", "image:=/image", "-p", "schedule.interval:=3",
            "-p", "confidence_classes:=['traffic light', 'car']", "-p", "overlay_alpha:=0.25",
            "-p", "input_reliability:=reliable", "-p", "diagnostics_period_s:=0.2"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(node_command(*args, autostart=True), stdout=f, stderr=subprocess.STDOUT)
    client = RosClient()
    client.log = lambda: log.read_text(errors="replace")
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active")
        for name, msg_type in TOPICS.items():
            client.subscribe(f"{NODE}/{name}", msg_type)
            client.wait_matched(f"{NODE}/{name}")
        client.pub = client.image_publisher("/image")
        yield client
    finally:
        client.close()
        stop_process(proc)


def _frames(n: int, h=48, w=80, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _by_header(client, topic, stamp_s, frame_id):
    sec, nsec = int(stamp_s), int(round((stamp_s - int(stamp_s)) * 1e9))
    for m in client.messages(f"{NODE}/{topic}"):
        if (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (sec, nsec, frame_id):
            return m
    return None


def _send(client, rgb, stamp_s, frame_id, encoding="rgb8", pixels=None):
    msg = rgb_image_msg(rgb if pixels is None else pixels, stamp_s, frame_id, encoding)
    client.pub.publish(msg)
    return wait_for(lambda: all(_by_header(client, t, stamp_s, frame_id) for t in TOPICS),
                    30, f"all outputs for {frame_id}@{stamp_s}")


def test_outputs_carry_input_headers_and_equal_offline_segmenter(node):
    frames = _frames(7)
    stamps = [1000.0 + 0.033 * i for i in range(7)]
    offline = VideoSegmenter(ScriptedRunner(), KeyFrameSchedule.create(interval=3))
    for rgb, stamp in zip(frames, stamps):
        _send(node, rgb, stamp, "cam_left")
        expected = offline.process(rgb, stamp, stream="cam_left")
        labels = _by_header(node, "labels", stamp, "cam_left")
        assert (labels.encoding, labels.height, labels.width) == ("mono8", 48, 80)
        np.testing.assert_array_equal(image_msg_to_array(labels), expected.labels)
        conf = _by_header(node, "confidence", stamp, "cam_left")
        assert conf.encoding == "32FC1"
        np.testing.assert_allclose(image_msg_to_array(conf), expected.confidence, atol=1e-6)
        ov = _by_header(node, "overlay", stamp, "cam_left")
        assert ov.encoding == "rgb8"
        np.testing.assert_array_equal(image_msg_to_array(ov), overlay(rgb, expected.labels, 0.25))
        for topic, train_id in (("class_confidence/traffic_light", 6), ("class_confidence/car", 13)):
            np.testing.assert_allclose(image_msg_to_array(_by_header(node, topic, stamp, "cam_left")),
                                       expected.class_probability(train_id), atol=1e-6)
        stats = _by_header(node, "class_stats", stamp, "cam_left")
        assert stats.key_frame == expected.key_frame
        assert list(stats.class_names) == list(TRAIN_CLASS_NAMES)
        # class statistics are taken on the model's grid, which the output labels up-sample
        model_labels, model_conf = expected.model_labels, expected.model_confidence
        assert model_labels.shape != expected.labels.shape
        counts = np.bincount(model_labels.ravel(), minlength=19)[:19]
        np.testing.assert_allclose(stats.pixel_fraction, counts / model_labels.size, atol=1e-6)
        out_counts = np.bincount(expected.labels.ravel(), minlength=19)[:19]
        np.testing.assert_allclose(stats.pixel_fraction, out_counts / expected.labels.size, atol=0.02)
        cls = int(np.argmax(counts))
        np.testing.assert_allclose(stats.mean_confidence[cls],
                                   model_conf[model_labels == cls].mean(), rtol=1e-5)
    assert [_by_header(node, "class_stats", s, "cam_left").key_frame for s in stamps] == \
        [True, False, False, True, False, False, True]


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "rgb8-padded"])
def test_input_encodings_and_step_padding(node, encoding):
    rgb = _frames(1, seed=3)[0]
    if encoding == "mono8":
        rgb = np.repeat(rgb[..., :1], 3, 2)
        pixels = np.ascontiguousarray(rgb[..., 0])
    elif encoding == "rgb8-padded":
        padded = np.zeros((48, 80 * 3 + 13), np.uint8)  # rows padded to a 253-byte step
        padded[:, :240] = rgb.reshape(48, 240)
        msg = rgb_image_msg(rgb, 2000.0, encoding)
        msg.step, msg.data = padded.shape[1], padded.tobytes()
        node.pub.publish(msg)
        wait_for(lambda: _by_header(node, "labels", 2000.0, encoding), 30, "padded frame")
        pixels = None
    else:
        order = {"bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}[encoding]
        pixels = np.ascontiguousarray(rgb[..., order])
        if encoding.endswith("a8"):
            pixels = np.concatenate([pixels, np.full((48, 80, 1), 7, np.uint8)], axis=2)
    if pixels is not None:
        _send(node, rgb, 2000.0, encoding, encoding=encoding, pixels=pixels)
    expected = VideoSegmenter(ScriptedRunner()).process(rgb, 2000.0)
    np.testing.assert_array_equal(image_msg_to_array(_by_header(node, "labels", 2000.0, encoding)),
                                  expected.labels)


def test_labelid_format_and_label_info_transient_local(node):
    assert all(r.successful for r in node.set_parameters(label_format="labelid"))
    try:
        rgb = _frames(1, seed=5)[0]
        _send(node, rgb, 3000.0, "labelid")
        expected = VideoSegmenter(ScriptedRunner()).process(rgb, 3000.0).labels
        got = image_msg_to_array(_by_header(node, "labels", 3000.0, "labelid"))
        np.testing.assert_array_equal(got, TRAIN_ID_TO_LABEL_ID[expected])
        assert set(np.unique(got)) <= set(TRAIN_ID_TO_LABEL_ID[:19].tolist())
    finally:
        assert all(r.successful for r in node.set_parameters(label_format="trainid"))
    # a late subscriber still receives the class map (transient local)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.subscribe(f"{NODE}/label_info", String, qos)
    info = json.loads(wait_for(lambda: node.messages(f"{NODE}/label_info"), 30, "label_info")[-1].data)
    assert info["class_names"] == list(TRAIN_CLASS_NAMES)
    assert info["label_ids"] == TRAIN_ID_TO_LABEL_ID[:19].tolist()
    assert info["palette"] == PALETTE.tolist()
    assert info["ignore_train_id"] == 255


def _bad(kind: str) -> Image:
    msg = rgb_image_msg(np.zeros((48, 80, 3), np.uint8), 4000.0, kind)
    if kind == "encoding":
        msg.encoding = "nv21"
    elif kind == "step":
        msg.step = 100
    elif kind == "short":
        msg.data = bytes(1000)
    elif kind == "empty":
        msg.height = msg.width = msg.step = 0
        msg.data = b""
    elif kind == "huge":
        msg.height, msg.width = 100_000, 100_000
    return msg


def test_bad_frames_are_counted_skipped_and_logged(node):
    node.subscribe("/diagnostics", DiagnosticArray)
    kinds = ["encoding", "step", "short", "empty", "huge"]

    def diag_with_bad(n):
        msgs = node.messages("/diagnostics")
        return msgs and int(values_of(msgs[-1].status[0])["frames_bad"]) == n and msgs[-1]

    wait_for(lambda: diag_with_bad(0), 30, "/diagnostics")
    reasons = {"encoding": "unsupported encoding 'nv21'", "step": "step 100 is smaller than "
               "width*channels = 240", "short": "data has 1000 bytes", "empty": "empty image 0x0",
               "huge": "more than max_image_pixels=16777216"}
    for i, kind in enumerate(kinds):  # one at a time: each is counted, its reason reported
        node.pub.publish(_bad(kind))
        diag = wait_for(lambda: diag_with_bad(i + 1), 30, f"bad frame {kind} counted")
        assert reasons[kind] in diag.status[0].message
    # the node keeps running: the next good frame is segmented
    _send(node, _frames(1)[0], 4001.0, "after_bad")
    diag = diag_with_bad(len(kinds))
    values = values_of(diag.status[0])
    assert diag.status[0].level == diag.status[0].WARN
    assert values["backend"] == "scripted"
    for key in ("rate_hz", "latency_ms_mean", "frames_dropped", "key_fraction", "frames_pending"):
        assert key in values
    assert all(_by_header(node, "labels", 4000.0, k) is None for k in kinds)
    log = node.log()
    assert "bad image skipped: unsupported encoding 'nv21'" in log
    # the other reasons are logged too, but throttled (one line per 5 s): the first is enough


def test_inference_output_resolution_after_reconfigure(node):
    from lifecycle_msgs.msg import Transition

    assert node.change_state(Transition.TRANSITION_DEACTIVATE) is True
    assert node.change_state(Transition.TRANSITION_CLEANUP) is True
    assert all(r.successful for r in node.set_parameters(output_resolution="inference"))
    try:
        assert node.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert node.change_state(Transition.TRANSITION_ACTIVATE) is True
        wait_for(lambda: node.pub.get_subscription_count() > 0, 30, "image subscription")
        rgb = _frames(1, seed=9)[0]
        _send(node, rgb, 5000.0, "inference")
        expected = VideoSegmenter(ScriptedRunner(), output_size="inference").process(rgb, 5000.0)
        labels = image_msg_to_array(_by_header(node, "labels", 5000.0, "inference"))
        assert labels.shape == (32, 64) == expected.labels.shape  # the runner's input size
        np.testing.assert_array_equal(labels, expected.labels)
        assert image_msg_to_array(_by_header(node, "overlay", 5000.0, "inference")).shape == (32, 64, 3)
    finally:
        node.change_state(Transition.TRANSITION_DEACTIVATE)
        node.change_state(Transition.TRANSITION_CLEANUP)
        node.set_parameters(output_resolution="input")
        node.change_state(Transition.TRANSITION_CONFIGURE)
        node.change_state(Transition.TRANSITION_ACTIVATE)
