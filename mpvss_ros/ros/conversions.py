"""sensor_msgs/Image and CompressedImage <-> numpy.

Input: the header fields are checked first (cheap, in the subscription callback), so a bad
frame is rejected with a one-line reason before it can displace a good one from the mailbox.
The pixels are then viewed without a copy (``np.frombuffer``, honouring ``step`` padding);
cv_bridge is used for the 8-bit colour / grey conversions when it is importable (ROS 2 installs
from apt have it; the PyPI wheels do not) and reads the message right (`_bridge_reads`); otherwise,
and for YUV 4:2:2 and Bayer always, `data/encodings.py` (OpenCV) does the same. Compressed frames (JPEG / PNG) are decoded by OpenCV
in the worker, after a header check of their size.
Output: ``msg.data`` is always assigned ``arr.tobytes()`` — assigning a numpy array goes
element by element (about 500x slower for a 6 MB image).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from mpvss_ros.data.encodings import BYTES_PER_PIXEL, compressed_size, decode_compressed_rgb, size_problem, to_rgb


def load_bridge():
    """cv_bridge's CvBridge (optional: not on PyPI), or None where it cannot convert here.

    Its compiled half is otherwise imported only by the first conversion, so it is imported now:
    one built against another NumPy (apt's cv_bridge for NumPy 1.26 under the NumPy 2 that pip
    puts into a venv over ROS 2 Jazzy) then means no bridge, instead of every frame failing."""
    try:
        from cv_bridge import CvBridge
        from cv_bridge.boost.cv_bridge_boost import cvtColor2, getCvType  # noqa: F401
        return CvBridge()
    except Exception:  # ImportError, or an extension that fails in its module init
        return None


_BRIDGE = load_bridge()
_BRIDGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def _bridge_reads(msg: Image, enc: str) -> bool:
    """Whether cv_bridge's imgmsg_to_cv2 reads this checked message right.

    It views the buffer as ``height`` rows of ``step // bytes per pixel`` whole pixels: a row
    padding that is not whole pixels shears the image (silently), a last row without its padding
    raises. With ``is_bigendian`` set it calls ndarray.newbyteorder, which NumPy 2 removed. Our
    own path reads all of these, so they go there."""
    return not msg.is_bigendian and msg.step % BYTES_PER_PIXEL[enc] == 0 and \
        len(msg.data) >= msg.step * msg.height


class ImageError(ValueError):
    """A frame that cannot be used; the message is one line naming the problem, ``kind`` says
    which check failed (the node throttles its log per kind, so one bad stream cannot hide another)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def check_image(msg: Image, max_pixels: int) -> None:
    """Raise ImageError if the header fields of ``msg`` do not describe usable pixels."""
    enc = msg.encoding.lower()
    if enc not in BYTES_PER_PIXEL:
        name = msg.encoding if len(msg.encoding) <= 32 else msg.encoding[:32] + "..."  # sender-controlled
        raise ImageError(f"unsupported encoding {name!r} (supported: {', '.join(BYTES_PER_PIXEL)})",
                         f"encoding {name}")
    if msg.height == 0 or msg.width == 0:
        raise ImageError(f"empty image {msg.width}x{msg.height}", "empty")
    if msg.height * msg.width > max_pixels:
        raise ImageError(f"image {msg.width}x{msg.height} has more than max_image_pixels={max_pixels} "
                         "pixels", "size")
    # is_bigendian is ignored, as cv_bridge does for these: every supported encoding has 8-bit
    # channels, where byte order means nothing
    problem = size_problem(enc, msg.height, msg.width)
    if problem:
        raise ImageError(problem, "odd size")
    row = msg.width * BYTES_PER_PIXEL[enc]
    if msg.step < row:
        raise ImageError(f"step {msg.step} is smaller than width*channels = {row} for {enc}", "step")
    need = msg.step * (msg.height - 1) + row
    if len(msg.data) < need:
        raise ImageError(f"data has {len(msg.data)} bytes, {msg.width}x{msg.height} {enc} "
                         f"with step {msg.step} needs {need}", "data")


def image_view(msg: Image) -> np.ndarray:
    """Zero-copy (H, W, C) uint8 view of a checked message (step padding skipped).

    Strided over the buffer rather than reshaped, so a last row without its padding needs no
    copy and a huge ``step`` with a short buffer (one row) allocates nothing.
    """
    c = BYTES_PER_PIXEL[msg.encoding.lower()]
    flat = np.frombuffer(msg.data, np.uint8)
    return np.ndarray((msg.height, msg.width, c), np.uint8, buffer=flat, strides=(msg.step, c, 1))


def image_to_rgb(msg: Image, max_pixels: int = 1 << 30) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image message; ImageError with the reason if unusable."""
    check_image(msg, max_pixels)
    enc = msg.encoding.lower()
    # YUV and Bayer always through our table: cv_bridge releases differ in which of those names
    # they know (an unknown one would raise its own exception type in the worker)
    if _BRIDGE is not None and enc in _BRIDGE_ENCODINGS and _bridge_reads(msg, enc):
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    return to_rgb(image_view(msg), enc)  # rgb8: the zero-copy view; consumers only read it


def check_compressed(msg: CompressedImage, max_pixels: int = 1 << 30) -> tuple[int, int]:
    """(width, height) of a JPEG / PNG CompressedImage from its header, or ImageError with the
    reason. Cheap (no decoding), so the subscription callback refuses what the worker would only
    find out by allocating it: other formats, unreadable headers, images over `max_pixels`."""
    fmt = msg.format.lower()
    name = msg.format if len(msg.format) <= 32 else msg.format[:32] + "..."  # sender-controlled
    if "compresseddepth" in fmt:
        raise ImageError("compressedDepth images carry depth, not colour", "format")
    if fmt.startswith("bayer_"):  # a compressed mosaic would decode as a grey image
        raise ImageError(f"compressed Bayer mosaics are not supported (format {name!r})", "format")
    if len(msg.data) == 0:
        raise ImageError("compressed image with no data", "data")
    size = compressed_size(memoryview(msg.data))
    if size is None:
        raise ImageError(f"not a JPEG or PNG, or its header cannot be read (format {name!r})", "decode")
    if size[0] * size[1] > max_pixels:
        raise ImageError(f"image {size[0]}x{size[1]} has more than max_image_pixels={max_pixels} pixels", "size")
    return size


def decode_compressed(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a CompressedImage that `check_compressed` has passed (the node
    checks in its callback and decodes in its worker); ImageError if OpenCV cannot decode it."""
    rgb = decode_compressed_rgb(msg.data)
    if rgb is None:
        name = msg.format if len(msg.format) <= 32 else msg.format[:32] + "..."
        raise ImageError(f"cannot decode compressed image (format {name!r})", "decode")
    return rgb


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = 1 << 30) -> np.ndarray:
    """`check_compressed`, then `decode_compressed`: nothing is decoded that its header does not allow."""
    check_compressed(msg, max_pixels)
    return decode_compressed(msg)


def array_to_image(arr: np.ndarray, encoding: str, header) -> Image:
    """Image message from a C-contiguous (H, W[, C]) array; ``header`` is copied as is."""
    arr = np.ascontiguousarray(arr)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = False
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    return array_to_image(rgb, "rgb8", header)


def labels_to_image(labels: np.ndarray, header) -> Image:
    return array_to_image(labels.astype(np.uint8, copy=False), "mono8", header)


def float_to_image(values: np.ndarray, header) -> Image:
    return array_to_image(values.astype(np.float32, copy=False), "32FC1", header)


def image_msg_to_array(msg: Image) -> np.ndarray:
    """Decode an output message (mono8, rgb8, 32FC1) back to numpy, for clients and tests."""
    if msg.encoding == "32FC1":
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
        return rows[:, : msg.width * 4].copy().view(np.float32).reshape(msg.height, msg.width)
    return image_view(msg).squeeze(-1) if msg.encoding == "mono8" else image_view(msg)


def stamp_to_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
