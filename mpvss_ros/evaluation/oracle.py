"""`OracleRunner`: a Runner whose key-frame prediction is the ground truth (for data checks and tests).

It follows the Runner protocol of docs/ARCHITECTURE.md: N = 19 queries, query i predicts class i
(class logits +10 for class i, -10 elsewhere), mask logits are +-10 from the one-hot ground truth
downsampled (nearest) to (H/4, W/4); labels are the ground truth itself at the input size.
`propagate` is a plain copy of the key frame's output (an oracle cannot know the motion).
It recognises a frame by a digest of the image resized to `input_size`, so it only answers for
frames of the split it indexed that have ground truth.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.labels import IGNORE, NUM_CLASSES, TRAIN_CLASS_NAMES
from mpvss_ros.evaluation.baselines import labels_and_confidence, semantic_probabilities
from mpvss_ros.runtime.preprocess import resize_image, resize_labels

LOGIT = 10.0


@dataclass
class OracleKeyState:
    key_image: np.ndarray  # (H, W, 3) at input size
    queries: np.ndarray  # (N, 1) placeholder embeddings
    mask_logits: np.ndarray  # (N, h, w)
    class_logits: np.ndarray  # (N, K+1)
    output: "OracleOutput"


@dataclass
class OracleOutput:
    labels: np.ndarray  # (H, W) uint8 train ids
    confidence: np.ndarray  # (H, W) float32
    probs: np.ndarray  # (K, h, w) float32
    mask_logits: np.ndarray  # (N, h, w) float32


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


class OracleRunner:
    backend = "oracle"
    providers: tuple[str, ...] = ()
    class_names = TRAIN_CLASS_NAMES

    def __init__(self, data, split: str, input_size: tuple[int, int] | None = None,
                 max_sequences: int | None = None):
        dataset = CityscapesSequences(data, split)
        sequences = dataset.sequences[:max_sequences] if max_sequences else dataset.sequences
        self._gt_paths: dict[str, object] = {}
        self.input_size = tuple(input_size) if input_size else None
        for seq in sequences:
            for frame in seq.frames:
                if frame.label_path is None:
                    continue
                image = dataset.load_image(frame)
                if self.input_size is None:
                    self.input_size = image.shape[:2]
                self._gt_paths[_digest(resize_image(image, self.input_size))] = frame
        if not self._gt_paths:
            raise ValueError(f"oracle: no frames with ground truth in {data} split {split!r}")
        self.input_size = tuple(int(v) for v in self.input_size)

    def _ground_truth(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != self.input_size:
            raise ValueError(f"oracle expects images at input size {self.input_size}, got {image.shape[:2]}")
        frame = self._gt_paths.get(_digest(image))
        if frame is None:
            raise ValueError("oracle: this image is not an annotated frame of the indexed split")
        return resize_labels(CityscapesSequences.load_train_ids(frame), self.input_size)

    def key_frame(self, image: np.ndarray) -> tuple[OracleKeyState, OracleOutput]:
        gt = self._ground_truth(image)
        h, w = self.input_size[0] // 4, self.input_size[1] // 4
        small = resize_labels(gt, (h, w))
        onehot = small[None, :, :] == np.arange(NUM_CLASSES, dtype=np.uint8)[:, None, None]
        mask_logits = np.where(onehot, LOGIT, -LOGIT).astype(np.float32)
        class_logits = np.full((NUM_CLASSES, NUM_CLASSES + 1), -LOGIT, np.float32)
        class_logits[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = LOGIT
        probs = semantic_probabilities(class_logits, mask_logits)
        fill, confidence = labels_and_confidence(probs, self.input_size)
        valid = gt != IGNORE
        labels = np.where(valid, gt, fill).astype(np.uint8)
        confidence = np.where(valid, 1.0, confidence).astype(np.float32)
        output = OracleOutput(labels, confidence, probs, mask_logits)
        state = OracleKeyState(image, np.zeros((NUM_CLASSES, 1), np.float32), mask_logits, class_logits, output)
        return state, output

    def propagate(self, key: OracleKeyState, image: np.ndarray) -> OracleOutput:
        return key.output
