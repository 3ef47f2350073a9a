"""Video segmentation methods built on any key-frame segmentor that follows the Runner protocol.

- per-frame:    the segmentor on every frame.
- copy:         key frames every k frames; frames in between reuse the key frame's labels.
- optical-flow: frames in between warp the key frame's N mask logits with OpenCV DIS flow
                (current -> key frame, at the mask resolution) and fuse them with the key
                frame's class probabilities: softmax(class)[..., :-1] . sigmoid(masks).
- query-flow:   frames in between call `runner.propagate(key, image)` (MPVSS).
Images handed to the runner are already at `runner.input_size`; outputs are at that size too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import expit

METHODS = ("per-frame", "copy", "optical-flow", "query-flow")


def as_numpy(value) -> np.ndarray:
    """numpy view of a numpy array or a (possibly device-resident) torch tensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _squeeze_batch(a: np.ndarray, ndim: int) -> np.ndarray:
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise ValueError(f"expected {ndim} dimensions (batch 1 allowed), got shape {a.shape}")
    return a


def semantic_probabilities(class_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """(N, K+1) class logits, (N, h, w) mask logits -> (K, h, w) = softmax(class)[..., :-1] . sigmoid(masks)."""
    c = class_logits.astype(np.float32)
    c = np.exp(c - c.max(axis=1, keepdims=True))
    c /= c.sum(axis=1, keepdims=True)
    masks = expit(mask_logits.astype(np.float32))  # no overflow warning for very negative logits
    n, h, w = masks.shape
    return (c[:, :-1].T @ masks.reshape(n, h * w)).reshape(-1, h, w)


def labels_and_confidence(probs: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(K, h, w) probabilities -> labels (H, W) uint8 and confidence (H, W) float32 after bilinear upsampling."""
    k = probs.shape[0]
    hwk = np.ascontiguousarray(probs.transpose(1, 2, 0))
    chunks = [cv2.resize(hwk[..., i:i + 256], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
              for i in range(0, k, 256)]
    up = np.concatenate([c.reshape(size[0], size[1], -1) for c in chunks], axis=2)
    return up.argmax(axis=2).astype(np.uint8), up.max(axis=2).astype(np.float32)


def dis_flow(key_image: np.ndarray, image: np.ndarray, dis=None) -> np.ndarray:
    """Backward flow (H, W, 2): image(x) ~ key_image(x + flow(x)), by OpenCV DIS (medium preset)."""
    dis = dis or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    cur = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    key = cv2.cvtColor(key_image, cv2.COLOR_RGB2GRAY)
    return dis.calc(cur, key, None)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to (h, w) and rescale its vectors to the new pixel units."""
    h, w = size
    sy, sx = h / flow.shape[0], w / flow.shape[1]
    small = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR)
    return small * np.array([sx, sy], np.float32)


def warp_logits(mask_logits: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(N, h, w) logits warped backward by (h, w, 2) flow: out(x) = logits(x + flow(x)) (bilinear, edge replicate)."""
    n, h, w = mask_logits.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = xs + flow[..., 0], ys + flow[..., 1]
    hwn = np.ascontiguousarray(mask_logits.transpose(1, 2, 0).astype(np.float32))
    out = [cv2.remap(hwn[..., i:i + 256], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
           .reshape(h, w, -1) for i in range(0, n, 256)]  # OpenCV handles at most 512 channels
    return np.concatenate(out, axis=2).transpose(2, 0, 1)


@dataclass
class FlowWarpOutput:
    """A FrameOutput-shaped result of the optical-flow baseline."""
    labels: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray
    mask_logits: np.ndarray


def optical_flow_propagate(key_state, key_image: np.ndarray, image: np.ndarray, dis=None) -> FlowWarpOutput:
    masks = _squeeze_batch(as_numpy(key_state.mask_logits), 3)
    classes = _squeeze_batch(as_numpy(key_state.class_logits), 2)
    flow = resize_flow(dis_flow(key_image, image, dis), masks.shape[1:])
    warped = warp_logits(masks, flow)
    probs = semantic_probabilities(classes, warped)
    labels, conf = labels_and_confidence(probs, image.shape[:2])
    return FlowWarpOutput(labels, conf, probs, warped)


class KeyFrameCache:
    """Key-frame results of one sequence, computed once and shared by every method and interval.

    Each entry keeps the measured milliseconds so the cost of a schedule is still accounted in full."""

    def __init__(self, runner, images: list[np.ndarray]):
        self.runner = runner
        self.images = images
        self.entries: dict[int, tuple[object, object, float]] = {}

    def get(self, t: int):
        if t not in self.entries:
            start = time.perf_counter()
            state, output = self.runner.key_frame(self.images[t])
            self.entries[t] = (state, output, (time.perf_counter() - start) * 1e3)
        return self.entries[t]


def run_method(method: str, interval: int, cache: KeyFrameCache, dis=None
               ) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Run one method over one sequence -> (labels per frame at input size, ms per frame, key-frame flags)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    images = cache.images
    labels, times, is_key = [], [], []
    if method == "per-frame":
        interval = 1
    key_t = 0
    for t in range(len(images)):
        if t % interval == 0:
            _, output, ms = cache.get(t)
            key_t = t
            labels.append(_squeeze_batch(as_numpy(output.labels), 2).astype(np.uint8))
            times.append(ms)
            is_key.append(True)
            continue
        state, output, _ = cache.get(key_t)
        start = time.perf_counter()
        if method == "copy":
            out_labels = as_numpy(output.labels)
        elif method == "optical-flow":
            out_labels = optical_flow_propagate(state, images[key_t], images[t], dis).labels
        else:
            out_labels = as_numpy(cache.runner.propagate(state, images[t]).labels)
        times.append((time.perf_counter() - start) * 1e3)
        labels.append(_squeeze_batch(out_labels, 2).astype(np.uint8))
        is_key.append(False)
    return labels, times, is_key
