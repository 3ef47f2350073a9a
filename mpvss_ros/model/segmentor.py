"""Key-frame segmentor: a transformers Mask2Former reduced to (queries, mask logits, class logits)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# ImageNet statistics, as Mask2Former's image processor uses them (images 0..255 RGB).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def normalize_image(image_0_255: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB 0..255 -> ImageNet-normalised pixel values."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image_0_255.dtype, device=image_0_255.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image_0_255.dtype, device=image_0_255.device).view(1, 3, 1, 1)
    return (image_0_255 - mean) / std


@dataclass
class SegmentorOutput:
    queries: torch.Tensor  # (B,N,C) decoder output before its final LayerNorm
    mask_logits: torch.Tensor  # (B,N,H/4,W/4)
    class_logits: torch.Tensor  # (B,N,K+1), last = no object


class KeyFrameSegmentor(nn.Module):
    """Wraps `Mask2FormerForUniversalSegmentation`; `model` is the transformers module itself."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "KeyFrameSegmentor":
        """Load a local transformers directory; never reaches the network. Classes come out in
        Cityscapes train-id order; anything that would make outputs silently wrong is a
        ValueError (`pretrained.py`)."""
        from .pretrained import load_mask2former

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"not a transformers model directory (no config.json): {directory}")
        if not any(directory.glob("*.safetensors")):  # pickled *.bin weights are never loaded
            raise FileNotFoundError(f"no safetensors weights in {directory} (convert *.bin checkpoints first)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return cls(load_mask2former(directory))

    @classmethod
    def from_config(cls, hf_config) -> "KeyFrameSegmentor":
        """Random init from a transformers `Mask2FormerConfig` (or its dict)."""
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

        if isinstance(hf_config, dict):
            hf_config = Mask2FormerConfig.from_dict(hf_config)
        return cls(Mask2FormerForUniversalSegmentation(hf_config).eval())

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(str(directory), safe_serialization=True)

    @property
    def config(self):
        return self.model.config

    @property
    def num_queries(self) -> int:
        return int(self.model.config.num_queries)

    @property
    def hidden_dim(self) -> int:
        return int(self.model.config.hidden_dim)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def class_head(self) -> nn.Module:
        """Linear query -> K+1 class logits (trained with the flow module)."""
        return self.model.class_predictor

    @property
    def mask_head(self) -> nn.Module:
        """MLP query -> mask embedding, dotted with the pixel embeddings (trained with the flow module)."""
        return self.model.model.transformer_module.decoder.mask_predictor.mask_embedder

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.class_head.parameters()) + list(self.mask_head.parameters())

    def freeze_except_heads(self) -> None:
        """Freeze backbone, pixel decoder and transformer decoder; keep the class/mask heads trainable."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.head_parameters():
            p.requires_grad_(True)

    def forward(self, pixel_values: torch.Tensor) -> SegmentorOutput:
        out = self.model(pixel_values=pixel_values, return_dict=True)
        return SegmentorOutput(
            queries=out.transformer_decoder_last_hidden_state,
            mask_logits=out.masks_queries_logits,
            class_logits=out.class_queries_logits,
        )
