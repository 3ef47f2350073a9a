"""Offline evaluation of video segmentation methods on a Cityscapes-style split.

`evaluate(...)` returns a report:
{"results": [{"method", "interval", "miou", "fwiou", "vc8", "vc16", "ms_per_frame",
 "gflops_per_frame", "per_class_iou": {name: iou}}], "model": ..., "data": ...}
Frames go to the runner resized to its input size; its labels come back at that size and are
resized (nearest) to the ground-truth size for scoring. Key frames are frame indices 0, k, 2k...
of each sequence, so frame t is scored t mod k frames after its key frame; each result's
`key_distances` counts the scored frames by that distance. per-frame does not depend on k and
is reported once, with interval 1.
Metrics are accumulated over every annotated frame (mIoU from one confusion matrix for the split).
Each result also carries `miou_ci95`, a bootstrap interval over drives, and the report a list
of paired `comparisons` (query flow vs optical flow, optical flow vs copy, at each interval):
how sure the split is of each number (`evaluation.uncertainty`).
ms_per_frame is the runner / DIS time only (no file reading or resizing), averaged over all
frames of the schedule; key frames are run once per frame and shared between methods, with their
measured time charged to every method that uses them.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.labels import train_ids_to_label_ids
from mpvss_ros.evaluation.baselines import METHODS, KeyFrameCache, run_method
from mpvss_ros.evaluation.metrics import ConfusionMatrix, VideoConsistency
from mpvss_ros.evaluation.uncertainty import miou_interval, paired_difference
from mpvss_ros.runtime.preprocess import resize_image, resize_labels


def _finite(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def schedule_gflops(method: str, gflops: dict | None, key_frames: int, frames: int) -> float | None:
    """Average GFLOPs per frame of a schedule from model.json's {"key": .., "nonkey": ..}."""
    if not gflops or frames == 0 or gflops.get("key") is None:
        return None
    key = float(gflops["key"])
    if method == "per-frame":
        return key
    if method == "copy":
        return key * key_frames / frames
    if method == "query-flow" and gflops.get("nonkey") is not None:
        return (key * key_frames + float(gflops["nonkey"]) * (frames - key_frames)) / frames
    return None  # optical-flow: the DIS cost is not counted in FLOPs


class _Accumulator:
    def __init__(self):
        self.drives: dict[tuple, np.ndarray] = {}  # confusion per (city, seq); the split's is their sum
        self.vc = {8: VideoConsistency(8), 16: VideoConsistency(16)}
        self.ms = 0.0
        self.frames = 0
        self.key_frames = 0
        self.key_distances: dict[int, int] = {}  # scored frames by frames since their key frame


def evaluate(data, split: str, runner, methods=METHODS, intervals=(1, 2, 5, 10), save_predictions=None,
             max_sequences: int | None = None, model_info: dict | None = None, gflops: dict | None = None,
             progress: bool = True) -> dict:
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    intervals = sorted({int(k) for k in intervals})
    if not intervals or intervals[0] < 1:
        raise ValueError("intervals must be positive integers")
    dataset = CityscapesSequences(data, split)
    sequences = dataset.sequences[:max_sequences] if max_sequences else dataset.sequences
    runs = [(m, 1) for m in methods if m == "per-frame"] + [(m, k) for m in methods if m != "per-frame"
                                                           for k in intervals]
    acc = {run: _Accumulator() for run in runs}
    input_size = tuple(int(v) for v in runner.input_size)
    total_frames = annotated = skipped = 0
    image_sizes: dict[tuple[int, int], None] = {}  # in order of first appearance
    for seq in sequences:  # before any work: a stray file in the last sequence must not cost a run
        _check_ground_truth_sizes(seq)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    from tqdm import tqdm

    for seq in tqdm(sequences, desc=f"evaluate {split}", unit="seq", disable=not progress):
        frames = _up_to_last_annotated(seq.frames)
        skipped += len(seq.frames) - len(frames)
        raw = [dataset.load_image(f) for f in frames]
        gts = [dataset.load_train_ids(f) for f in frames]
        image_sizes.setdefault(raw[0].shape[:2], None)
        total_frames += len(raw)
        annotated += sum(g is not None for g in gts)
        cache = KeyFrameCache(runner, [resize_image(im, input_size) for im in raw])
        for method, k in runs:
            labels, times, is_key = run_method(method, k, cache, dis)
            a = acc[(method, k)]
            seq_confusion = ConfusionMatrix()
            preds = []
            key_t = 0
            for t, (frame, im, gt, lab) in enumerate(zip(frames, raw, gts, labels)):
                key_t = t if is_key[t] else key_t
                pred = resize_labels(lab, (gt if gt is not None else im).shape[:2])
                preds.append(pred)
                if gt is None:
                    continue
                seq_confusion.update(pred, gt)
                a.key_distances[t - key_t] = a.key_distances.get(t - key_t, 0) + 1
                if save_predictions:
                    out = Path(save_predictions) / f"{method}_k{k}" / f"{frame.stem}_pred_labelIds.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out), train_ids_to_label_ids(pred))
            drive = (seq.city, seq.seq)  # real Cityscapes: several snippets of one drive
            a.drives[drive] = a.drives.get(drive, 0) + seq_confusion.matrix
            for vc in a.vc.values():
                vc.add_sequence(preds, gts)
            a.ms += float(sum(times))
            a.frames += len(times)
            a.key_frames += int(sum(is_key))
        del cache

    drives = {run: np.stack(list(a.drives.values())) for run, a in acc.items()}  # (drives, K, K+1) each
    results = []
    for (method, k), a in acc.items():
        per_drive = drives[(method, k)]
        confusion = ConfusionMatrix()
        confusion.matrix = per_drive.sum(axis=0)
        results.append({
            "method": method, "interval": k,
            "miou": _finite(confusion.miou()), "miou_ci95": miou_interval(per_drive),
            "fwiou": _finite(confusion.fwiou()),
            "vc8": a.vc[8].value(), "vc16": a.vc[16].value(),
            "ms_per_frame": a.ms / a.frames if a.frames else None,
            "gflops_per_frame": schedule_gflops(method, gflops, a.key_frames, a.frames),
            "per_class_iou": confusion.per_class_iou(),
            # sparse ground truth (real Cityscapes: frame 19 of 30) is scored at t mod k only
            "key_distances": {str(d): n for d, n in sorted(a.key_distances.items())},
        })
    model = dict(model_info or {})
    model.setdefault("backend", getattr(runner, "backend", None))
    model.setdefault("providers", list(getattr(runner, "providers", []) or []))
    model.setdefault("input_size", list(input_size))
    sizes = [list(s) for s in image_sizes]
    info = {"root": str(data), "split": split, "sequences": len(sequences), "frames": total_frames,
            "annotated_frames": annotated, "frames_after_last_annotated": skipped,
            "image_size": sizes[0] if sizes else None,
            "unmatched_ground_truth": len(dataset.unmatched_labels)}
    if len(sizes) > 1:
        info["image_sizes"] = sizes
    return {"results": results, "comparisons": _comparisons(drives, intervals), "model": model, "data": info}


def _up_to_last_annotated(frames: list) -> list:
    """A sequence's frames up to its last annotated one: later frames are never scored (real
    Cityscapes labels frame 19 of 30), so they are not run. A sequence without any ground truth
    runs whole (timings only)."""
    last = max((i for i, f in enumerate(frames) if f.label_path is not None), default=len(frames) - 1)
    return frames[:last + 1]


def _check_ground_truth_sizes(seq) -> None:
    """One ground-truth size per sequence: predictions are resized to it and compared across
    frames (video consistency), so a stray size is an error in the data, named here. Reads the
    PNG headers only."""
    from PIL import Image

    first = None
    for frame in seq.frames:
        if frame.label_path is None:
            continue
        with Image.open(frame.label_path) as im:
            w, h = im.size
        if first is None:
            first = (frame, (h, w))
        elif (h, w) != first[1]:
            raise ValueError(f"{frame.label_path}: ground truth {h}x{w} differs from "
                             f"{first[1][0]}x{first[1][1]} of {first[0].label_path.name} in the same sequence")


COMPARED = (("query-flow", "optical-flow"), ("optical-flow", "copy"))


def _comparisons(drives: dict, intervals) -> list[dict]:
    """Paired differences on the same drives for the claims of the ablation."""
    out = []
    for k in intervals:
        for a, b in COMPARED:
            if (a, k) in drives and (b, k) in drives:
                diff = paired_difference(drives[(a, k)], drives[(b, k)])
                if diff is not None:
                    out.append({"a": a, "b": b, "interval": k, **diff})
    return out
