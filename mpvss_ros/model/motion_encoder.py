"""FlowNetS-like motion encoder with coarse-to-fine pixel flow.

The key frame and the current frame are stacked (6 channels) and downscaled x0.5 first, as the
MPVSS reference does, so the six stride-2 stages (kernels 7,5,5,3,3,3, LeakyReLU 0.1) give
features at 1/4, 1/8, 1/16, 1/32, 1/64 and 1/128 of the full image. Pixel flow is predicted at
1/128 and refined FlowNet-style down to 1/8.

Flow is backward flow (for each pixel of the current frame, where it was in the key frame),
in pixels of the grid it is given on; channel 0 = x, 1 = y.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNELS = (7, 5, 5, 3, 3, 3)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a (..., 2, h, w) flow to `size`, rescaling magnitudes per axis."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    lead = flow.shape[:-3]
    flat = flow.reshape(-1, 2, h, w)
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return (out * scale).reshape(*lead, 2, size[0], size[1])


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.1, inplace=True))


class MotionEncoder(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (16, 24, 32, 48, 64, 64), pair_scale: float = 0.5):
        super().__init__()
        if len(channels) != len(KERNELS):
            raise ValueError(f"the motion encoder has {len(KERNELS)} stages, got {len(channels)} channel counts")
        self.channels = tuple(channels)
        self.pair_scale = pair_scale
        stages = []
        cin = 6
        for i, (cout, k) in enumerate(zip(channels, KERNELS)):
            layers = [_conv(cin, cout, k, 2)]
            if i >= 2:  # FlowNetS' conv3_1 .. conv6_1: a stride-1 3x3 after the deeper stages
                layers.append(_conv(cout, cout, 3, 1))
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        # Coarse-to-fine refinement from the deepest stage (index 5) down to stage 1 (1/8).
        self.predict = nn.ModuleList()
        self.upfeat = nn.ModuleList()
        for level in range(5, 0, -1):
            c = channels[level] + (0 if level == 5 else channels[level] // 2 + 2)
            self.predict.append(nn.Conv2d(c, 2, 3, 1, 1))
            if level > 1:
                self.upfeat.append(_conv(c, channels[level - 1] // 2, 3, 1))
        for head in self.predict:  # small initial flow
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, key_image: torch.Tensor, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised (B,3,H,W) pair -> (features at strides 4..128, pixel flows coarse -> fine).

        The last pixel flow is at stride 8 of the full image, in pixels of its own grid.
        """
        x = torch.cat([key_image, image], dim=1)
        if self.pair_scale != 1.0:
            size = (max(1, round(x.shape[-2] * self.pair_scale)), max(1, round(x.shape[-1] * self.pair_scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.decode(self.stages[0](x))

    # The first conv is linear in the stacked pair: conv(cat(key, cur)) = conv_key(key) +
    # conv_cur(cur) + bias. Inference computes the key frame's term once per key frame
    # (`key_stem`) instead of once per propagated frame (`stem_with_key`).
    def key_stem(self, key_image: torch.Tensor) -> torch.Tensor:
        """The key image's share of the first conv (no bias, no activation), on an image already
        at the encoder's input scale."""
        conv = self.stages[0][0][0]
        return F.conv2d(key_image, conv.weight[:, :3], None, conv.stride, conv.padding)

    def stem_with_key(self, key_stem: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The first stage's output from `key_stem(key)` and the current image (same scale)."""
        conv, act = self.stages[0][0]
        x = act(F.conv2d(image, conv.weight[:, 3:], conv.bias, conv.stride, conv.padding) + key_stem)
        for layer in list(self.stages[0])[1:]:
            x = layer(x)
        return x

    def decode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(features, pixel flows) from the first stage's output."""
        feats = [x]
        for stage in self.stages[1:]:
            x = stage(x)
            feats.append(x)
        flows = []
        y = feats[5]
        for i, level in enumerate(range(5, 0, -1)):
            flow = self.predict[i](y)
            flows.append(flow)
            if level > 1:
                target = feats[level - 1]
                size = tuple(target.shape[-2:])
                up = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                y = torch.cat([target, self.upfeat[i](up), resize_flow(flow, size)], dim=1)
        return feats, flows
