"""Semantic fusion of Mask2Former outputs: per-class probability = sum over queries of
p(class | query) * sigmoid(mask), the same rule as transformers' post_process_semantic_segmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def semantic_probabilities(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """class_logits (B,N,K+1), mask_logits (B,N,h,w) -> (B,K,h,w); the "no object" column is dropped."""
    classes = class_logits.softmax(dim=-1)[..., :-1]
    return torch.einsum("bnk,bnhw->bkhw", classes, mask_logits.sigmoid())


def class_distribution(probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Normalise fused scores over classes so each pixel sums to 1 (the argmax is unchanged).

    The raw fused scores sum over N queries and can exceed 1; the graphs output this
    distribution as `probs`, so per-class confidence maps are comparable across pixels.
    """
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(eps)


def labels_and_confidence(scores: torch.Tensor, size: tuple[int, int], eps: float = 1e-6
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused scores (B,K,h,w) -> labels (B,H,W) uint8 train ids, confidence (B,H,W) float32 at `size`.

    The raw scores are bilinearly up-sampled (align_corners=False) and arg-maxed, exactly as
    transformers' post-processing does; confidence is the winning class's share of the
    up-sampled scores (0..1), i.e. the max of the class distribution at full resolution.
    """
    # The class reduction runs channels-last (contiguous; ~2x faster in torch and ORT), and the
    # per-pixel total is up-sampled from the mask grid: bilinear interpolation is linear, so
    # up(sum_k s_k) == sum_k up(s_k) without a 19-channel full-resolution reduction.
    up = F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
    best, labels = up.permute(0, 2, 3, 1).max(dim=-1)
    total = F.interpolate(scores.sum(dim=1, keepdim=True), size=tuple(size), mode="bilinear",
                          align_corners=False)[:, 0]
    return labels.to(torch.uint8), best / total.clamp_min(eps)
