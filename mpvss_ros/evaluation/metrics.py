"""Segmentation metrics over the 19 Cityscapes train classes.

`ConfusionMatrix` mirrors cityscapesScripts' evalPixelLevelSemanticLabeling:
- pixels whose ground truth is 255 (ignore) are not counted at all;
- a prediction outside 0..18 on a valid pixel is a miss (false negative) for the true class and
  a false positive for no class (the evaluator's "ignoreInEval" columns);
- IoU_c = TP / (TP + FP + FN); it is NaN when TP + FP + FN = 0, i.e. the class is absent from
  both the ground truth and the (non-ignored) prediction;
- mIoU is the mean over the classes whose IoU is not NaN (cityscapesScripts' getScoreAverage).
fwIoU weights each class's IoU by its share of valid ground-truth pixels (NaN classes weigh 0).

`VideoConsistency(n)` is VC_n as defined with the VSPW benchmark: over every window of n
consecutive frames, take the pixels whose ground truth is the same in all n frames and report the
fraction of them whose prediction is also the same in all n frames; windows are averaged per
sequence, sequences are averaged (VSPW averages per video). Pixels that are ignore (255) in the
window's ground truth are left out; windows where a frame lacks ground truth are skipped.
"""
from __future__ import annotations

import math

import numpy as np

from mpvss_ros.data.labels import IGNORE, NUM_CLASSES, TRAIN_CLASS_NAMES


class ConfusionMatrix:
    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        # rows: ground truth 0..K-1; columns: prediction 0..K-1 plus one "other" column
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        prediction = np.asarray(prediction)
        ground_truth = np.asarray(ground_truth)
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction {prediction.shape} and ground truth {ground_truth.shape} differ in shape")
        k = self.num_classes
        valid = ground_truth < k
        gt = ground_truth[valid].astype(np.int64)
        pr = prediction[valid].astype(np.int64)
        pr = np.where((pr >= 0) & (pr < k), pr, k)
        self.matrix += np.bincount(gt * (k + 1) + pr, minlength=k * (k + 1)).reshape(k, k + 1)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """(K,) IoU per class, NaN where the class is in neither ground truth nor prediction."""
        k = self.num_classes
        tp = np.diag(self.matrix[:, :k]).astype(np.float64)
        fn = self.matrix.sum(axis=1) - tp
        fp = self.matrix[:, :k].sum(axis=0) - tp
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def fwiou(self) -> float:
        iou = self.iou()
        freq = self.matrix.sum(axis=1).astype(np.float64)
        total = freq.sum()
        if total == 0:
            return float("nan")
        return float(np.sum(np.nan_to_num(iou) * freq) / total)

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix[:, : self.num_classes]) / total) if total else float("nan")

    def per_class_iou(self, names=TRAIN_CLASS_NAMES) -> dict[str, float | None]:
        """{class name: IoU}, None (JSON null) for classes absent from both."""
        return {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, self.iou())}


class VideoConsistency:
    """VC_n; feed one sequence at a time with `add_sequence(predictions, ground_truths)`."""

    def __init__(self, n: int):
        if n < 2:
            raise ValueError("VC window must be at least 2 frames")
        self.n = n
        self.sequence_scores: list[float] = []

    def add_sequence(self, predictions, ground_truths) -> float | None:
        """Lists of (H, W) label maps; ground-truth entries may be None (no annotation)."""
        if len(predictions) != len(ground_truths):
            raise ValueError("predictions and ground truths must have the same length")
        windows = []
        for start in range(len(predictions) - self.n + 1):
            gts = ground_truths[start:start + self.n]
            if any(g is None for g in gts):
                continue
            preds = predictions[start:start + self.n]
            gt_same = gts[0] != IGNORE
            pred_same = np.ones_like(gt_same)
            for j in range(1, self.n):
                gt_same &= gts[j] == gts[0]
                pred_same &= preds[j] == preds[0]
            total = int(gt_same.sum())
            if total:
                windows.append(int((gt_same & pred_same).sum()) / total)
        if not windows:
            return None
        score = float(np.mean(windows))
        self.sequence_scores.append(score)
        return score

    def value(self) -> float | None:
        return float(np.mean(self.sequence_scores)) if self.sequence_scores else None
