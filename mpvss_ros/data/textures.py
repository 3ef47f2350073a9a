"""Periodic noise tiles and bilinear sampling: the surface textures of generated scenes.

Textures are functions of surface coordinates (metres on the surface), so a surface point keeps
its appearance as it moves and the rendered ground-truth flow is exact.
"""
from __future__ import annotations

import cv2
import numpy as np


def noise_tile(rng: np.random.Generator, size: int = 256, beta: float = 1.6, cutoff: float = 2.0) -> np.ndarray:
    """Exactly periodic 1/f^beta noise, (size, size) float32 scaled to [0, 1]."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2) * size
    spectrum = np.where(radius > 0, 1.0 / np.maximum(radius, cutoff) ** beta, 0.0)
    field = np.real(np.fft.ifft2(np.fft.fft2(white) * spectrum))
    field -= field.min()
    field /= max(field.max(), 1e-9)
    return field.astype(np.float32)


def sample(tile: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around at float tile coordinates (x = column, y = row)."""
    n = tile.shape[0]
    x, y = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32))
    x = x.ravel()
    count = x.size
    if count == 0:
        return np.zeros(0, np.float32)
    # cv2.remap is ~2x faster than numpy gathers; its maps must be shorter than 32767 per side.
    width = min(count, 1024)
    rows = -(-count // width)
    mx = np.zeros(rows * width, np.float32)
    my = np.zeros(rows * width, np.float32)
    np.mod(x, n, out=mx[:count])
    np.mod(y.ravel(), n, out=my[:count])
    mx, my = mx.reshape(rows, width), my.reshape(rows, width)
    return cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).ravel()[:count]


class Textures:
    """The per-sequence set of tiles: `fine` (pixel-scale grain), `coarse` (blotches)."""

    def __init__(self, rng: np.random.Generator, size: int = 256):
        self.fine = noise_tile(rng, size, beta=0.9, cutoff=4.0)
        self.coarse = noise_tile(rng, size, beta=2.2, cutoff=2.0)

    def grain(self, u: np.ndarray, v: np.ndarray, metres_per_tile: float = 8.0) -> np.ndarray:
        """Fine texture in [-0.5, 0.5] at surface coordinates in metres."""
        k = self.fine.shape[0] / metres_per_tile
        return sample(self.fine, u * k, v * k) - 0.5

    def blotch(self, u: np.ndarray, v: np.ndarray, metres_per_tile: float = 60.0) -> np.ndarray:
        """Coarse texture in [-0.5, 0.5]."""
        k = self.coarse.shape[0] / metres_per_tile
        return sample(self.coarse, u * k, v * k) - 0.5
