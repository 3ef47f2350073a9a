"""How sure a split's mIoU is: a bootstrap over drives (scipy.stats.bootstrap, BCa).

The frames of one sequence are strongly correlated (the same scene a few pixels later), so the
unit that is resampled is the drive, not the frame: one (city, seq) of the Cityscapes layout,
which in generated data is one sequence and in real Cityscapes holds several 30-frame snippets
(`evaluate` sums each drive's confusion matrices before they come here; drives without ground
truth are left out). Each resample draws as many drives as the split has, with replacement,
pools their confusion matrices (the split's mIoU is pooled too, not averaged per drive) and takes
the mIoU. A paired comparison of two methods draws the same drives for both, so the spread of
the scenes themselves cancels out of the difference.

Why BCa and not plain percentiles: resampled mIoU is biased low. A class whose ground truth is
in few drives but which is falsely predicted in many scores IoU 0 in every resample that
misses those few drives, so the percentile interval sits almost wholly below the estimate.
BCa corrects for that bias and skew. With ten drives any such interval is rough: it is a
statement about these scenes, not a guarantee. Real Cityscapes val has very uneven drives
(frankfurt's 267 annotated frames under two sequence numbers, lindau and munster one frame per
number): the two frankfurt drives then weigh heavily in every resample, which widens the
interval; that is the honest cost of frames that are not independent. Resampling is seeded, so a report always gives
the same intervals.
"""
from __future__ import annotations

import warnings

import numpy as np

RESAMPLES = 2000


def pooled_miou(matrices: np.ndarray) -> np.ndarray:
    """mIoU of each confusion matrix in (..., K, K+1) (columns: predictions 0..K-1, then
    "other"), with `ConfusionMatrix.miou`'s rule: classes in neither ground truth nor
    prediction are left out of the mean."""
    k = matrices.shape[-2]
    tp = np.diagonal(matrices[..., :k], axis1=-2, axis2=-1).astype(np.float64)
    fn = matrices.sum(axis=-1) - tp
    fp = matrices[..., :k].sum(axis=-2) - tp
    denom = tp + fp + fn
    present = denom > 0
    iou = np.where(present, tp / np.maximum(denom, 1), 0.0)
    with np.errstate(invalid="ignore"):
        return iou.sum(axis=-1) / present.sum(axis=-1)


def _pooled(per_drive: np.ndarray, idx) -> np.ndarray:
    """mIoU of the drives drawn in idx (..., n) (indices into per_drive (S, K, K+1)): each
    draw as a count per drive, so a batch of resamples is one matrix product."""
    idx = np.asarray(idx, dtype=np.int64)
    s = per_drive.shape[0]
    rows = idx.reshape(-1, idx.shape[-1])
    counts = np.zeros((len(rows), s))
    np.add.at(counts, (np.arange(len(rows))[:, None], rows), 1.0)
    pooled = counts @ per_drive.reshape(s, -1)
    return pooled_miou(pooled.reshape(idx.shape[:-1] + per_drive.shape[1:]))


def _annotated(*per_drive: np.ndarray) -> list[np.ndarray]:
    """Drop drives with no counted pixel in any of the matrices (no ground truth): a resample of
    only those has no mIoU at all."""
    keep = np.any([m.reshape(m.shape[0], -1).sum(axis=1) > 0 for m in per_drive], axis=0)
    return [np.asarray(m, dtype=np.float64)[keep] for m in per_drive]


def _bootstrap(statistic, drives: int, resamples: int, seed: int) -> list[float] | None:
    """95 % BCa interval of statistic(indices (..., S)) over resampled drive indices; None
    where BCa is undefined (a statistic with no spread)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # scipy warns before returning NaN for a degenerate statistic
        result = bootstrap((np.arange(drives),), statistic, n_resamples=resamples, batch=250,
                           confidence_level=0.95, method="BCa", vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return None if not (np.isfinite(low) and np.isfinite(high)) else [low, high]


def miou_interval(per_drive: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> list[float] | None:
    """[low, high] 95 % interval of the pooled mIoU from per-drive confusion matrices
    (S, K, K+1); None for fewer than two annotated drives."""
    (per_drive,) = _annotated(np.asarray(per_drive))
    if per_drive.shape[0] < 2:
        return None
    return _bootstrap(lambda idx, axis=-1: _pooled(per_drive, idx), per_drive.shape[0], resamples, seed)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict | None:
    """mIoU(a) - mIoU(b) on the same drives (S, K, K+1) each: the difference, its paired 95 %
    interval, and in how many drives a scores higher or lower on its own."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"per-drive matrices differ in shape: {a.shape} vs {b.shape}")
    a, b = _annotated(a, b)
    if a.shape[0] < 2:
        return None

    def statistic(idx, axis=-1):
        return _pooled(a, idx) - _pooled(b, idx)

    own = pooled_miou(a) - pooled_miou(b)  # per drive
    same = np.array_equal(a, b)  # e.g. two methods that only differ between key frames, at k=1
    return {"miou_diff": float(pooled_miou(a.sum(axis=0)) - pooled_miou(b.sum(axis=0))),
            "ci95": [0.0, 0.0] if same else _bootstrap(statistic, a.shape[0], resamples, seed),
            "drives_higher": int((own > 0).sum()), "drives_lower": int((own < 0).sum()),
            "drives": int(a.shape[0])}
