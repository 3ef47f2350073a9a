"""Losses: Mask2Former's Hungarian loss on (possibly warped) mask logits, and EPE for pixel flow.

The Hungarian loss is transformers' own `Mask2FormerLoss` (the segmentor model's `criterion`)
combined with its `weight_dict` (class 2, mask BCE 5, dice 5, no-object 0.1 by default). It samples
points at random in normalised coordinates, so masks of any resolution work; pass `seed` to make
the loss reproducible without disturbing the global RNG.
"""
from __future__ import annotations

import torch

from .motion_encoder import resize_flow
from .segmentor import KeyFrameSegmentor


def targets_from_train_ids(train_ids: torch.Tensor, num_classes: int = 19, ignore_index: int = 255
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B,H,W) train ids -> per-image binary masks (n_i,H,W) float and class ids (n_i,) long.

    Ignored pixels belong to no mask (the loss then treats them as background for every query).
    """
    if train_ids.dim() != 3:
        raise ValueError(f"expected train ids (B,H,W), got {tuple(train_ids.shape)}")
    masks, classes = [], []
    for ids in train_ids.long():
        present = [c for c in torch.unique(ids).tolist() if c != ignore_index and 0 <= c < num_classes]
        cls = torch.tensor(present, dtype=torch.long, device=ids.device)
        masks.append((ids.unsqueeze(0) == cls.view(-1, 1, 1)).float())
        classes.append(cls)
    return masks, classes


def mask2former_loss(segmentor: KeyFrameSegmentor, mask_logits: torch.Tensor, class_logits: torch.Tensor,
                     mask_labels: list[torch.Tensor], class_labels: list[torch.Tensor],
                     seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted Hungarian loss of the final predictions -> (total, {term: weighted value})."""
    model = segmentor.model

    def compute():
        terms = model.criterion(masks_queries_logits=mask_logits, class_queries_logits=class_logits,
                                mask_labels=mask_labels, class_labels=class_labels, auxiliary_predictions=None)
        return {k: v * model.weight_dict[k] for k, v in terms.items()}

    if seed is None:
        weighted = compute()
    else:
        devices = [mask_logits.device] if mask_logits.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            weighted = compute()
    return sum(weighted.values()), weighted


def epe_loss(pred_flow: torch.Tensor, target_flow: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error over valid pixels.

    pred_flow (B,2,h,w) in pixels of its own grid is resized (with magnitude rescale) to the
    target's grid; target_flow (B,2,H,W) in pixels of that grid; valid (B,H,W) marks pixels with
    trustworthy flow (not occluded, inside the frame). Returns 0 (with a graph) if none is valid.
    """
    pred = resize_flow(pred_flow, tuple(target_flow.shape[-2:]))
    err = torch.linalg.vector_norm(pred - target_flow, dim=1)
    if valid is None:
        return err.mean()
    w = valid.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def multiscale_epe(pixel_flows: list[torch.Tensor], target_flow: torch.Tensor, valid: torch.Tensor | None = None,
                   weights: list[float] | None = None) -> torch.Tensor:
    """Weighted sum of EPE over the coarse -> fine pixel-flow pyramid (deep supervision).

    Every level is scored on the target's grid in the same units, so the default weights favour
    the finest level (1.0) and halve per coarser level.
    """
    if weights is None:
        weights = [0.5 ** (len(pixel_flows) - 1 - i) for i in range(len(pixel_flows))]
    if len(weights) != len(pixel_flows):
        raise ValueError(f"{len(pixel_flows)} flows but {len(weights)} weights")
    return sum(w * epe_loss(f, target_flow, valid) for w, f in zip(weights, pixel_flows))
