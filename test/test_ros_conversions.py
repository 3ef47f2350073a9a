"""sensor_msgs/Image <-> numpy, parameter checks, mailbox and class statistics (no DDS)."""
from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
from mpvss_ros.data.encodings import to_rgb
from mpvss_ros.ros import conversions as C
from mpvss_ros.ros import params as P
from mpvss_ros.ros.publishers import class_stats
from mpvss_ros.ros.worker import Mailbox
from sensor_msgs.msg import Image
from std_msgs.msg import Header


def _msg(arr: np.ndarray, encoding: str, step: int | None = None) -> Image:
    msg = Image()
    msg.height, msg.width = arr.shape[:2]
    msg.encoding = encoding
    row = arr.shape[1] * (arr.shape[2] if arr.ndim == 3 else 1)
    msg.step = step or row
    padded = np.zeros((arr.shape[0], msg.step), np.uint8)
    padded[:, :row] = arr.reshape(arr.shape[0], row)
    msg.data = padded.tobytes()
    return msg


RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding,pixels", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], 2)),
    ("bgra8", np.concatenate([RGB[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], 2)),
])
@pytest.mark.parametrize("pad", [0, 5])
def test_color_encodings_to_rgb_with_and_without_step_padding(encoding, pixels, pad):
    pixels = np.ascontiguousarray(pixels)
    msg = _msg(pixels, encoding, step=pixels.shape[1] * pixels.shape[2] + pad)
    np.testing.assert_array_equal(C.image_to_rgb(msg), RGB)


@pytest.mark.parametrize("encoding,cell", [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"),
                                           ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")])
def test_bayer_mosaics_demosaic_to_their_colour(encoding, cell):
    """A flat colour mosaiced in the named 2x2 cell (row-major) comes back as that colour inside
    the image (a swapped pattern would swap red and blue)."""
    colour = {"R": 200, "G": 100, "B": 40}
    mosaic = np.zeros((8, 10), np.uint8)
    for i, ch in enumerate(cell):
        mosaic[i // 2::2, i % 2::2] = colour[ch]
    rgb = C.image_to_rgb(_msg(mosaic, encoding))
    assert rgb.shape == (8, 10, 3)
    np.testing.assert_array_equal(rgb[2:-2, 2:-2].reshape(-1, 3), np.tile([200, 100, 40], (4 * 6, 1)))


@pytest.mark.parametrize("encoding,order", [("yuv422", "UYVY"), ("uyvy", "UYVY"),
                                            ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_packed_yuv422_byte_orders(encoding, order):
    """Each pixel's Y is its brightness, and the pair's U / V its chroma, in the named byte order."""
    h, w = 4, 6
    ramp = np.arange(h * w, dtype=np.uint8).reshape(h, w) * 9 + 20  # distinct, increasing
    for u, v, check in ((128, 128, "grey"), (128, 230, "red"), (230, 128, "blue")):
        luma = ramp if check == "grey" else np.full((h, w), 90, np.uint8)  # mid grey: no clipping
        packed = np.zeros((h, w // 2, 4), np.uint8)
        pos = {c: order.index(c) for c in "UV"}
        ys = [i for i, c in enumerate(order) if c == "Y"]
        packed[..., pos["U"]], packed[..., pos["V"]] = u, v
        packed[..., ys[0]], packed[..., ys[1]] = luma[:, 0::2], luma[:, 1::2]
        rgb = C.image_to_rgb(_msg(packed.reshape(h, w, 2), encoding)).astype(int)
        if check == "grey":
            assert (np.abs(rgb[..., 0] - rgb[..., 2]) <= 1).all() and (np.abs(rgb[..., 1] - rgb[..., 0]) <= 1).all()
            assert (np.diff(rgb[..., 1].ravel()) > 0).all()  # brightness follows Y pixel by pixel
        elif check == "red":
            assert (rgb[..., 0] > rgb[..., 2] + 50).all()
        else:
            assert (rgb[..., 2] > rgb[..., 0] + 50).all()


def test_bag_images_decode_like_the_node():
    """Images read back from a bag go through the same encodings as the node's subscription."""
    from mpvss_ros.data.bag import decode_image

    mosaic = np.random.default_rng(1).integers(0, 256, (6, 8), dtype=np.uint8)
    packed = np.random.default_rng(2).integers(0, 256, (4, 6, 2), dtype=np.uint8)
    for arr, enc in ((RGB, "bgr8"), (mosaic, "bayer_gbrg8"), (packed, "yuv422_yuy2"), (mosaic, "mono8")):
        msg = _msg(arr, enc, step=arr.shape[1] * (arr.shape[2] if arr.ndim == 3 else 1) + 3)
        np.testing.assert_array_equal(decode_image(msg), C.image_to_rgb(msg))
    np.testing.assert_array_equal(decode_image(_msg(RGB, "8UC3")), RGB)
    with pytest.raises(ValueError, match="even width"):
        decode_image(_msg(np.zeros((4, 5, 2), np.uint8), "yuyv"))


def test_packed_yuv_needs_an_even_width():
    with pytest.raises(C.ImageError, match="yuv422 needs an even width, got 5x4"):
        C.image_to_rgb(_msg(np.zeros((4, 5, 2), np.uint8), "yuv422"))
    assert C.image_to_rgb(_msg(np.zeros((3, 5), np.uint8), "bayer_rggb8")).shape == (3, 5, 3)  # odd: fine


def test_mono8_and_zero_copy_rgb8_view():
    grey = RGB[..., 0].copy()
    np.testing.assert_array_equal(C.image_to_rgb(_msg(grey, "mono8")), np.repeat(grey[..., None], 3, 2))
    msg = _msg(RGB, "rgb8", step=7 * 3 + 3)
    view = C.image_view(msg)
    assert not view.flags.owndata  # a view into the message buffer, not a copy
    np.testing.assert_array_equal(view, RGB)


def test_last_row_without_padding_is_accepted():
    msg = _msg(RGB, "rgb8", step=7 * 3 + 4)
    msg.data = bytes(msg.data)[:-4]  # some drivers omit the padding of the last row
    np.testing.assert_array_equal(C.image_to_rgb(msg), RGB)


@pytest.mark.parametrize("change,reason", [
    (dict(encoding="16UC1"), "unsupported encoding '16UC1' (supported: rgb8, bgr8, rgba8, bgra8, mono8, yuv422, "
                                    "uyvy, yuv422_yuy2, yuyv, bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8)"),
    (dict(height=0), "empty image 7x0"),
    (dict(step=20), "step 20 is smaller than width*channels = 21 for rgb8"),
    (dict(data=bytes(50)), "data has 50 bytes, 7x5 rgb8 with step 21 needs 105"),
])
def test_bad_images_raise_one_line_reasons(change, reason):
    msg = _msg(RGB, "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(C.ImageError) as err:
        C.image_to_rgb(msg)
    assert str(err.value) == reason


def test_big_endian_flag_is_meaningless_for_8_bit_channels():
    msg = _msg(RGB, "rgb8")
    msg.is_bigendian = True  # some drivers set it; cv_bridge ignores it for 8-bit encodings
    np.testing.assert_array_equal(C.image_to_rgb(msg), RGB)



class _RecordingBridge:
    """Stands in for cv_bridge (apt ROS 2 has it, the PyPI wheels do not): records what it is
    given and converts as our own path does."""

    def __init__(self):
        self.seen = []

    def imgmsg_to_cv2(self, msg, desired_encoding):
        assert desired_encoding == "rgb8"
        self.seen.append(msg)
        return to_rgb(C.image_view(msg), msg.encoding.lower())


def test_cv_bridge_gets_only_the_layouts_it_reads_right(monkeypatch):
    bridge = _RecordingBridge()
    monkeypatch.setattr(C, "_BRIDGE", bridge)
    plain = _msg(RGB, "rgb8")
    whole_pixel_padding = _msg(RGB, "bgr8", step=7 * 3 + 6)
    whole_pixel_padding.data = _msg(RGB[..., ::-1].copy(), "bgr8", step=7 * 3 + 6).data
    partial_pixel_padding = _msg(RGB, "rgb8", step=7 * 3 + 5)  # cv_bridge would shear the rows
    short_last_row = _msg(RGB, "rgb8", step=7 * 3 + 6)
    short_last_row.data = bytes(short_last_row.data)[:-6]  # cv_bridge: buffer too small
    big_endian = _msg(RGB, "rgb8")
    big_endian.is_bigendian = True  # cv_bridge calls ndarray.newbyteorder (not in NumPy 2)
    for msg in (plain, whole_pixel_padding, partial_pixel_padding, short_last_row, big_endian):
        np.testing.assert_array_equal(C.image_to_rgb(msg), RGB)
    assert [id(m) for m in bridge.seen] == [id(plain), id(whole_pixel_padding)]


def test_cv_bridge_whose_compiled_part_does_not_import_is_not_used(monkeypatch):
    """A cv_bridge built for NumPy 1.x under NumPy 2 imports, and only its first conversion
    imports the extension that fails: load_bridge finds that out at once."""
    package = types.ModuleType("cv_bridge")
    package.CvBridge = _RecordingBridge
    monkeypatch.setitem(sys.modules, "cv_bridge", package)
    monkeypatch.setitem(sys.modules, "cv_bridge.boost", types.ModuleType("cv_bridge.boost"))
    monkeypatch.setitem(sys.modules, "cv_bridge.boost.cv_bridge_boost", None)  # its import raises
    assert C.load_bridge() is None
    extension = types.ModuleType("cv_bridge.boost.cv_bridge_boost")
    extension.cvtColor2 = extension.getCvType = lambda *args: None
    monkeypatch.setitem(sys.modules, "cv_bridge.boost.cv_bridge_boost", extension)
    assert isinstance(C.load_bridge(), _RecordingBridge)

def test_max_pixels():
    with pytest.raises(C.ImageError, match="more than max_image_pixels=34"):
        C.check_image(_msg(RGB, "rgb8"), max_pixels=34)
    C.check_image(_msg(RGB, "rgb8"), max_pixels=35)


def test_outputs_round_trip_through_image_messages():
    header = Header(frame_id="cam")
    labels = np.arange(35, dtype=np.uint8).reshape(5, 7)
    conf = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    m = C.labels_to_image(labels, header)
    assert (m.encoding, m.step, m.header.frame_id) == ("mono8", 7, "cam")
    np.testing.assert_array_equal(C.image_msg_to_array(m), labels)
    m = C.float_to_image(conf, header)
    assert (m.encoding, m.step) == ("32FC1", 28)
    np.testing.assert_array_equal(C.image_msg_to_array(m), conf)
    np.testing.assert_array_equal(C.image_msg_to_array(C.rgb_to_image(RGB, header)), RGB)


def test_class_stats_values():
    labels = np.array([[0, 0, 1, 255]], np.uint8)
    conf = np.array([[0.5, 0.7, 0.9, 0.1]], np.float32)
    mean, fraction = class_stats(labels, conf, 19)
    np.testing.assert_allclose(mean[:3], [0.6, 0.9, 0.0])
    np.testing.assert_allclose(fraction[:3], [0.5, 0.25, 0.0])
    assert mean.shape == fraction.shape == (19,)


def test_parameter_checks_and_class_resolution():
    assert P.check_value("schedule.interval", 0) == "must be in 1..10000, got 0"
    assert P.check_value("overlay_alpha", "x") == "must be a number, got 'x'"
    assert P.check_value("overlay_alpha", 1) is None and P.coerce("overlay_alpha", 1) == 1.0
    assert P.check_value("providers", []) is not None
    assert P.check_value("use_sim_time", True) is None  # not ours
    names = ["road", "traffic light", "car"]
    assert P.resolve_confidence_classes(["Traffic Light", "car", "", "traffic_light"], names) == \
        [(1, "traffic_light"), (2, "car")]
    with pytest.raises(ValueError, match="unknown class 'bus'"):
        P.resolve_confidence_classes(["bus"], names)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        P.resolve_model_dir("/no/such/model")


def test_mailbox_keeps_only_the_newest_frame():
    box = Mailbox()
    assert box.put(1) is False
    assert box.put(2) is True  # 1 superseded: the caller counts it as dropped
    assert box.pending() == 1
    assert box.take(0) == 2 and box.pending() == 0
    got = []
    t = threading.Thread(target=lambda: got.append(box.take(5)))
    t.start()
    box.put(3)
    t.join(5)
    assert got == [3]
    box.close()
    assert box.take(5) is None  # closed: returns at once
