"""What each phase optimises, as modules DDP can wrap: forward(batch) -> (loss, logged terms).

Losses are computed in float32 outside autocast: the Hungarian matcher hands its cost matrix
to scipy, which has no bfloat16.
"""
from __future__ import annotations

import torch
from torch import nn

from mpvss_ros.model.losses import epe_loss, mask2former_loss, multiscale_epe, targets_from_train_ids
from mpvss_ros.model.segmentor import normalize_image

# transformers' loss names -> learning-curve columns
_TERMS = {"loss_cross_entropy": "loss_class", "loss_mask": "loss_mask", "loss_dice": "loss_dice"}


def _column_sums(loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sum the weighted terms (final + auxiliary layers) per kind."""
    out = {c: 0.0 for c in _TERMS.values()}
    for key, value in loss_dict.items():
        for prefix, column in _TERMS.items():
            if key == prefix or key.startswith(prefix + "_"):
                out[column] += float(value.detach())
    return out


def set_loss_points(segmentor, num_points: int) -> int:
    """Points the Hungarian loss samples per mask (matcher and criterion); returns the number set.

    transformers defaults to 12544 (a 112x112 grid, sized for 1/4 masks of 512x1024 crops). A
    128x256 crop has 2048 mask pixels, and sampling 12544 points from them cost ~20x more loss
    time than the whole forward pass on a CPU without adding information."""
    hf = segmentor.model
    n = int(num_points)
    if n <= 0:
        raise ValueError(f"loss points must be positive, got {n}")
    hf.criterion.num_points = n
    hf.criterion.matcher.num_points = n
    return n


def default_loss_points(crop: tuple[int, int], config_points: int) -> int:
    """One point per mask pixel of the crop (masks are at 1/4 resolution), at most the config's."""
    return max(256, min(int(config_points), (crop[0] // 4) * (crop[1] // 4)))


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class SegmentorObjective(nn.Module):
    """Mask2Former's own loss with deep supervision: the Hungarian loss of the final prediction
    plus that of every intermediate decoder layer, each weighted class 2, mask 5, dice 5."""

    def __init__(self, model):
        super().__init__()
        self.model = model  # MPVSS; only model.segmentor is used and trained

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        hf = self.model.segmentor.model
        out = hf(pixel_values=normalize_image(batch["image"]), output_auxiliary_logits=True, return_dict=True)
        masks, classes = targets_from_train_ids(batch["train_ids"], self.model.config.num_classes)
        with _no_autocast(batch["image"].device):
            aux = [{k: v.float() for k, v in a.items()} for a in (out.auxiliary_logits or [])]
            loss_dict = hf.get_loss_dict(masks_queries_logits=out.masks_queries_logits.float(),
                                         class_queries_logits=out.class_queries_logits.float(),
                                         mask_labels=masks, class_labels=classes, auxiliary_predictions=aux)
            loss = sum(loss_dict.values())
        return loss, _column_sums(loss_dict)


class PixelFlowObjective(nn.Module):
    """Flow pre-training: multi-scale EPE of the motion encoder's pixel-flow pyramid against the
    ground-truth backward flow (the paper starts from FlowNet weights trained on Flying Chairs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        encoder = self.model.query_flow.encoder
        _, pixel_flows = encoder(normalize_image(batch["key_image"]), normalize_image(batch["image"]))
        with _no_autocast(batch["image"].device):
            flows = [f.float() for f in pixel_flows]
            loss = multiscale_epe(flows, batch["flow"], batch["valid"])
            with torch.no_grad():
                finest = epe_loss(flows[-1], batch["flow"], batch["valid"])
        return loss, {"loss_epe": float(finest)}


class PropagationObjective(nn.Module):
    """The MPVSS objective: the key frame's mask logits, warped by the per-query flow to the
    current frame, scored with the Hungarian-matched Mask2Former loss against the current
    frame's labels (class 2, mask BCE 5, dice 5, no-object 0.1). The segmentor stays in eval
    mode; only its class/mask heads and the query-flow module receive gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.segmentor.eval()  # frozen body: no drop-path noise in the key-frame features
        return self

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        key_image, image = batch["key_image"], batch["image"]
        seg = self.model.key_frame(key_image)
        prop = self.model.propagate(key_image, image, seg.queries, seg.mask_logits)
        masks, classes = targets_from_train_ids(batch["train_ids"], self.model.config.num_classes)
        with _no_autocast(image.device):
            loss, terms = mask2former_loss(self.model.segmentor, prop.mask_logits.float(),
                                           seg.class_logits.float(), masks, classes)
        return loss, _column_sums(terms)
