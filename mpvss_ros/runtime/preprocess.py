"""Resizing between camera resolution and the model's fixed input size.

One function for every path (node, offline evaluation, benchmarks) so that the same frame
always gives the same model input: results over DDS then equal offline results.
"""
from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (size[0], size[1], 3); area filter when shrinking (no aliasing).

    A shrink by 4, 8, ... in both axes is done as exact halvings: OpenCV's area filter has a
    fast path for a factor of 2, and 1024x2048 -> 256x512 costs 3.2 ms in one step, 0.9 ms as two
    halvings (a box mean of box means: within 1 grey level of the one-step result).
    """
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    if not (image.shape[0] > h or image.shape[1] > w):
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    f = image.shape[0] // h
    if f >= 4 and f & (f - 1) == 0 and image.shape[:2] == (f * h, f * w):
        for _ in range(f.bit_length() - 2):  # down to twice the target; the last halving below
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image to (height, width)."""
    if labels.shape[:2] == tuple(size):
        return labels
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map (confidence, class probability) to (height, width)."""
    if values.shape[:2] == tuple(size):
        return values
    return cv2.resize(values, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def half_image(x: np.ndarray) -> np.ndarray:
    """(1, C, H, W) float32 -> (1, C, H/2, W/2): the mean of each 2x2 block, which is what a
    bilinear half-pixel x0.5 resize computes (the graphs' motion-encoder input)."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h // 2, w // 2), np.float32)
    for i in range(n):
        for k in range(c):  # OpenCV's area filter has a fast path for exactly 2: ~10 us a plane
            out[i, k] = cv2.resize(x[i, k], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return out


def check_rgb_image(image: np.ndarray) -> None:
    """Raise ValueError unless image is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {shape} dtype {dtype}")
