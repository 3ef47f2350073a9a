"""Motion decoder: N flow queries, initialised from the key frame's N segment queries.

Mask2Former-style layers: each layer cross-attends ONE motion-feature scale (cycling
1/32 -> 1/16 -> 1/8, coarse to fine), then self-attention among the queries, then an FFN.
Joint self-attention over queries and all tokens was measured slower than a key frame at
512x1024, so it is avoided.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_embedding(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """2-D sine/cosine positional embedding (DETR style), (h*w, dim); a constant for fixed shapes."""
    if dim % 4:
        raise ValueError(f"positional embedding dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 * math.pi
    freq = 10000 ** (torch.arange(quarter, device=device, dtype=dtype) / quarter)
    py = ys[:, None] / freq  # (h, q)
    px = xs[:, None] / freq  # (w, q)
    py = torch.cat([py.sin(), py.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
    px = torch.cat([px.sin(), px.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([py, px], dim=2).reshape(h * w, dim)


class Attention(nn.Module):
    """Multi-head attention on scaled_dot_product_attention (exports cleanly, counts under MATH)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, nq, d = query.shape
        nk = key.shape[1]
        hd = d // self.heads
        q = self.q(query).view(b, nq, self.heads, hd).transpose(1, 2)
        k = self.k(key).view(b, nk, self.heads, hd).transpose(1, 2)
        v = self.v(value).view(b, nk, self.heads, hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out(o.transpose(1, 2).reshape(b, nq, d))


class MotionDecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.cross = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, query_pos, memory, memory_pos):
        x = self.norm1(x + self.cross(x + query_pos, memory + memory_pos, memory))
        q = x + query_pos
        x = self.norm2(x + self.self_attn(q, q, x))
        return self.norm3(x + self.ffn(x))


class MotionDecoder(nn.Module):
    """Flow queries = Linear(key queries) + learned embedding, refined against motion features."""

    def __init__(self, segment_dim: int, num_queries: int, feature_channels: tuple[int, int, int],
                 dim: int = 64, heads: int = 4, layers: int = 3, ffn_dim: int = 128):
        super().__init__()
        self.num_queries = num_queries
        self.query_proj = nn.Linear(segment_dim, dim)
        self.query_embed = nn.Parameter(torch.zeros(num_queries, dim))
        self.query_pos = nn.Parameter(torch.zeros(num_queries, dim))
        nn.init.normal_(self.query_embed, std=0.02)
        nn.init.normal_(self.query_pos, std=0.02)
        # feature_channels: motion features at 1/32, 1/16, 1/8 (the cycle order)
        self.inputs = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in feature_channels)
        self.level_embed = nn.Parameter(torch.zeros(len(feature_channels), dim))
        self.layers = nn.ModuleList(MotionDecoderLayer(dim, heads, ffn_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, key_queries: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """key_queries (B,N,Cseg), features [1/32, 1/16, 1/8] -> flow queries (B,N,D)."""
        if key_queries.shape[1] != self.num_queries:
            raise ValueError(f"expected {self.num_queries} key queries, got {key_queries.shape[1]}")
        memories, positions = [], []
        for i, (proj, feat) in enumerate(zip(self.inputs, features)):
            m = proj(feat)
            h, w = m.shape[-2:]
            memories.append(m.flatten(2).transpose(1, 2))
            pos = sine_position_embedding(h, w, m.shape[1], m.device, m.dtype) + self.level_embed[i]
            positions.append(pos.unsqueeze(0))
        x = self.query_proj(key_queries) + self.query_embed.unsqueeze(0)
        qpos = self.query_pos.unsqueeze(0)
        for i, layer in enumerate(self.layers):
            level = i % len(memories)
            x = layer(x, qpos, memories[level], positions[level])
        return self.norm(x)
