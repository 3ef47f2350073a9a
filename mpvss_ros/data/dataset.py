"""Torch-free datasets over Cityscapes-style sequences (training code wraps them in torch).

`FrameDataset`: one item per annotated frame -> {"image", "train_ids"}.
`PairDataset`: one item per annotated frame t -> {"key_image", "image", "train_ids", "flow",
"valid", "distance"} with the key frame t-d, d drawn from [min_distance, max_distance] (bounded by
the start of the sequence). flow (H, W, 2) float32 is the backward flow from t to t-d (image(x) ~
key_image(x + flow(x))), composed from the per-frame ground-truth flow files; valid (H, W) bool.
Where a split has no flow files (real Cityscapes), flow and valid are None.
Images are (H, W, 3) uint8 RGB, train ids (H, W) uint8 with 255 = ignore.
"""
from __future__ import annotations

import cv2
import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.flow_io import compose_backward
from mpvss_ros.runtime.preprocess import resize_image, resize_labels


def _resize_flow(flow: np.ndarray, valid: np.ndarray, size: tuple[int, int]):
    if flow.shape[:2] == tuple(size):
        return flow, valid
    h, w = size
    scale = np.array([w / flow.shape[1], h / flow.shape[0]], np.float32)
    small = cv2.resize(flow, (w, h), interpolation=cv2.INTER_NEAREST) * scale
    return small, resize_labels(valid.astype(np.uint8), size) > 0


class FrameDataset:
    def __init__(self, root, split: str, size: tuple[int, int] | None = None):
        self.data = CityscapesSequences(root, split)
        self.frames = [f for f in self.data.frames() if f.label_path is not None]
        if not self.frames:
            raise ValueError(f"no annotated frames in {root} split {split!r}")
        self.size = size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        f = self.frames[i]
        image = self.data.load_image(f)
        labels = self.data.load_train_ids(f)
        if self.size:
            image, labels = resize_image(image, self.size), resize_labels(labels, self.size)
        return {"image": image, "train_ids": labels}


class PairDataset:
    def __init__(self, root, split: str, max_distance: int = 5, min_distance: int = 1, seed: int = 0,
                 size: tuple[int, int] | None = None):
        if not 1 <= min_distance <= max_distance:
            raise ValueError("need 1 <= min_distance <= max_distance")
        self.data = CityscapesSequences(root, split)
        self.min_distance, self.max_distance = min_distance, max_distance
        self.seed, self.epoch, self.size = seed, 0, size
        # (sequence index, frame index) of annotated frames with at least min_distance predecessors
        self.items = [(si, t) for si, s in enumerate(self.data.sequences) for t, f in enumerate(s.frames)
                      if f.label_path is not None and t >= min_distance]
        if not self.items:
            raise ValueError(f"no annotated frames with a predecessor in {root} split {split!r}")

    def set_epoch(self, epoch: int) -> None:
        """Key-frame distances are drawn from (seed, epoch, index): reproducible, new each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        si, t = self.items[i]
        frames = self.data.sequences[si].frames
        rng = np.random.default_rng([self.seed, self.epoch, i])
        d = int(rng.integers(self.min_distance, min(self.max_distance, t) + 1))
        key, cur = frames[t - d], frames[t]
        out = {"key_image": self.data.load_image(key), "image": self.data.load_image(cur),
               "train_ids": self.data.load_train_ids(cur), "flow": None, "valid": None, "distance": d}
        steps = [self.data.load_flow(frames[j]) for j in range(t, t - d, -1)]
        if all(s is not None for s in steps):
            flow, valid = steps[0]
            for f_b, v_b in steps[1:]:
                flow, valid = compose_backward(flow, valid, f_b, v_b)
            out["flow"], out["valid"] = flow, valid
        if self.size:
            out["key_image"] = resize_image(out["key_image"], self.size)
            out["image"] = resize_image(out["image"], self.size)
            out["train_ids"] = resize_labels(out["train_ids"], self.size)
            if out["flow"] is not None:
                out["flow"], out["valid"] = _resize_flow(out["flow"], out["valid"], self.size)
        return out
