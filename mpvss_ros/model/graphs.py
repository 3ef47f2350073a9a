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

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import class_distribution, labels_and_confidence, semantic_probabilities
from .mpvss import MPVSS
from .segmentor import normalize_image
from .warp import warp_masks

SEGMENTOR_INPUTS = ["image"]
SEGMENTOR_OUTPUTS = ["queries", "mask_logits", "class_logits", "probs", "labels", "confidence"]
FLOW_INPUTS = ["key_image", "image", "key_queries", "key_mask_logits", "key_class_logits"]
FLOW_OUTPUTS = ["mask_logits", "probs", "labels", "confidence"]
SCORES = "scores"  # the host-post-processing variant's output replacing labels, confidence


def _tail(scores: torch.Tensor, size: tuple[int, int], full_resolution: bool):
    probs = class_distribution(scores)
    if not full_resolution:
        return probs, scores
    labels, confidence = labels_and_confidence(scores, size)
    return probs, labels, confidence


class SegmentorGraph(nn.Module):
    def __init__(self, model: MPVSS, full_resolution: bool = True):
        super().__init__()
        self.model = model
        self.full_resolution = full_resolution

    def forward(self, image: torch.Tensor):
        out = self.model.key_frame(image)
        scores = semantic_probabilities(out.class_logits, out.mask_logits)
        return (out.queries, out.mask_logits, out.class_logits,
                *_tail(scores, tuple(image.shape[-2:]), self.full_resolution))


class FlowGraph(nn.Module):
    """Query flow + per-query warp + fusion with the key frame's class probabilities."""

    def __init__(self, model: MPVSS, full_resolution: bool = True):
        super().__init__()
        self.model = model
        self.full_resolution = full_resolution
        # The motion encoder stacks the pair at full resolution, normalises and then scales it by
        # `pair_scale`. Both steps are linear per channel, so scaling each image first and
        # normalising the small images is the same computation on a quarter of the pixels (no
        # full-resolution concat): a view of the encoder with pair_scale 1 runs the rest.
        encoder = model.query_flow.encoder
        self.pair_scale = float(encoder.pair_scale)
        self.encoder = copy.copy(encoder)  # shares the submodules and parameters
        self.encoder.pair_scale = 1.0

    def _query_flow(self, key_image, image, key_queries, mask_size):
        qf = self.model.query_flow
        if self.pair_scale != 1.0:
            h, w = key_image.shape[-2:]
            size = (max(1, round(h * self.pair_scale)), max(1, round(w * self.pair_scale)))
            key_image = F.interpolate(key_image, size=size, mode="bilinear", align_corners=False)
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        feats, pixel_flows = self.encoder(normalize_image(key_image), normalize_image(image))
        queries = qf.decoder(key_queries, [feats[3], feats[2], feats[1]])
        return qf.head(queries, feats[0], pixel_flows[-1], mask_size)

    def forward(self, key_image, image, key_queries, key_mask_logits, key_class_logits):
        flow = self._query_flow(key_image, image, key_queries, tuple(key_mask_logits.shape[-2:]))
        masks = warp_masks(key_mask_logits, flow, method="gather")  # faster than GridSample on ORT's CPU
        scores = semantic_probabilities(key_class_logits, masks)
        return (masks, *_tail(scores, tuple(image.shape[-2:]), self.full_resolution))
