"""MPVSS: key-frame Mask2Former + query-based flow that warps its N mask logits to later frames.

A checkpoint directory holds `config.json` (MPVSSConfig, with the segmentor's full transformers
config embedded so it is self-contained) and `model.safetensors`. Loading reads safetensors only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import MPVSSConfig, first_line, tiny_segmentor_config
from .query_flow import QueryFlow
from .segmentor import KeyFrameSegmentor, SegmentorOutput, normalize_image
from .warp import warp_masks

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class PropagationOutput:
    mask_logits: torch.Tensor  # (B,N,h,w) key mask logits warped to the current frame
    flow: torch.Tensor  # (B,N,2,h,w)
    pixel_flows: list[torch.Tensor]


def build_segmentor(cfg: MPVSSConfig) -> KeyFrameSegmentor:
    if cfg.segmentor_hf_config is not None:
        return KeyFrameSegmentor.from_config(cfg.segmentor_hf_config)
    if cfg.segmentor_path:
        return KeyFrameSegmentor.from_pretrained(cfg.segmentor_path)
    return KeyFrameSegmentor.from_config(tiny_segmentor_config(cfg.segmentor, cfg.num_classes))


class MPVSS(nn.Module):
    def __init__(self, config: MPVSSConfig, segmentor: KeyFrameSegmentor | None = None):
        super().__init__()
        self.config = config
        self.segmentor = segmentor if segmentor is not None else build_segmentor(config)
        if self.segmentor.num_classes != config.num_classes:
            raise ValueError(f"segmentor has {self.segmentor.num_classes} classes, config says {config.num_classes}")
        self.query_flow = QueryFlow(config.flow, self.segmentor.num_queries, self.segmentor.hidden_dim)

    @property
    def class_names(self) -> list[str]:
        id2label = self.segmentor.config.id2label
        return [str(id2label[i]) for i in range(self.config.num_classes)]

    def key_frame(self, image_0_255: torch.Tensor) -> SegmentorOutput:
        """(B,3,H,W) RGB 0..255 -> queries, mask logits, class logits."""
        return self.segmentor(normalize_image(image_0_255))

    def propagate(self, key_image: torch.Tensor, image: torch.Tensor, key_queries: torch.Tensor,
                  key_mask_logits: torch.Tensor) -> PropagationOutput:
        """Warp the key frame's mask logits to `image` (both images RGB 0..255, same size)."""
        out = self.query_flow.run(key_image, image, key_queries, tuple(key_mask_logits.shape[-2:]))
        return PropagationOutput(warp_masks(key_mask_logits, out.flow), out.flow, out.pixel_flows)

    def freeze_for_flow_training(self) -> list[nn.Parameter]:
        """Freeze the segmentor except its class/mask heads; return the parameters to train."""
        self.segmentor.freeze_except_heads()
        for p in self.query_flow.parameters():
            p.requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]

    def standalone_config(self) -> MPVSSConfig:
        """A copy of the configuration with the segmentor's transformers config embedded (no
        path to a checkpoint directory): enough to rebuild this model anywhere."""
        cfg = MPVSSConfig.from_dict(self.config.to_dict())
        cfg.segmentor_hf_config = self.segmentor.config.to_dict()
        cfg.segmentor_path = None
        return cfg

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.standalone_config().save(directory / CONFIG_NAME)
        save_model(self, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def load(cls, directory: str | Path, weights_name: str = WEIGHTS_NAME, map_location: str = "cpu") -> "MPVSS":
        from safetensors.torch import load_model

        directory = Path(directory)
        cfg_path, weights = directory / CONFIG_NAME, directory / weights_name
        if not cfg_path.is_file() or not weights.is_file():
            raise FileNotFoundError(f"not an MPVSS checkpoint (needs {CONFIG_NAME} and {weights_name}): {directory}")
        model = cls(MPVSSConfig.load(cfg_path))
        try:
            load_model(model, str(weights), strict=True, device=map_location)
        except Exception as exc:  # a truncated or foreign file: say which, in one line
            raise ValueError(f"{weights}: cannot load it into this checkpoint's model ({first_line(exc)})") from None
        return model.eval()
