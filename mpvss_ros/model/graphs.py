"""The two inference graphs as torch modules: what `segmentor.onnx` and `flow.onnx` contain.

Export, FLOP counting and the torch runner all use these, so the three agree by construction.
Inputs are RGB images 0..255, float32 (1,3,H,W); ImageNet normalisation happens in-graph.
`probs` is the fused class score normalised over classes (sums to 1 per pixel).

With `full_resolution=False` a graph returns the raw fused `scores` (1,K,h,w) instead of
`labels`/`confidence`: the host computes those with `runtime.postprocess` (same labels, a
fraction of the cost on a CPU). The exported ONNX files keep the full-resolution outputs; the
ONNX runner prunes them at load time when it post-processes on the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import class_distribution, labels_and_confidence, scores_and_total
from .mpvss import MPVSS
from .segmentor import normalize_image
from .warp import warp_masks_xy

SEGMENTOR_INPUTS = ["image"]
SEGMENTOR_OUTPUTS = ["queries", "mask_logits", "class_logits", "motion", "probs", "labels", "confidence"]
FLOW_INPUTS = ["key_motion", "image", "key_queries", "key_mask_logits", "key_class_logits"]
FORMAT_VERSION = 2  # model.json "version"; 2: the key frame's motion features replace the key image
FLOW_OUTPUTS = ["mask_logits", "probs", "labels", "confidence"]
SCORES = "scores"  # the host-post-processing variant's output replacing labels, confidence


def _tail(scores: torch.Tensor, total: torch.Tensor, size: tuple[int, int], full_resolution: bool):
    probs = class_distribution(scores, total=total)
    if not full_resolution:
        return probs, scores
    labels, confidence = labels_and_confidence(scores, size, total=total)
    return probs, labels, confidence


def _encoder_input(image: torch.Tensor, scale: float) -> torch.Tensor:
    """An image as the motion encoder sees it: scaled by `scale`, then normalised (both linear
    per channel, so this equals the reference's normalise-stack-scale on a quarter of the pixels)."""
    if scale != 1.0:
        h, w = image.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    return normalize_image(image)


class SegmentorGraph(nn.Module):
    """Key frame: Mask2Former, fusion, and the key image's share of the motion encoder's first
    conv (`motion`), which every propagated frame until the next key frame reuses."""

    def __init__(self, model: MPVSS, full_resolution: bool = True):
        super().__init__()
        self.model = model
        self.full_resolution = full_resolution

    def forward(self, image: torch.Tensor):
        out = self.model.key_frame(image)
        scores, total = scores_and_total(out.class_logits, out.mask_logits)
        encoder = self.model.query_flow.encoder
        motion = encoder.key_stem(_encoder_input(image, float(encoder.pair_scale)))
        return (out.queries, out.mask_logits, out.class_logits, motion,
                *_tail(scores, total, tuple(image.shape[-2:]), self.full_resolution))


class FlowGraph(nn.Module):
    """Query flow + per-query warp + fusion with the key frame's class probabilities."""

    def __init__(self, model: MPVSS, full_resolution: bool = True):
        super().__init__()
        self.model = model
        self.full_resolution = full_resolution

    def forward(self, key_motion, image, key_queries, key_mask_logits, key_class_logits):
        qf = self.model.query_flow
        encoder = qf.encoder
        x = encoder.stem_with_key(key_motion, _encoder_input(image, float(encoder.pair_scale)))
        feats, pixel_flows = encoder.decode(x)
        queries = qf.decoder(key_queries, [feats[3], feats[2], feats[1]])
        flow_x, flow_y = qf.head.flow_xy(queries, feats[0], pixel_flows[-1], tuple(key_mask_logits.shape[-2:]))
        masks = warp_masks_xy(key_mask_logits, flow_x, flow_y)  # gathers: faster than GridSample on ORT's CPU
        scores, total = scores_and_total(key_class_logits, masks)
        return (masks, *_tail(scores, total, tuple(image.shape[-2:]), self.full_resolution))
