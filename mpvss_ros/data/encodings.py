"""sensor_msgs/Image pixel encodings the package reads, as plain numpy + OpenCV (no ROS), for the
node's subscription (`ros/conversions.py`) and for images read back from bags (`data/bag.py`).

8-bit colour and grey, packed YUV 4:2:2 as USB and many GigE cameras send it ("yuv422" is UYVY,
"yuv422_yuy2" YUYV; "uyvy" / "yuyv" are the newer sensor_msgs names for the same layouts), and
raw Bayer mosaics. OpenCV names a Bayer pattern by the second row's second and third pixels, so
ROS "rggb" is OpenCV "BG" (the same table as cv_bridge's). For sensor_msgs/CompressedImage: the
size from a JPEG / PNG header without decoding (`compressed_size`) and the decoder.
"""
from __future__ import annotations

import re

import cv2
import numpy as np

BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1,
                   "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
                   "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
           "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB,
           "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
           "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
           "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
           "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}
_YUV422 = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv"}


def size_problem(encoding: str, height: int, width: int) -> str | None:
    """Why an image of this size cannot be decoded in `encoding` (in 4:2:2 pixel pairs share their
    chroma; Bayer mosaics of odd sizes demosaic fine), or None."""
    enc = encoding.lower()
    if enc in _YUV422 and width % 2:
        return f"{enc} needs an even width, got {width}x{height}"
    return None


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, bytes per pixel) uint8 in `encoding` -> (H, W, 3) uint8 RGB (rgb8 is returned as is)."""
    enc = encoding.lower()
    if enc == "rgb8":
        return pixels
    if BYTES_PER_PIXEL[enc] == 1:
        pixels = pixels[..., 0]  # OpenCV wants a 2-D grey / mosaic image
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_RGB[enc])


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x00, 0x01, *range(0xD0, 0xD9)}  # stuffed byte, TEM, RSTn, SOI: no segment follows
_JPEG_MARKER = re.compile(rb"\xff+([^\xff])", re.S)  # fill bytes, then the marker code


def compressed_size(data) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame header, without decoding;
    None for other formats or a header that cannot be read. Between JPEG segments, stray bytes
    and runs of fill bytes are skipped, as libjpeg does (it decodes such files). `data`: any
    bytes-like object (a memoryview of the message buffer: nothing is copied)."""
    if data[:8] == _PNG_SIGNATURE:
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return None
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return None
        marker, pos = found.group(1)[0], found.end()
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker in _JPEG_SOF:
            if len(data) < pos + 7:
                return None
            return int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 3:pos + 5], "big")
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            return None
        pos += length


def decode_compressed_rgb(data) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB from JPEG / PNG bytes (any bytes-like object), or None if OpenCV
    cannot decode them. Grey and alpha images come back as RGB; EXIF orientation is left as
    sent, as compressed_image_transport does. Check the size with `compressed_size` first."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
