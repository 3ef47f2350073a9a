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

from functools import lru_cache

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


@lru_cache(maxsize=8)  # the same few factors every frame; callers only read the array
def _block_weights(s: int) -> tuple[np.ndarray, int]:
    """(s*s, 4) bilinear weights of the corners (00, 01, 10, 11) for the pixels of one block,
    and the offset of the first output pixel inside the block grid."""
    o = s // 2  # output pixel i lies in block floor((i + 0.5) / s - 0.5); blocks start at -1
    lam = (o + np.arange(s) + 0.5) / s - 0.5  # fractional position inside the block
    wy = np.stack([1 - lam, lam], axis=1)  # (s, 2)
    w = np.einsum("ya,xb->yxab", wy, wy).reshape(s * s, 4)
    return w.astype(np.float32), o


def _argmax_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(arg-max, max) over the leading axis of x (K, ...), first index on ties like `argmax`.

    The arg-max is the first class equal to the max, found as the max of (x == max) * (K - c):
    three whole-array passes. `np.argmax(axis=0)` moves the axis last first (a full copy), and a
    running comparison class by class costs 3 (K - 1) smaller passes; both are slower for K = 19.
    """
    k = x.shape[0]
    if k > 255:
        raise ValueError(f"at most 255 classes (uint8 labels), got {k}")
    best = x.max(axis=0)
    rev = np.arange(k, 0, -1, dtype=np.uint8).reshape((k,) + (1,) * (x.ndim - 1))
    first = np.max((x == best) * rev, axis=0)
    # no class equals a NaN max: first is 0 there, and such pixels get class 0
    return ((k - first) % k).astype(np.uint8), best


class UpsampledScores:
    """Labels at `size` from fused scores (K, h, w), computed at once; confidence on first read.

    Confidence is only needed by `~/confidence` and `~/class_stats`: two full-resolution resizes
    and a division that a node without those subscribers, or an evaluation, never pays for.
    """

    def __init__(self, scores: np.ndarray, size: tuple[int, int], eps: float = 1e-6):
        if scores.ndim != 3:
            raise ValueError(f"expected scores (K, h, w), got shape {scores.shape}")
        k, h, w = scores.shape
        H, W = self.size = (int(size[0]), int(size[1]))
        self.eps = eps
        self._confidence = None
        s = H // h
        if s * h != H or s * w != W or s < 1:
            self.labels, self._confidence = _dense(scores, size, eps)
            return
        # Class-first throughout: reductions over the leading K axis are vectorised passes over
        # contiguous planes (a per-pixel reduction over a short last axis is several times slower).
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        arg, self._best = _argmax_max(scores)
        self._total = scores.sum(axis=0)  # not lazily: the caller may reuse its buffer before then
        o = s // 2
        # Outputs are built block-major on the padded block grid: block (i, j) of (h+1, w+1)
        # covers output pixels (s*i - s + o + y, s*j - s + o + x), y, x < s; the image is a crop.
        # (h+2, w+2), edge-padded: block (i, j) has corners a[i:i+2, j:j+2]
        a = cv2.copyMakeBorder(arg, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        c00 = a[:-1, :-1]
        mixed = (c00 != a[:-1, 1:]) | (c00 != a[1:, :-1]) | (c00 != a[1:, 1:])  # (h+1, w+1)
        big = cv2.resize(np.ascontiguousarray(c00), (s * (w + 1), s * (h + 1)), interpolation=cv2.INTER_NEAREST)
        self._crop = (slice(s - o, s - o + H), slice(s - o, s - o + W))
        self._blocks = (h + 1, s, w + 1, s)
        self._bi, self._bj = np.nonzero(mixed)
        if len(self._bi):
            big.reshape(self._blocks)[self._bi, :, self._bj, :] = self._mixed_blocks(scores, s)
        self.labels = big[self._crop].copy()

    def _mixed_blocks(self, scores: np.ndarray, s: int) -> np.ndarray:
        """Blocks whose corners disagree, interpolated in all K classes -> labels (nb, s, s)."""
        weights, _ = _block_weights(s)  # (s*s, 4)
        k, h, w = scores.shape
        # corners of block (i, j) on the edge-padded grid: rows i-1, i and columns j-1, j, clamped
        r0, r1 = np.maximum(self._bi - 1, 0) * w, np.minimum(self._bi, h - 1) * w
        c0, c1 = np.maximum(self._bj - 1, 0), np.minimum(self._bj, w - 1)
        nb = len(r0)
        corners = np.take(scores.reshape(k, -1), np.concatenate([r0 + c0, r0 + c1, r1 + c0, r1 + c1]),
                          axis=1).reshape(k, 4, nb)
        lab, self._mixed_win = _argmax_max(np.matmul(weights, corners))  # over (K, s*s, nb)
        self._mixed_total = corners.sum(axis=0)  # (4, nb): the sum over classes is linear too
        return lab.T.reshape(nb, s, s)

    def _mixed_share(self, s: int) -> np.ndarray:
        """The winning class's share of the interpolated scores in the mixed blocks (nb, s, s)."""
        weights, _ = _block_weights(s)
        share = self._mixed_win / np.maximum(weights @ self._mixed_total, self.eps)
        return share.T.reshape(-1, s, s)

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) float32: the winning class's share of the up-sampled scores."""
        if self._confidence is None:
            H, W = self.size
            hb, s, wb, _ = self._blocks
            big = np.empty((hb * s, wb * s), np.float32)
            # Uniform blocks: two 1-channel resizes (cv2 uses the same half-pixel convention and
            # edge clamping as torch's bilinear, align_corners=False).
            big[self._crop] = cv2.resize(self._best, (W, H), interpolation=cv2.INTER_LINEAR) / \
                np.maximum(cv2.resize(self._total, (W, H), interpolation=cv2.INTER_LINEAR), self.eps)
            if len(self._bi):
                big.reshape(self._blocks)[self._bi, :, self._bj, :] = self._mixed_share(s)
            self._confidence = big[self._crop].copy()
        return self._confidence


def labels_and_confidence(scores: np.ndarray, size: tuple[int, int], eps: float = 1e-6
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Fused scores (K, h, w) float32 -> labels (H, W) uint8, confidence (H, W) float32 at `size`."""
    up = UpsampledScores(scores, size, eps)
    return up.labels, up.confidence
