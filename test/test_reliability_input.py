"""Bad and unusual images over real DDS, into one running node: unsupported encodings (one
throttled error each, input status ERROR), an image-size limit changed at run time, steps that
are huge or impossible, random header fields, a resolution change and time going backwards
mid-stream. Empty, short, big-endian and narrow-step frames and padded rows are covered in
test_ros_outputs.py / test_ros_conversions.py and not repeated here."""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mpvss_ros.msg import ClassStats
from mpvss_ros.ros.conversions import image_msg_to_array
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from test_reliability_helpers import diagnostics, running_node, settled_counts
from test_ros_helpers import NODE, rgb_image_msg, scripted_labels, wait_for

pytestmark = pytest.mark.ros
STATS, LABELS = f"{NODE}/class_stats", f"{NODE}/labels"


@pytest.fixture(scope="module")
def node(ros_domain, tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    with running_node(log, "-p", f"model:={log.parent}", "-r", "image:=/image",
                      "-p", "input_reliability:=reliable", "-p", "diagnostics_period_s:=0.2",
                      "-p", "schedule.interval:=100", "-p", "input_depth:=50") as (client, _):
        client.subscribe(STATS, ClassStats)
        client.subscribe(LABELS, Image)
        client.subscribe("/diagnostics", DiagnosticArray)
        client.wait_matched(STATS)
        client.wait_matched(LABELS)
        client.pub = client.image_publisher("/image")
        wait_for(lambda: diagnostics(client), 30, "/diagnostics")
        yield client


def _frame(value: int, h: int = 48, w: int = 80) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = value
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    return img


def _good(node, stamp: float, value: int = 130, stream: str = "cam", h: int = 48, w: int = 80):
    msg = rgb_image_msg(_frame(value, h, w), stamp, stream)
    return node.send_and_wait(node.pub, msg, STATS)


def _input_status(node, level: int, contains: str = ""):
    """The newest diagnostics once its input status has ``level`` and a message with ``contains``."""
    def check():
        d = diagnostics(node)
        return d if d and d[2].level == level and contains in d[2].message else None
    return wait_for(check, 30, f"input status level {level} {contains!r}")


@pytest.mark.parametrize("encoding", ["bayer_rggb16", "16UC1", "nv21"])
def test_unsupported_encoding_is_skipped_with_one_throttled_error(node, encoding):
    before = settled_counts(node)
    rgb = _frame(100)
    start = time.monotonic()
    for i in range(15):  # a camera misconfigured at 30 Hz: every frame is unusable
        msg = rgb_image_msg(rgb, 50.0 + i / 30, "bayer")
        msg.encoding = encoding
        node.pub.publish(msg)
        time.sleep(1 / 30)
    _, _, status = _input_status(node, DiagnosticStatus.ERROR, encoding)
    assert status.message == (f"frames cannot be segmented: unsupported encoding '{encoding}' "
                              "(supported: rgb8, bgr8, rgba8, bgra8, mono8, yuv422, uyvy, yuv422_yuy2, yuyv, "
                              "bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8)")
    counts = settled_counts(node)
    elapsed = time.monotonic() - start
    assert counts["frames_bad"] - before["frames_bad"] == 15
    assert counts["frames_processed"] == before["frames_processed"]  # none reached inference
    line = f"bad image skipped: unsupported encoding '{encoding}'"
    wait_for(lambda: line in node.log(), 30, "the error in the log")
    lines = [ln for ln in node.log().splitlines() if line in ln]
    assert 1 <= len(lines) <= 1 + elapsed / 5.0, lines  # throttled per kind: 1 line per 5 s
    # the stream recovers as soon as a usable frame arrives
    _good(node, 60.0)
    assert _input_status(node, DiagnosticStatus.OK)[2].message == "ok"


def test_image_size_limit_is_a_live_parameter(node):
    assert all(r.successful for r in node.set_parameters(max_image_pixels=48 * 80 - 1))
    try:
        node.pub.publish(rgb_image_msg(_frame(100), 70.0, "limit"))
        _input_status(node, DiagnosticStatus.ERROR, "image 80x48 has more than max_image_pixels=3839 pixels")
    finally:
        assert all(r.successful for r in node.set_parameters(max_image_pixels=4096 * 4096))
    (res,) = node.set_parameters(max_image_pixels=0)
    assert not res.successful and "max_image_pixels must be in 1..1073741824" in res.reason
    _good(node, 71.0, stream="limit")


def test_huge_and_impossible_steps(node):
    # one row with a 2^32-1 byte step: legal (the step only matters between rows), segmented
    # without allocating anything near 4 GB
    one_row = rgb_image_msg(_frame(130, 1, 80), 80.0, "step")
    one_row.step = 2**32 - 1
    stats = node.send_and_wait(node.pub, one_row, STATS)
    assert stats.key_frame
    labels = wait_for(lambda: [m for m in node.messages(LABELS) if m.header.stamp == stats.header.stamp],
                      30, "labels of the one-row frame")[0]
    assert (labels.height, labels.width) == (1, 80)
    assert (image_msg_to_array(labels) == 10).all()
    # the same step on two rows needs > 4 GB of data: rejected from the header
    two_rows = rgb_image_msg(_frame(130, 2, 80), 81.0, "step")
    two_rows.step = 2**32 - 1
    node.pub.publish(two_rows)
    _input_status(node, DiagnosticStatus.ERROR, "data has 480 bytes, 80x2 rgb8 with step 4294967295 needs 4294967535")
    _good(node, 82.0, stream="step")


def test_random_header_fields_never_take_the_node_down(node):
    """200 messages with random sizes, steps, encodings and data lengths: each is segmented
    or rejected, and every one is accounted for."""
    before = settled_counts(node)
    # a publisher history deep enough to hold the whole burst (reliable delivery of all 200)
    pub = node.node.create_publisher(Image, "/image", QoSProfile(depth=250, reliability=ReliabilityPolicy.RELIABLE))
    wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node's subscription")
    rng = np.random.default_rng(0)
    dims = [0, 1, 2, 3, 7, 65535, 2**32 - 1]
    for i in range(200):
        msg = Image()
        msg.header.stamp.sec, msg.header.frame_id = 90 + i, "fuzz"
        msg.height, msg.width = int(rng.choice(dims)), int(rng.choice(dims))
        msg.encoding = str(rng.choice(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "RGB8", "", "8UC3"]))
        row = msg.width * 4
        msg.step = int(rng.choice([0, row % 2**32, (row + 1) % 2**32, 2**32 - 1, int(rng.integers(0, 99))]))
        msg.is_bigendian = bool(rng.random() < 0.1)
        msg.data = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        pub.publish(msg)
        time.sleep(0.002)
    after = settled_counts(node)
    node.node.destroy_publisher(pub)
    assert after["frames_received"] - before["frames_received"] == 200
    assert after["frames_failed"] == before["frames_failed"]  # nothing slipped past the checks
    assert after["frames_bad"] - before["frames_bad"] > 150
    _good(node, 400.0, stream="after_fuzz")  # still serving


def test_resolution_change_and_time_going_backwards_reset_the_key_frame(node):
    flags = [_good(node, 500.0 + 0.1 * i, stream="loop").key_frame for i in range(3)]
    assert flags == [True, False, False]
    # the camera switches resolution mid-stream: a new key frame at the new size
    stats = _good(node, 500.3, value=52, stream="loop", h=96, w=160)
    assert stats.key_frame and stats.frames_since_key == 0
    labels = [m for m in node.messages(LABELS) if m.header.stamp == stats.header.stamp][-1]
    np.testing.assert_array_equal(image_msg_to_array(labels), scripted_labels(_frame(52, 96, 160)))
    assert not _good(node, 500.4, value=52, stream="loop", h=96, w=160).key_frame
    # a bag loops: message time jumps back, the key state is reset
    stats = _good(node, 500.0, value=26, stream="loop", h=96, w=160)
    assert stats.key_frame and stats.frames_since_key == 0
    assert not _good(node, 500.1, value=26, stream="loop", h=96, w=160).key_frame
    for reason in ("resolution changed from 80x48 to 160x96", "time went backwards (500.000 s < 500.400 s)"):
        wait_for(lambda: f"key-frame state reset: {reason}" in node.log(), 30, f"'{reason}' in the log")
