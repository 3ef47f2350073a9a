"""Optical flow files in the KITTI 16-bit PNG format.

A flow PNG is 3-channel uint16 (R, G, B) = (u * 64 + 2**15, v * 64 + 2**15, valid), valid in {0, 1}.
u (x) and v (y) are in pixels with 1/64 px resolution and a range of about +-512 px; invalid pixels
store 0 flow. This is the format of the KITTI 2012/2015 flow benchmarks, readable by their tools.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_SCALE = 64.0
_OFFSET = 2.0 ** 15


def write_flow_png(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """flow (H, W, 2) float (channel 0 = x, 1 = y), valid (H, W) bool (default: finite flow)."""
    flow = np.asarray(flow, np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    if valid is None:
        valid = np.isfinite(flow).all(axis=2)
    valid = np.asarray(valid, bool) & np.isfinite(flow).all(axis=2)
    enc = np.where(valid[..., None], flow, 0.0) * _SCALE + _OFFSET
    enc = np.clip(np.rint(enc), 0, 65535).astype(np.uint16)
    rgb = np.dstack([enc[..., 0], enc[..., 1], valid.astype(np.uint16)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]):  # OpenCV writes BGR
        raise OSError(f"could not write {path}")


def read_flow_png(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """-> flow (H, W, 2) float32 (x, y), valid (H, W) bool."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"cannot read flow file {path}")
    if bgr.dtype != np.uint16 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"{path} is not a 16-bit 3-channel KITTI flow PNG")
    rgb = bgr[..., ::-1].astype(np.float32)
    valid = rgb[..., 2] > 0
    flow = (rgb[..., :2] - _OFFSET) / _SCALE
    flow[~valid] = 0.0
    return flow, valid


def warp_nearest(source: np.ndarray, flow: np.ndarray, fill: int = 255) -> np.ndarray:
    """Backward warp with nearest sampling: out(x) = source(x + flow(x)); outside -> fill."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(source, xs + flow[..., 0].astype(np.float32), ys + flow[..., 1].astype(np.float32),
                     cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def compose_backward(flow_a: np.ndarray, valid_a: np.ndarray, flow_b: np.ndarray, valid_b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Chain backward flows: a maps frame t -> t-1, b maps t-1 -> t-2; result maps t -> t-2.

    b is sampled bilinearly at x + a(x); the result is valid where a is valid and all four
    neighbours of the sample point are valid in b (so occlusion edges are not smeared)."""
    h, w = flow_a.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx = xs + flow_a[..., 0].astype(np.float32)
    my = ys + flow_a[..., 1].astype(np.float32)
    fb = cv2.remap(flow_b.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    vb = valid_b.astype(np.uint8)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    x0, y0 = np.floor(mx), np.floor(my)
    ok = np.ones((h, w), bool)
    for dx in (0, 1):
        for dy in (0, 1):
            sx = np.clip(x0 + dx, 0, w - 1).astype(np.intp)
            sy = np.clip(y0 + dy, 0, h - 1).astype(np.intp)
            ok &= vb[sy, sx] > 0
    valid = valid_a & inside & ok
    flow = flow_a.astype(np.float32) + fb
    flow[~valid] = 0.0
    return flow, valid
