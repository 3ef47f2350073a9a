"""Semantic fusion of Mask2Former outputs: per-class probability = sum over queries of
p(class | query) * sigmoid(mask), the same rule as transformers' post_process_semantic_segmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def semantic_probabilities(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """class_logits (B,N,K+1), mask_logits (B,N,h,w) -> (B,K,h,w); the "no object" column is dropped."""
    classes = class_logits.softmax(dim=-1)[..., :-1]
    return torch.einsum("bnk,bnhw->bkhw", classes, mask_logits.sigmoid())


def scores_and_total(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`semantic_probabilities` and its sum over classes (B,1,h,w).

    The sum is taken over queries: sum_k s_k = sum_n (sum_k p(k|n)) sigmoid(m_n), one N-term
    matrix product instead of a reduction over K planes (several times faster in ONNX Runtime)."""
    classes = class_logits.softmax(dim=-1)[..., :-1]
    masks = mask_logits.sigmoid()
    b, n, h, w = masks.shape
    scores = torch.einsum("bnk,bnhw->bkhw", classes, masks)
    total = (classes.sum(dim=-1).unsqueeze(1) @ masks.reshape(b, n, h * w)).reshape(b, 1, h, w)
    return scores, total


def class_distribution(probs: torch.Tensor, eps: float = 1e-6, total: torch.Tensor | None = None) -> torch.Tensor:
    """Normalise fused scores over classes so each pixel sums to 1 (the argmax is unchanged).

    The raw fused scores sum over N queries and can exceed 1; the graphs output this
    distribution as `probs`, so per-class confidence maps are comparable across pixels.
    `total`: the scores' sum over classes, if already known (`scores_and_total`).
    """
    if total is None:
        total = probs.sum(dim=1, keepdim=True)
    return probs / total.clamp_min(eps)


def labels_and_confidence(scores: torch.Tensor, size: tuple[int, int], eps: float = 1e-6,
                          total: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused scores (B,K,h,w) -> labels (B,H,W) uint8 train ids, confidence (B,H,W) float32 at `size`.

    The raw scores are bilinearly up-sampled (align_corners=False) and arg-maxed, as
    transformers' post-processing does (it first resizes the masks to its processor's size, e.g.
    384x384, which changes labels near class boundaries: ~98 % agree); confidence is the winning class's share of the
    up-sampled scores (0..1), i.e. the max of the class distribution at full resolution.
    """
    # The class reduction runs channels-last (contiguous; ~2x faster in torch and ORT), and the
    # per-pixel total is up-sampled from the mask grid: bilinear interpolation is linear, so
    # up(sum_k s_k) == sum_k up(s_k) without a 19-channel full-resolution reduction.
    up = F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
    best, labels = up.permute(0, 2, 3, 1).max(dim=-1)
    if total is None:
        total = scores.sum(dim=1, keepdim=True)
    total = F.interpolate(total, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return labels.to(torch.uint8), best / total.clamp_min(eps)
