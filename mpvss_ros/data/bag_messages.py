"""rosbag2 message contents for `data.bag`: building the camera, ground-truth and camera_info
messages a bag holds, and decoding images read back (rosbags' type store; no rclpy)."""
from __future__ import annotations

import struct

import numpy as np

from mpvss_ros.data.encodings import BYTES_PER_PIXEL, compressed_size, decode_compressed_rgb, size_problem, to_rgb

FRAME_ID = "camera"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
IMAGE_FORMATS = ("raw", "png", "jpeg")
JPEG_QUALITY = 95
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STRING_TYPE = "std_msgs/msg/String"


def typestore():
    """The ROS 2 Kilted type store (message definitions and hashes match the Kilted wheels)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def stamp(ts, ns: int):
    Time = ts.types["builtin_interfaces/msg/Time"]
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(ts, ns: int):
    return ts.types["std_msgs/msg/Header"](stamp=stamp(ts, ns), frame_id=FRAME_ID)


def image_message(ts, ns: int, array: np.ndarray, encoding: str):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    return ts.types[IMAGE_TYPE](
        header=header(ts, ns), height=array.shape[0], width=array.shape[1], encoding=encoding,
        is_bigendian=0, step=array.shape[1] * channels, data=array.reshape(-1))


def compressed_message(ts, ns: int, rgb: np.ndarray, image_format: str):
    """A CompressedImage of an RGB image as compressed_image_transport writes it: the format field
    is "<encoding>; <png|jpeg> compressed <encoding>", the data BGR-ordered PNG / JPEG."""
    import cv2

    ext, params = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]) if image_format == "png" else \
        (".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    ok, data = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} image as {image_format}")
    return ts.types[COMPRESSED_TYPE](header=header(ts, ns), format=f"rgb8; {image_format} compressed bgr8",
                                     data=data.reshape(-1))


def camera_info_message(ts, ns: int, height: int, width: int):
    # Nominal intrinsics (horizontal field of view about 48 degrees, like Cityscapes' camera).
    f = 1.1 * width
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types[CAMERA_INFO_TYPE](
        header=header(ts, ns), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], np.float64),
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0, binning_y=0, roi=roi)


def decode_image(msg) -> np.ndarray:
    enc = {"8uc1": "mono8", "8uc3": "rgb8"}.get(msg.encoding.lower(), msg.encoding.lower())
    channels = BYTES_PER_PIXEL.get(enc)
    if channels is None:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    problem = size_problem(enc, msg.height, msg.width)
    if problem:
        raise ValueError(problem)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    rows = data[: msg.height * msg.step].reshape(msg.height, msg.step)[:, : msg.width * channels]
    return np.ascontiguousarray(to_rgb(rows.reshape(msg.height, msg.width, channels), enc))


def decode_compressed(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a JPEG / PNG CompressedImage (the header is read first, as the
    node does, so a file that is neither is refused before OpenCV sees it)."""
    data = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(bytes(msg.data), np.uint8)
    if compressed_size(memoryview(data)) is None:
        raise ValueError(f"compressed image is not a JPEG or PNG, or its header cannot be read (format {msg.format[:32]!r})")
    rgb = decode_compressed_rgb(data)
    if rgb is None:
        raise ValueError(f"cannot decode compressed image (format {msg.format[:32]!r})")
    return rgb


def decode_mono8(msg) -> np.ndarray:
    if msg.encoding.lower() not in ("mono8", "8uc1"):
        raise ValueError(f"label image must be mono8, got {msg.encoding!r}")
    data = np.asarray(msg.data, dtype=np.uint8)
    return data[: msg.height * msg.step].reshape(msg.height, msg.step)[:, : msg.width].copy()


def cdr_header_stamp_ns(raw: bytes) -> int:
    """Header stamp of a serialised message that starts with std_msgs/Header, read in place.

    CDR: 4 bytes of encapsulation (byte 1: 0 big-, 1 little-endian), then the header's
    builtin_interfaces/Time (int32 sec, uint32 nanosec) — no need to decode a whole image.
    """
    if len(raw) < 12 or raw[1] not in (0, 1):
        raise ValueError("not a CDR-encoded message")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec
