"""FLOPs of the key-frame graph and the non-key (flow) graph.

Convention: **GFLOPs here are GMACs** (one multiply-add = 1), as papers quote "FLOPs";
`torch.utils.flop_counter.FlopCounterMode` reports 2 x MACs, so its total is halved.
Counted: convolutions and matrix products (linear layers, attention under the MATH SDPA
backend - the fused CPU kernel would count 0) plus `grid_sample` added by hand (4 MACs per
output element for bilinear: the deformable attention of the pixel decoder, and our warp, which
the flow graph runs as gathers and lerps and is added by `warp_macs`).
Not counted (both graphs alike): element-wise ops, softmax, normalisation, interpolation.
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .graphs import FlowGraph, SegmentorGraph
from .mpvss import MPVSS
from .warp import warp_macs


def _grid_sampler_flop(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    n, c = input_shape[:2]
    hout, wout = grid_shape[1:3]
    return 2 * 4 * n * c * hout * wout  # 2 x MACs, like the counter's own formulas


def count_gflops(module: torch.nn.Module, *inputs) -> float:
    """GMACs of one forward pass (see the module docstring for what is counted)."""
    mapping = {torch.ops.aten.grid_sampler_2d: _grid_sampler_flop}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    # The counter's module tracker trips over parameters that require grad under no_grad.
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            module(*inputs)
    finally:
        for p in params:
            p.requires_grad_(True)
    return counter.get_total_flops() / 2 / 1e9


def model_gflops(model: MPVSS, size: tuple[int, int] | None = None) -> dict[str, float]:
    """{"key": GMACs of segmentor.onnx's graph, "nonkey": of flow.onnx's, "ratio": key / nonkey}."""
    h, w = size or model.config.image_size
    model = model.eval()
    image = torch.rand(1, 3, h, w) * 255
    seg = SegmentorGraph(model)
    key = count_gflops(seg, image)
    with torch.no_grad():
        queries, masks, classes, motion = seg(image)[:4]
    nonkey = count_gflops(FlowGraph(model), motion, image.clone(), queries, masks, classes)
    nonkey += warp_macs(masks.shape) / 1e9  # the gather warp is invisible to the counter
    return {"key": key, "nonkey": nonkey, "ratio": key / nonkey}
