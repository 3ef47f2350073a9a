"""Scores a bag replay frame by frame and builds the `mpvss bag evaluate` report (no ROS here).

Fed with outcomes in frame order (`mpvss_ros.ros.replay.FrameOutcome`-like objects: ``labels``
(train ids or None), ``record.label_ids`` (ground truth labelIds or None), ``stats``,
``latency_ms``, ``new_sequence``), it accumulates what the report needs without keeping the
frames: a confusion matrix and video consistency over ground-truth frames, latencies, key-frame
flags, per-frame mIoU for the time plot, label stability between consecutive frames, and a
few sample frames for the overlay strip.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mpvss_ros.data.labels import IGNORE, NUM_CLASSES, TRAIN_CLASS_NAMES, check_label_ids, label_ids_to_train_ids

STRIP_FRAMES = 6


@dataclass
class Sample:
    index: int
    name: str | None
    image: np.ndarray           # (H, W, 3) RGB input
    labels: np.ndarray | None   # train ids (prediction)
    ground_truth: np.ndarray | None  # train ids


def frame_miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """mIoU of one frame over the classes present in its ground truth or prediction."""
    valid = gt != IGNORE
    p, g = pred[valid].astype(np.int64), gt[valid].astype(np.int64)
    p = np.where(p < NUM_CLASSES, p, NUM_CLASSES)  # void predictions count as wrong
    cm = np.bincount(g * (NUM_CLASSES + 1) + p, minlength=(NUM_CLASSES + 1) ** 2)
    cm = cm.reshape(NUM_CLASSES + 1, NUM_CLASSES + 1)[:NUM_CLASSES]
    tp = np.diag(cm[:, :NUM_CLASSES]).astype(np.float64)
    union = cm.sum(1) + cm[:, :NUM_CLASSES].sum(0) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if present.any() else float("nan")


def _fit(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (node output at inference size vs. ground truth at input size)."""
    if labels.shape == shape:
        return labels
    return cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _finite(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    a = np.asarray(values, np.float64)
    return {k: round(float(np.percentile(a, q)), 3) for k, q in (("p50", 50), ("p95", 95), ("p99", 99))}


@dataclass
class ReplayScorer:
    total_frames: int                   # frames in the bag (to spread the strip samples)
    ground_truth_frames: int = 0        # of which with ground truth
    save_predictions: str | None = None  # folder for <name>_pred_labelIds.png (as `mpvss evaluate`)
    vc_lengths: tuple[int, ...] = (8, 16)
    frames: int = 0
    sequences: int = 0
    answered: int = 0
    key_frames: int = 0
    timeouts: int = 0
    missing_ground_truth_predictions: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)  # per answered frame: index, key, miou
    samples: list[Sample] = field(default_factory=list)
    _changed: float = 0.0
    _compared: int = 0
    _previous: np.ndarray | None = None
    _gt_seen: int = 0
    _sequence_preds: list = field(default_factory=list)
    _sequence_gts: list = field(default_factory=list)

    def __post_init__(self):
        from mpvss_ros.evaluation.metrics import ConfusionMatrix, VideoConsistency

        self.confusion = ConfusionMatrix()
        self.consistency = {n: VideoConsistency(n) for n in self.vc_lengths}
        picks = self.ground_truth_frames or self.total_frames
        self._sample_slots = set(np.linspace(0, max(picks - 1, 0), min(STRIP_FRAMES, picks)).round().astype(int))

    # ------------------------------------------------------------------------------ per frame
    def add(self, outcome) -> None:
        self.frames += 1
        self.timeouts += bool(getattr(outcome, "timed_out", False))
        pred = outcome.labels
        gt_ids = getattr(outcome.record, "label_ids", None)
        if gt_ids is not None:
            where = getattr(outcome.record, "name", None) or getattr(outcome.record, "stamp_ns", "?")
            gt_ids = check_label_ids(gt_ids, f"/ground_truth/labels of frame {where}")
        gt = label_ids_to_train_ids(gt_ids) if gt_ids is not None else None
        if outcome.new_sequence:
            self.sequences += 1
            self._previous = None
            self._close_sequence()
        if pred is not None:
            self.answered += 1
            stats = outcome.stats or {}
            self.key_frames += bool(stats.get("key_frame"))
            if outcome.latency_ms is not None:
                self.latencies_ms.append(outcome.latency_ms)
            if "inference_ms" in stats:
                self.inference_ms.append(stats["inference_ms"])
                self.total_ms.append(stats["total_ms"])
            if self._previous is not None and self._previous.shape == pred.shape:
                self._changed += float(np.count_nonzero(self._previous != pred)) / pred.size
                self._compared += 1
            self._previous = pred
            if self.save_predictions and outcome.name:
                from mpvss_ros.data.cityscapes import write_label_ids
                from mpvss_ros.data.labels import train_ids_to_label_ids

                write_label_ids(f"{self.save_predictions}/{outcome.name}_pred_labelIds.png",
                                train_ids_to_label_ids(pred))
        else:
            self._previous = None
        entry = {"index": outcome.index, "name": outcome.name, "answered": pred is not None,
                 "new_sequence": bool(outcome.new_sequence),
                 "key_frame": bool((outcome.stats or {}).get("key_frame")), "miou": None}
        if gt is not None:
            if pred is None:
                self.missing_ground_truth_predictions += 1
            else:
                pred_gt = _fit(pred, gt.shape)
                self.confusion.update(pred_gt, gt)
                entry["miou"] = frame_miou(pred_gt, gt)
        if self.ground_truth_frames:  # VC scores whole sequences: keep this one's frames
            self._sequence_preds.append(None if pred is None else _fit(pred, (gt if gt is not None else pred).shape))
            self._sequence_gts.append(gt)
        self.timeline.append(entry)
        slot = self._gt_seen if self.ground_truth_frames else self.frames - 1
        if (gt is not None or not self.ground_truth_frames) and slot in self._sample_slots:
            try:
                self.samples.append(Sample(outcome.index, outcome.name, outcome.record.image(), pred, gt))
            except ValueError:  # a frame the node refused too (counted as unanswered): no picture of it
                pass
        self._gt_seen += gt is not None

    def _close_sequence(self) -> None:
        """Score the finished sequence's video consistency (frames without output break windows)."""
        preds, gts = self._sequence_preds, self._sequence_gts
        if preds:
            # A frame the node did not answer cannot be consistent: its window is left out.
            gts = [g if p is not None else None for p, g in zip(preds, gts)]
            preds = [p if p is not None else np.zeros((1, 1), np.uint8) for p in preds]
            for vc in self.consistency.values():
                vc.add_sequence(preds, gts)
        self._sequence_preds, self._sequence_gts = [], []

    # ------------------------------------------------------------------------------ the report
    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth_frames > 0

    def result_entry(self, method: str, interval: int | None, gflops_per_frame=None) -> dict:
        ms = float(np.mean(self.inference_ms)) if self.inference_ms else None
        entry = {"method": method, "interval": interval, "miou": None, "fwiou": None, "vc8": None,
                 "vc16": None, "ms_per_frame": None if ms is None else round(ms, 3),
                 "gflops_per_frame": gflops_per_frame, "per_class_iou": None}
        if self.has_ground_truth:
            self._close_sequence()
            entry.update(miou=_finite(self.confusion.miou()), fwiou=_finite(self.confusion.fwiou()),
                         per_class_iou=self.confusion.per_class_iou(TRAIN_CLASS_NAMES))
            for n, vc in self.consistency.items():
                if f"vc{n}" in entry:
                    entry[f"vc{n}"] = vc.value()
        return entry

    def report(self, *, method: str, interval: int | None, model, data, replay: dict,
               gflops_per_frame=None) -> dict:
        answered = max(self.answered, 1)
        return {
            "results": [self.result_entry(method, interval, gflops_per_frame)],
            "model": model,
            "data": data,
            "latency_ms": _percentiles(self.latencies_ms),
            "dropped": self.frames - self.answered,
            "key_fraction": round(self.key_frames / answered, 4) if self.answered else None,
            "frames": self.frames,
            "answered": self.answered,
            "timeouts": self.timeouts,
            "ground_truth_frames": self.ground_truth_frames,
            "ground_truth_frames_without_prediction": self.missing_ground_truth_predictions,
            "stability": {
                # Fraction of pixels whose label changes between consecutive answered frames of
                # a sequence (flicker; lower is steadier). Needs no ground truth.
                "changed_pixel_fraction": round(self._changed / self._compared, 5) if self._compared else None,
                "frame_pairs": self._compared,
            },
            "inference_ms": _percentiles(self.inference_ms),
            "node_total_ms": _percentiles(self.total_ms),
            "replay": replay,
        }
