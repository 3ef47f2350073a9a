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
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from test_reliability_helpers import settled_counts
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
    (dict(data=b"not an image", format="jpeg"), "not a JPEG or PNG, or its header cannot be read (format 'jpeg')"),
    (dict(data=b""), "compressed image with no data"),
    (dict(format="16UC1; compressedDepth png"), "compressedDepth images carry depth, not colour"),
    (dict(format="bayer_rggb8; jpeg compressed"),
     "compressed Bayer mosaics are not supported (format 'bayer_rggb8; jpeg compressed')"),
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
    assert C.check_compressed(msg) == (80, 48)
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(C.ImageError, match="image 80x48 has more than max_image_pixels=100 pixels"):
        C.compressed_to_rgb(msg, max_pixels=100)
    assert not decoded  # refused before decoding


def test_other_formats_are_refused_before_decoding(monkeypatch):
    ok, webp = cv2.imencode(".webp", RGB)  # OpenCV would decode it, at whatever size it declares
    assert ok
    msg = _compressed(RGB, "png")
    msg.format, msg.data = "webp", webp.tobytes()
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(C.ImageError, match="not a JPEG or PNG"):
        C.compressed_to_rgb(msg)


def test_jpeg_header_walk():
    """The frame size past APPn segments (an EXIF thumbnail carries its own, smaller frame header),
    fill bytes and stray bytes between segments, for baseline and progressive JPEG."""
    base = bytes(_compressed(RGB, "jpeg").data)
    ok, progressive = cv2.imencode(".jpg", RGB, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    ok, thumb = cv2.imencode(".jpg", RGB[:8, :8])
    payload = b"Exif\x00\x00" + thumb.tobytes()
    exif = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    app0_end = 4 + int.from_bytes(base[4:6], "big")  # after the JFIF segment
    variants = {"baseline": base, "progressive": progressive.tobytes(), "exif thumbnail": base[:2] + exif + base[2:],
                "fill bytes": base[:2] + b"\xff\xff\xff" + base[2:],
                "stray byte": base[:app0_end] + b"\x00" + base[app0_end:]}  # libjpeg warns, and decodes
    for name, data in variants.items():
        assert C.compressed_size(data) == (80, 48), name
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 80, 3), name
    assert b"\xff\xc2" in variants["progressive"]  # the progressive frame header was the one read
    for broken in (b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x00", b"\xff\xd8\xff\xda\x00\x08", b"GIF89a", base[:20]):
        assert C.compressed_size(broken) is None
    png = bytes(_compressed(RGB, "png").data)
    assert C.compressed_size(png) == (80, 48) and C.compressed_size(png[:12] + b"XXXX" + png[16:]) is None


@pytest.mark.ros
def test_node_segments_compressed_frames_and_counts_bad_ones(ros_domain, tmp_path):
    log = tmp_path / "node.log"
    args = ["-p", f"model:={tmp_path}", "-r", "image:=/cam/image_raw", "-p", "input_transport:=compressed",
            "-p", "input_reliability:=reliable", "-p", "max_image_pixels:=10000", "-p", "diagnostics_period_s:=0.2"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(node_command(*args, autostart=True), stdout=f, stderr=subprocess.STDOUT)
    client = RosClient()
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active")
        client.subscribe(f"{NODE}/labels", Image)
        client.subscribe("/diagnostics", DiagnosticArray)
        client.wait_matched(f"{NODE}/labels")
        pub = client.node.create_publisher(CompressedImage, "/cam/image_raw/compressed",
                                           QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node on /cam/image_raw/compressed")
        msg = _compressed(RGB, "png", 500.0, "png_frame")
        labels = client.send_and_wait(pub, msg, f"{NODE}/labels", resend_every=2.0)
        expected = VideoSegmenter(ScriptedRunner()).process(RGB, 500.0).labels
        np.testing.assert_array_equal(image_msg_to_array(labels), expected)
        bad = _compressed(RGB, "jpeg", 501.0, "broken")
        bad.data = bytes(bad.data)[:300]  # headers intact, scan data cut off
        pub.publish(bad)
        too_big = _compressed(np.zeros((2, 9000, 3), np.uint8), "png", 501.5, "big")
        pub.publish(too_big)  # 18000 pixels, over the max_image_pixels the node was started with
        wait_for(lambda: "bad image skipped: image 9000x2 has more than max_image_pixels=10000 pixels"
                 in log.read_text(errors="replace"), 30, "the oversized frame logged")
        # still serving after them, and both counted: the truncated JPEG (whatever its decoder
        # makes of it: a failed decode is a bad frame) and the oversized PNG (bad, never decoded)
        again = client.send_and_wait(pub, _compressed(RGB, "png", 502.0, "after"), f"{NODE}/labels",
                                     resend_every=2.0)
        np.testing.assert_array_equal(image_msg_to_array(again), expected)
        counts = settled_counts(client)
        assert counts["frames_bad"] >= 1 and counts["frames_failed"] == 0
        assert counts["frames_received"] == counts["frames_processed"] + counts["frames_dropped"] + counts["frames_bad"]
    finally:
        client.close()
        stop_process(proc)
