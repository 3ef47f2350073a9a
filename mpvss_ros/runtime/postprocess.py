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

    One vectorised pass per class: `np.argmax(axis=0)` moves the axis last first (a full copy),
    several times slower than this for K = 19."""
    best = x[0].copy()
    arg = np.zeros(best.shape, np.uint8)
    better = np.empty(best.shape, bool)
    for c in range(1, x.shape[0]):
        np.greater(x[c], best, out=better)
        np.copyto(arg, c, where=better)
        np.maximum(best, x[c], out=best)
    return arg, best


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
        # Class-first throughout: reductions over the leading K axis are K vectorised passes over
        # contiguous planes (a per-pixel reduction over a short last axis is several times slower).
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        arg, self._best = _argmax_max(scores)
        self._total = scores.sum(axis=0)
        o = s // 2
        # Outputs are built block-major on the padded block grid: block (i, j) of (h+1, w+1)
        # covers output pixels (s*i - s + o + y, s*j - s + o + x), y, x < s; the image is a crop.
        a = np.pad(arg, 1, mode="edge")  # (h+2, w+2): block (i, j) has corners a[i:i+2, j:j+2]
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
        padded = np.pad(scores, ((0, 0), (1, 1), (1, 1)), mode="edge")  # (K, h+2, w+2)
        row = padded.shape[2]
        at = self._bi * row + self._bj  # corner 00 of each block in the flat padded grid
        nb = len(at)
        corners = np.take(padded.reshape(len(padded), -1),
                          np.concatenate([at, at + 1, at + row, at + row + 1]), axis=1).reshape(-1, 4, nb)
        # class by class, with no (K, s*s, nb) intermediate: running arg-max and max
        win = weights @ corners[0]  # (s*s, nb)
        lab = np.zeros(win.shape, np.uint8)
        better = np.empty(win.shape, bool)
        for c in range(1, scores.shape[0]):
            v = weights @ corners[c]
            np.greater(v, win, out=better)
            np.copyto(lab, c, where=better)
            np.maximum(win, v, out=win)
        self._mixed_win = win
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
