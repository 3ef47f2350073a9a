"""`OracleRunner`: a Runner whose key-frame prediction is the ground truth (for data checks and tests).

It follows the Runner protocol of docs/ARCHITECTURE.md: N = 19 queries, query i predicts class i
(class logits +10 for class i, -10 elsewhere), mask logits are +-10 from the one-hot ground truth
downsampled (nearest) to (H/4, W/4); labels are the ground truth itself at the input size.
`propagate` warps the key frame's mask logits with the ground-truth flow when the split has flow
files (the generated data does): the per-frame backward flows from the current frame back to the
key frame are chained, resized to the mask grid and used like the optical-flow baseline's DIS
flow. That is the ceiling of any method that warps the key frame's masks at stride 4 (pixels
that only appear after the key frame cannot be recovered by warping). Without flow files it
copies the key frame's output (`propagation` says which).
With `grid=True` ("oracle-grid" in `mpvss evaluate`) the key frame's output is what a perfect
model with masks at stride 4 would give: mask logits from each class's share of every 4x4 cell
(area average of the one-hot ground truth), and labels from those, up-sampled bilinearly as a
model's are (confidence keeps the plain oracle's meaning: the winning class's up-sampled share).
The grid is a quarter of the frames' own size (`input_size`, by default the data's resolution).
Its per-frame mIoU is the reference for what the mask grid alone costs (thin classes).
It recognises a frame by a digest of the image resized to `input_size`, so it only answers for
frames of the split it indexed that have ground truth.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences, Frame
from mpvss_ros.data.flow_io import read_flow_png
from mpvss_ros.data.labels import IGNORE, NUM_CLASSES, TRAIN_CLASS_NAMES
from mpvss_ros.evaluation.baselines import (labels_and_confidence, resize_flow, semantic_probabilities,
                                            warp_logits)
from mpvss_ros.runtime.preprocess import resize_image, resize_labels

LOGIT = 10.0


@dataclass
class OracleKeyState:
    key_image: np.ndarray  # (H, W, 3) at input size
    queries: np.ndarray  # (N, 1) placeholder embeddings
    mask_logits: np.ndarray  # (N, h, w)
    class_logits: np.ndarray  # (N, K+1)
    output: "OracleOutput"
    frame: Frame


@dataclass
class OracleOutput:
    labels: np.ndarray  # (H, W) uint8 train ids
    confidence: np.ndarray  # (H, W) float32
    probs: np.ndarray  # (K, h, w) float32
    mask_logits: np.ndarray  # (N, h, w) float32


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16)
def _read_flow(path) -> np.ndarray:
    """Decoded flow of one frame; cached because every frame up to the next key frame re-reads
    the links before it (k=10 would otherwise decode 45 files per 10 frames instead of 9)."""
    return read_flow_png(path)[0]


def chain_backward_flow(flows: list[np.ndarray]) -> np.ndarray:
    """Per-frame backward flows [t -> t-1, t-1 -> t-2, ...] -> backward flow t -> t-n.

    Each link is sampled (bilinear) where the chain has reached so far; links without valid
    flow (stored as 0) hold the point still, so the chain always ends somewhere."""
    h, w = flows[0].shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    px, py = xs.copy(), ys.copy()
    for flow in flows:
        f = cv2.remap(flow.astype(np.float32), px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        px, py = px + f[..., 0], py + f[..., 1]
    return np.dstack([px - xs, py - ys])


def _onehot_logits(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) train ids -> (K, h, w) mask logits +-LOGIT from the ground truth resized (nearest)."""
    small = resize_labels(gt, size)
    onehot = small[None, :, :] == np.arange(NUM_CLASSES, dtype=np.uint8)[:, None, None]
    return np.where(onehot, LOGIT, -LOGIT).astype(np.float32)


def _share_logits(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) train ids -> (K, h, w) mask logits whose sigmoid is each class's share of the cell
    (area average; ignored pixels count for no class), clipped away from 0 and 1."""
    onehot = (gt[:, :, None] == np.arange(NUM_CLASSES, dtype=np.uint8)).astype(np.float32)
    # 4 channels at a time: OpenCV's area resize takes at most 4 at non-integer factors
    share = np.dstack([cv2.resize(onehot[..., i:i + 4], (size[1], size[0]), interpolation=cv2.INTER_AREA)
                       .reshape(size[0], size[1], -1) for i in range(0, NUM_CLASSES, 4)])
    share = np.clip(share.transpose(2, 0, 1), 1e-4, 1 - 1e-4)
    return np.log(share / (1 - share)).astype(np.float32)


class OracleRunner:
    backend = "oracle"
    providers: tuple[str, ...] = ()
    class_names = TRAIN_CLASS_NAMES

    def __init__(self, data, split: str, input_size: tuple[int, int] | None = None,
                 max_sequences: int | None = None, grid: bool = False):
        self.grid = bool(grid)
        dataset = CityscapesSequences(data, split)
        sequences = dataset.sequences[:max_sequences] if max_sequences else dataset.sequences
        # Frames are found by image digest: annotated ones (key frames) always, the others only
        # when flow files let them be propagated to.
        self._frames: dict[str, Frame] = {}
        self._earlier: dict[Frame, tuple[Frame, ...]] = {}  # frame -> the frames before it, nearest first
        self.input_size = tuple(input_size) if input_size else None
        with_flow = all(f.flow_path is not None for seq in sequences for f in seq.frames[1:])
        for seq in sequences:
            for i, frame in enumerate(seq.frames):
                self._earlier[frame] = tuple(reversed(seq.frames[:i]))
                if frame.label_path is None and not with_flow:
                    continue
                image = dataset.load_image(frame)
                if self.input_size is None:
                    self.input_size = image.shape[:2]
                self._frames[_digest(resize_image(image, self.input_size))] = frame
        if not any(f.label_path is not None for f in self._frames.values()):
            raise ValueError(f"oracle: no frames with ground truth in {data} split {split!r}")
        self.input_size = tuple(int(v) for v in self.input_size)
        self.propagation = "ground-truth flow" if with_flow else "copy"

    def _frame(self, image: np.ndarray) -> Frame:
        if image.shape[:2] != self.input_size:
            raise ValueError(f"oracle expects images at input size {self.input_size}, got {image.shape[:2]}")
        frame = self._frames.get(_digest(image))
        if frame is None:
            # without flow files only annotated frames are indexed (real Cityscapes: 1 in 30)
            raise ValueError("oracle: this image is not a frame of the indexed split with ground truth "
                             "(the oracle needs ground truth on every key frame)")
        return frame

    def _ground_truth(self, frame: Frame) -> np.ndarray:
        if frame.label_path is None:
            raise ValueError(f"oracle: frame {frame.stem} has no ground truth to be a key frame")
        return resize_labels(CityscapesSequences.load_train_ids(frame), self.input_size)

    def _flow_to(self, key: Frame, frame: Frame) -> np.ndarray:
        """Backward flow (H, W, 2) from `frame` to the earlier `key` at the data's resolution."""
        earlier = self._earlier[frame]
        if key not in earlier:
            raise ValueError(f"oracle: key frame {key.stem} is not before {frame.stem} in one sequence")
        chain = (frame,) + earlier[:earlier.index(key)]
        return chain_backward_flow([_read_flow(f.flow_path) for f in chain])

    def key_frame(self, image: np.ndarray) -> tuple[OracleKeyState, OracleOutput]:
        frame = self._frame(image)
        gt = self._ground_truth(frame)
        h, w = self.input_size[0] // 4, self.input_size[1] // 4
        mask_logits = (_share_logits if self.grid else _onehot_logits)(gt, (h, w))
        class_logits = np.full((NUM_CLASSES, NUM_CLASSES + 1), -LOGIT, np.float32)
        class_logits[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = LOGIT
        probs = semantic_probabilities(class_logits, mask_logits)
        labels, confidence = labels_and_confidence(probs, self.input_size)
        if not self.grid:  # the plain oracle answers with the ground truth itself where it has one
            valid = gt != IGNORE
            labels = np.where(valid, gt, labels).astype(np.uint8)
            confidence = np.where(valid, 1.0, confidence).astype(np.float32)
        output = OracleOutput(labels, confidence, probs, mask_logits)
        state = OracleKeyState(image, np.zeros((NUM_CLASSES, 1), np.float32), mask_logits, class_logits,
                               output, frame)
        return state, output

    def propagate(self, key: OracleKeyState, image: np.ndarray) -> OracleOutput:
        frame = self._frame(image)
        if self.propagation == "copy" or frame == key.frame:
            return key.output
        flow = resize_flow(self._flow_to(key.frame, frame), key.mask_logits.shape[1:])
        warped = warp_logits(key.mask_logits, flow)
        probs = semantic_probabilities(key.class_logits, warped)
        labels, confidence = labels_and_confidence(probs, self.input_size)
        return OracleOutput(labels, confidence, probs, warped)
