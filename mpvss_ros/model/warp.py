"""Per-query backward warp of mask logits: warped(x) = key(x + flow(x)).

`grid_sample` with align_corners=False, so pixel i has its centre at normalised coordinate
(2i + 1) / size - 1 and zero flow reproduces the input exactly. padding_mode="border": content
entering the view takes the nearest key-frame logit (zeros would mean logit 0 = probability 0.5
for every query, a worse guess than the edge).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_masks(mask_logits: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """mask_logits (B,N,h,w), flow (B,N,2,h,w) in mask-grid pixels (x, y) -> (B,N,h,w)."""
    if mask_logits.dim() != 4 or flow.dim() != 5 or flow.shape[2] != 2:
        raise ValueError(f"expected masks (B,N,h,w) and flow (B,N,2,h,w), got {tuple(mask_logits.shape)} "
                         f"and {tuple(flow.shape)}")
    b, n, h, w = mask_logits.shape
    if flow.shape[:2] != (b, n) or flow.shape[-2:] != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match masks {tuple(mask_logits.shape)}")
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, 1, h, 1).expand(1, 1, h, w)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, 1, w).expand(1, 1, h, w)
    gx = (2.0 * (xs + flow[:, :, 0]) + 1.0) / w - 1.0
    gy = (2.0 * (ys + flow[:, :, 1]) + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1).reshape(b * n, h, w, 2)
    out = F.grid_sample(mask_logits.reshape(b * n, 1, h, w), grid, mode=mode,
                        padding_mode="border", align_corners=False)
    return out.reshape(b, n, h, w)
