"""The periodic val mIoU of the learning curve, on a small fixed subset of a val split.

Segmentor phase: per-frame prediction of labelled frames. Flow phase: the key frame `gap`
frames earlier, its masks propagated by the query flow to the labelled current frame (the
quantity the flow phase optimises). Full frames, no crops; 19 classes, 255 ignored; classes
absent from both ground truth and prediction do not count.
"""
from __future__ import annotations

import numpy as np
import torch

from mpvss_ros.model.fusion import labels_and_confidence, semantic_probabilities

from .frame_cache import IGNORE, FrameCache, spread


def miou(confusion: np.ndarray) -> float:
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def confusion_of(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    keep = gt != IGNORE
    idx = gt[keep].astype(np.int64) * num_classes + np.minimum(pred[keep].astype(np.int64), num_classes - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _tensor(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device).float()


@torch.no_grad()
def segmentor_miou(model, cache: FrameCache, frames: np.ndarray, device, batch_size: int = 4) -> float:
    """mIoU of per-frame predictions of `model` (MPVSS) on `frames` of the cache."""
    k = model.config.num_classes
    conf = np.zeros((k, k), np.int64)
    for i in range(0, len(frames), batch_size):
        idx = frames[i:i + batch_size]
        seg = model.key_frame(_tensor(cache.images[idx], device))
        labels, _ = labels_and_confidence(semantic_probabilities(seg.class_logits.float(), seg.mask_logits.float()),
                                          cache.size)
        for pred, gt in zip(labels.cpu().numpy(), cache.train_ids[idx]):
            conf += confusion_of(pred, gt, k)
    return miou(conf)


@torch.no_grad()
def propagation_miou(model, cache: FrameCache, currents: np.ndarray, gap: int, device, batch_size: int = 4) -> float:
    """mIoU of masks propagated from frame `current - gap` to each current frame."""
    k = model.config.num_classes
    conf = np.zeros((k, k), np.int64)
    for i in range(0, len(currents), batch_size):
        cur = currents[i:i + batch_size]
        key_image, image = _tensor(cache.images[cur - gap], device), _tensor(cache.images[cur], device)
        seg = model.key_frame(key_image)
        prop = model.propagate(key_image, image, seg.queries, seg.mask_logits)
        probs = semantic_probabilities(seg.class_logits.float(), prop.mask_logits.float())
        labels, _ = labels_and_confidence(probs, cache.size)
        for pred, gt in zip(labels.cpu().numpy(), cache.train_ids[cur]):
            conf += confusion_of(pred, gt, k)
    return miou(conf)


def validation_currents(cache: FrameCache, gap: int, count: int) -> np.ndarray:
    """Labelled frames with `gap` earlier frames in their sequence, spread over the split."""
    return spread(cache.propagation_targets(gap), count)
