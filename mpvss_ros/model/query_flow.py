"""QueryFlow: one backward flow map per segment query (MPVSS' query-based flow).

motion encoder (frame pair -> motion features + coarse-to-fine pixel flow)
-> motion decoder (flow queries from the key frame's queries attend the motion features)
-> flow head (per-query flow fused with the pixel flow, at mask resolution).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import QueryFlowConfig
from .flow_head import FlowHead
from .motion_decoder import MotionDecoder
from .motion_encoder import MotionEncoder, resize_flow
from .segmentor import normalize_image


@dataclass
class QueryFlowOutput:
    flow: torch.Tensor  # (B,N,2,h,w) backward flow per query, mask-grid pixels
    pixel_flows: list[torch.Tensor]  # coarse -> fine (B,2,h_i,w_i), each in its own grid's pixels


class QueryFlow(nn.Module):
    def __init__(self, cfg: QueryFlowConfig, num_queries: int, segment_dim: int):
        super().__init__()
        self.cfg = cfg
        ch = tuple(cfg.encoder_channels)
        self.encoder = MotionEncoder(ch, cfg.pair_scale)
        # encoder stage i has stride 2**(i+2) of the full image: 1/32, 1/16, 1/8 = stages 3, 2, 1
        self.decoder = MotionDecoder(segment_dim, num_queries, (ch[3], ch[2], ch[1]),
                                     cfg.hidden_dim, cfg.num_heads, cfg.decoder_layers, cfg.ffn_dim)
        self.head = FlowHead(cfg.hidden_dim, ch[0], cfg.flow_embed_dim)

    def run(self, key_image: torch.Tensor, image: torch.Tensor, key_queries: torch.Tensor,
            mask_size: tuple[int, int] | None = None) -> QueryFlowOutput:
        """Images (B,3,H,W) RGB 0..255; key_queries (B,N,C) -> flows and the pixel-flow pyramid."""
        if key_image.shape != image.shape:
            raise ValueError(f"key image {tuple(key_image.shape)} and image {tuple(image.shape)} differ")
        if mask_size is None:
            mask_size = (image.shape[-2] // 4, image.shape[-1] // 4)
        feats, pixel_flows = self.encoder(normalize_image(key_image), normalize_image(image))
        queries = self.decoder(key_queries, [feats[3], feats[2], feats[1]])
        flow = self.head(queries, feats[0], pixel_flows[-1], tuple(mask_size))
        return QueryFlowOutput(flow=flow, pixel_flows=pixel_flows)

    def forward(self, key_image, image, key_queries, mask_size=None) -> torch.Tensor:
        return self.run(key_image, image, key_queries, mask_size).flow

    def pixel_flow(self, key_image: torch.Tensor, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Encoder-only backward pixel flow (B,2,*size) in pixels of a `size` grid (for EPE pre-training)."""
        _, pixel_flows = self.encoder(normalize_image(key_image), normalize_image(image))
        return resize_flow(pixel_flows[-1], size)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())
