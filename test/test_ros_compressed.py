"""`input_transport: compressed` over real DDS: JPEG / PNG sensor_msgs/CompressedImage on
<image>/compressed (image_transport's name, after remapping `image`), decoded off the callback
thread; undecodable frames are counted as bad and logged, and the node keeps serving."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from mpvss_ros.ros import conversions as C
from mpvss_ros.ros.conversions import image_msg_to_array
from mpvss_ros.runtime.segmenter import VideoSegmenter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from test_ros_helpers import NODE, RosClient, ScriptedRunner, node_command, stop_process, wait_for

RGB = np.random.default_rng(4).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def _compressed(rgb: np.ndarray, fmt: str, stamp_s: float = 0.0, frame_id: str = "cam") -> CompressedImage:
    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.frame_id = int(stamp_s), frame_id
    msg.format = fmt
    ok, buf = cv2.imencode(".png" if "png" in fmt else ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg.data = buf.tobytes()
    return msg


def test_compressed_png_is_lossless_and_jpeg_close():
    np.testing.assert_array_equal(C.compressed_to_rgb(_compressed(RGB, "png")), RGB)
    smooth = cv2.GaussianBlur(RGB, (0, 0), 3)
    jpeg = C.compressed_to_rgb(_compressed(smooth, "rgb8; jpeg compressed bgr8")).astype(int)
    assert np.abs(jpeg - smooth).mean() < 3  # lossy, but the colours stay (not swapped)


@pytest.mark.parametrize("change,reason", [
    (dict(data=b"not an image", format="jpeg"), "cannot decode compressed image (format 'jpeg')"),
    (dict(data=b""), "compressed image with no data"),
    (dict(format="16UC1; compressedDepth png"), "compressedDepth images carry depth, not colour"),
])
def test_bad_compressed_images_raise_one_line_reasons(change, reason):
    msg = _compressed(RGB, "png")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(C.ImageError) as err:
        C.compressed_to_rgb(msg)
    assert str(err.value) == reason


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_oversized_compressed_image_is_refused_from_its_header(fmt, monkeypatch):
    msg = _compressed(RGB, fmt)
    assert C.compressed_size(bytes(msg.data)) == (80, 48)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(C.ImageError, match="image 80x48 has more than max_image_pixels=100 pixels"):
        C.compressed_to_rgb(msg, max_pixels=100)
    assert not decoded  # refused before decoding
    assert C.compressed_size(b"GIF89a....") is None and C.compressed_size(b"\xff\xd8\x00") is None


@pytest.mark.ros
def test_node_segments_compressed_frames_and_counts_bad_ones(ros_domain, tmp_path):
    log = tmp_path / "node.log"
    args = ["-p", f"model:={tmp_path}", "-r", "image:=/cam/image_raw", "-p", "input_transport:=compressed",
            "-p", "input_reliability:=reliable"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(node_command(*args, autostart=True), stdout=f, stderr=subprocess.STDOUT)
    client = RosClient()
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active")
        client.subscribe(f"{NODE}/labels", Image)
        client.wait_matched(f"{NODE}/labels")
        pub = client.node.create_publisher(CompressedImage, "/cam/image_raw/compressed",
                                           QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node on /cam/image_raw/compressed")
        msg = _compressed(RGB, "png", 500.0, "png_frame")
        labels = client.send_and_wait(pub, msg, f"{NODE}/labels", resend_every=2.0)
        expected = VideoSegmenter(ScriptedRunner()).process(RGB, 500.0).labels
        np.testing.assert_array_equal(image_msg_to_array(labels), expected)
        bad = _compressed(RGB, "jpeg", 501.0, "broken")
        bad.data = b"\xff\xd8 truncated"
        pub.publish(bad)
        wait_for(lambda: "bad image skipped: cannot decode compressed image (format 'jpeg')"
                 in log.read_text(errors="replace"), 30, "the bad frame logged")
        # still serving after it
        again = client.send_and_wait(pub, _compressed(RGB, "png", 502.0, "after"), f"{NODE}/labels",
                                     resend_every=2.0)
        np.testing.assert_array_equal(image_msg_to_array(again), expected)
    finally:
        client.close()
        stop_process(proc)
