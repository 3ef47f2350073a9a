"""Full-resolution labels and confidence from mask-grid class scores, on the host, cheaply.

The rule is transformers' post-processing: bilinearly up-sample the fused scores (K, h, w) to
(H, W) (align_corners=False) and take the arg-max; confidence is the winning class's share of
the up-sampled scores. Done densely that is K full-resolution planes (19 x 512 x 1024 floats),
which cost more than the whole propagation network on a CPU. For an integer scale factor s it
is done here without them:

* every output pixel is a convex combination of the same 2x2 block of (edge-padded) grid
  pixels as the other s x s pixels of its block;
* if all four corners have the same arg-max c, then c wins at every convex combination
  (s_c >= s_j at each corner, so also for any weighted sum): the block's labels need no
  interpolation, and its confidence is up(max_k s) / up(sum_k s) from two 1-channel resizes;
* only the blocks whose corners disagree (class boundaries) are interpolated in all K classes.

Labels equal the dense computation except where two classes tie to float rounding.
Non-integer factors fall back to the dense computation.
"""
from __future__ import annotations

import cv2
import numpy as np


def _dense(scores: np.ndarray, size: tuple[int, int], eps: float) -> tuple[np.ndarray, np.ndarray]:
    k = scores.shape[0]
    hwk = np.ascontiguousarray(scores.transpose(1, 2, 0))
    planes = [cv2.resize(hwk[..., i:i + 4], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
              .reshape(size[0], size[1], -1) for i in range(0, k, 4)]
    up = np.concatenate(planes, axis=2)
    best = up.max(axis=2)
    return up.argmax(axis=2).astype(np.uint8), (best / np.maximum(up.sum(axis=2), eps)).astype(np.float32)


def _block_weights(s: int) -> tuple[np.ndarray, int]:
    """(s*s, 4) bilinear weights of the corners (00, 01, 10, 11) for the pixels of one block,
    and the offset of the first output pixel inside the block grid."""
    o = s // 2  # output pixel i lies in block floor((i + 0.5) / s - 0.5); blocks start at -1
    lam = (o + np.arange(s) + 0.5) / s - 0.5  # fractional position inside the block
    wy = np.stack([1 - lam, lam], axis=1)  # (s, 2)
    w = np.einsum("ya,xb->yxab", wy, wy).reshape(s * s, 4)
    return w.astype(np.float32), o


def labels_and_confidence(scores: np.ndarray, size: tuple[int, int], eps: float = 1e-6
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Fused scores (K, h, w) float32 -> labels (H, W) uint8, confidence (H, W) float32 at `size`."""
    if scores.ndim != 3:
        raise ValueError(f"expected scores (K, h, w), got shape {scores.shape}")
    k, h, w = scores.shape
    H, W = size
    s = H // h
    if s * h != H or s * w != W or s < 1:
        return _dense(scores, size, eps)
    scores = scores.astype(np.float32, copy=False)
    grid = np.ascontiguousarray(scores.transpose(1, 2, 0))  # (h, w, K): one class vector per pixel
    arg = grid.argmax(axis=2).astype(np.uint8)
    best = np.take_along_axis(grid, arg[..., None].astype(np.intp), axis=2)[..., 0]
    total = grid.sum(axis=2)
    # Dense confidence for the uniform blocks: two 1-channel resizes (cv2 uses the same
    # half-pixel convention and edge clamping as torch's bilinear, align_corners=False).
    conf = cv2.resize(best, (W, H), interpolation=cv2.INTER_LINEAR) / \
        np.maximum(cv2.resize(total, (W, H), interpolation=cv2.INTER_LINEAR), eps)

    a = np.pad(arg, 1, mode="edge")  # (h+2, w+2): block (i, j) has corners a[i:i+2, j:j+2]
    c00, c01, c10, c11 = a[:-1, :-1], a[:-1, 1:], a[1:, :-1], a[1:, 1:]
    mixed = (c00 != c01) | (c00 != c10) | (c00 != c11)  # (h+1, w+1)
    o = s // 2
    labels_v = np.broadcast_to(c00[:, None, :, None], (h + 1, s, w + 1, s))
    labels = labels_v.reshape(s * (h + 1), s * (w + 1))[s - o: s - o + H, s - o: s - o + W].copy()

    bi, bj = np.nonzero(mixed)
    if len(bi):
        weights, _ = _block_weights(s)
        padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)), mode="edge")
        corners = np.stack([padded[bi, bj], padded[bi, bj + 1], padded[bi + 1, bj], padded[bi + 1, bj + 1]],
                           axis=1)  # (nb, 4, K)
        interp = np.matmul(weights, corners)  # (nb, s*s, K)
        lab = interp.argmax(axis=2)
        win = np.take_along_axis(interp, lab[..., None], axis=2)[..., 0]
        share = win / np.maximum(interp.sum(axis=2), eps)
        # block (bi, bj), in-block (y, x) -> output pixel (s*bi - s + o + y, s*bj - s + o + x)
        ys = (s * bi - s + o)[:, None] + np.repeat(np.arange(s), s)[None, :]
        xs = (s * bj - s + o)[:, None] + np.tile(np.arange(s), s)[None, :]
        keep = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
        labels[ys[keep], xs[keep]] = lab[keep]
        conf[ys[keep], xs[keep]] = share[keep]
    return labels, conf.astype(np.float32, copy=False)
