"""sensor_msgs/Image pixel encodings the package reads, as plain numpy + OpenCV (no ROS), for the
node's subscription (`ros/conversions.py`) and for images read back from bags (`data/bag.py`).

8-bit colour and grey, packed YUV 4:2:2 as USB and many GigE cameras send it ("yuv422" is UYVY,
"yuv422_yuy2" YUYV; "uyvy" / "yuyv" are the newer sensor_msgs names for the same layouts), and
raw Bayer mosaics. OpenCV names a Bayer pattern by the second row's second and third pixels, so
ROS "rggb" is OpenCV "BG" (the same table as cv_bridge's).
"""
from __future__ import annotations

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
