"""How sure a split's mIoU is: a bootstrap over sequences (scipy.stats.bootstrap, BCa).

The frames of one sequence are strongly correlated (the same scene a few pixels later), so the
unit that is resampled is the sequence, not the frame. Each resample draws as many sequences as
the split has, with replacement, pools their confusion matrices (the split's mIoU is pooled too,
not averaged per sequence) and takes the mIoU. A paired comparison of two methods draws the same
sequences for both, so the spread of the scenes themselves cancels out of the difference.

Why BCa and not plain percentiles: resampled mIoU is biased low. A class whose ground truth is
in few sequences but which is falsely predicted in many scores IoU 0 in every resample that
misses those few sequences, so the percentile interval sits almost wholly below the estimate.
BCa corrects for that bias and skew. With ten sequences any such interval is rough: it is a
statement about these scenes, not a guarantee. Resampling is seeded, so a report always gives
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


def _bootstrap(statistic, sequences: int, resamples: int, seed: int) -> list[float] | None:
    """95 % BCa interval of statistic(indices (..., S)) over resampled sequence indices; None
    where BCa is undefined (a statistic with no spread)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # scipy warns before returning NaN for a degenerate statistic
        result = bootstrap((np.arange(sequences),), statistic, n_resamples=resamples, batch=250,
                           confidence_level=0.95, method="BCa", vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return None if not (np.isfinite(low) and np.isfinite(high)) else [low, high]


def miou_interval(per_sequence: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> list[float] | None:
    """[low, high] 95 % interval of the pooled mIoU from per-sequence confusion matrices
    (S, K, K+1); None for fewer than two sequences."""
    per_sequence = np.asarray(per_sequence, dtype=np.float64)
    if per_sequence.shape[0] < 2:
        return None

    def statistic(idx, axis=-1):
        return pooled_miou(per_sequence[np.asarray(idx, dtype=np.int64)].sum(axis=-3))

    return _bootstrap(statistic, per_sequence.shape[0], resamples, seed)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict | None:
    """mIoU(a) - mIoU(b) on the same sequences (S, K, K+1) each: the difference, its paired 95 %
    interval, and in how many sequences a scores higher or lower on its own."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"per-sequence matrices differ in shape: {a.shape} vs {b.shape}")
    if a.shape[0] < 2:
        return None

    def statistic(idx, axis=-1):
        idx = np.asarray(idx, dtype=np.int64)
        return pooled_miou(a[idx].sum(axis=-3)) - pooled_miou(b[idx].sum(axis=-3))

    own = pooled_miou(a) - pooled_miou(b)  # per sequence
    same = np.array_equal(a, b)  # e.g. two methods that only differ between key frames, at k=1
    return {"miou_diff": float(pooled_miou(a.sum(axis=0)) - pooled_miou(b.sum(axis=0))),
            "ci95": [0.0, 0.0] if same else _bootstrap(statistic, a.shape[0], resamples, seed),
            "sequences_higher": int((own > 0).sum()), "sequences_lower": int((own < 0).sum()),
            "sequences": int(a.shape[0])}
