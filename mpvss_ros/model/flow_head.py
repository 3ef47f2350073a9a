"""Flow head: per-query (x, y) flow from flow queries and 1/4-scale motion features, fused with
the pixel flow by a 3x3 conv that starts out passing the pixel flow through."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .motion_encoder import resize_flow


class MLP(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, layers: int = 3):
        super().__init__()
        dims = [cin] + [hidden] * (layers - 1) + [cout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class FlowHead(nn.Module):
    def __init__(self, query_dim: int, feature_channels: int, embed_dim: int = 32):
        super().__init__()
        self.embed_dim = embed_dim
        self.query_mlp = MLP(query_dim, query_dim, 2 * embed_dim)
        self.feature_proj = nn.Sequential(
            nn.Conv2d(feature_channels, embed_dim, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(embed_dim, embed_dim, 1),
        )
        # Input channels: (query flow x, y, pixel flow x, y). Identity on the pixel flow, zero on
        # the query flow, so training starts from the pixel flow and learns per-query corrections.
        self.fuse = nn.Conv2d(4, 2, 3, 1, 1)
        with torch.no_grad():
            self.fuse.weight.zero_()
            self.fuse.bias.zero_()
            self.fuse.weight[0, 2, 1, 1] = 1.0
            self.fuse.weight[1, 3, 1, 1] = 1.0

    def query_flow_xy(self, flow_queries: torch.Tensor, features_4: torch.Tensor):
        """(B,N,D) queries . (B,E,h,w) features -> per-query (x, y) flow, each (B,N,h,w), on the
        features' grid."""
        emb = self.query_mlp(flow_queries)  # (B,N,2E): x embedding, then y embedding
        f = self.feature_proj(features_4)
        b, n = emb.shape[:2]
        e, (h, w) = self.embed_dim, f.shape[-2:]
        f = f.reshape(b, e, h * w)
        # matmuls rather than einsums: ONNX Runtime runs them as one GEMM each, without transposes
        fx = (emb[..., :e] @ f).reshape(b, n, h, w)
        fy = (emb[..., e:] @ f).reshape(b, n, h, w)
        return fx, fy

    def query_flow(self, flow_queries: torch.Tensor, features_4: torch.Tensor) -> torch.Tensor:
        """(B,N,D) queries . (B,E,h,w) features -> (B,N,2,h,w) per-query flow on the features' grid."""
        return torch.stack(self.query_flow_xy(flow_queries, features_4), dim=2)

    def flow_xy(self, flow_queries, features_4, pixel_flow, mask_size: tuple[int, int]):
        """-> fused per-query flow as (x, y), each (B,N,h,w) at `mask_size`, in mask-grid pixels.

        `pixel_flow` (B,2,h',w') is in pixels of its own grid; it is resized with magnitude rescale.
        """
        qx, qy = self.query_flow_xy(flow_queries, features_4)
        if tuple(qx.shape[-2:]) != tuple(mask_size):
            q = resize_flow(torch.stack([qx, qy], dim=2), mask_size)
            qx, qy = q[:, :, 0], q[:, :, 1]
        pflow = resize_flow(pixel_flow, mask_size)
        n = qx.shape[1]
        # The 3x3 conv over (query flow, pixel flow) is linear: the pixel-flow half is shared by
        # all queries, so it is applied once and broadcast instead of on N stacked copies.
        weight = self.fuse.weight
        shared = F.conv2d(pflow, weight[:, 2:], self.fuse.bias, padding=1)

        # The per-query half as four depthwise convs (one kernel per output/input axis pair,
        # the same for every query): ~3x faster in ONNX Runtime's CPU than one grouped conv
        # over interleaved (x, y) channels, and x and y stay separate planes for the warp.
        def depthwise(x, out_axis, in_axis):
            kernel = weight[out_axis, in_axis].expand(n, 1, 3, 3)
            return F.conv2d(x, kernel, None, padding=1, groups=n)

        fx = depthwise(qx, 0, 0) + depthwise(qy, 0, 1) + shared[:, 0:1]
        fy = depthwise(qx, 1, 0) + depthwise(qy, 1, 1) + shared[:, 1:2]
        return fx, fy

    def forward(self, flow_queries, features_4, pixel_flow, mask_size: tuple[int, int]) -> torch.Tensor:
        """-> fused flow (B,N,2,h,w) at `mask_size`, in mask-grid pixels (see `flow_xy`)."""
        return torch.stack(self.flow_xy(flow_queries, features_4, pixel_flow, mask_size), dim=2)
