"""A non-key frame must cost at most 1/6 of a key frame (GMACs, default config, 256x512)."""
import torch

from mpvss_ros.model.config import MPVSSConfig
from mpvss_ros.model.flops import count_gflops, model_gflops
from mpvss_ros.model.motion_decoder import Attention
from mpvss_ros.model.mpvss import MPVSS
from mpvss_ros.model.warp import warp_masks


def test_attention_and_grid_sample_are_counted():
    attn = Attention(64, 4)
    q, kv = torch.rand(1, 16, 64), torch.rand(1, 100, 64)
    macs = count_gflops(attn, q, kv, kv) * 1e9
    projections = 16 * 64 * 64 * 2 + 100 * 64 * 64 * 2  # q, out; k, v
    scores = 2 * 16 * 100 * 64  # QK^T and AV
    assert macs == projections + scores

    class Warp(torch.nn.Module):
        def forward(self, m, f):
            return warp_masks(m, f)

    macs = count_gflops(Warp(), torch.rand(1, 3, 8, 16), torch.zeros(1, 3, 2, 8, 16)) * 1e9
    assert macs == 4 * 3 * 8 * 16


def test_default_config_key_over_nonkey_at_least_6():
    torch.manual_seed(0)
    model = MPVSS(MPVSSConfig())
    g = model_gflops(model, (256, 512))
    assert 0.5 < g["key"] < 5 and g["nonkey"] > 0.05
    assert g["ratio"] >= 6.0, g


def test_flow_graph_counts_the_gather_warp_like_grid_sample():
    """The flow graph warps with gathers, which the counter cannot see; model_gflops adds the
    same 4 MACs per warped element that grid_sample is counted with."""
    from mpvss_ros.model.graphs import FlowGraph, SegmentorGraph
    from mpvss_ros.model.warp import warp_macs

    torch.manual_seed(0)
    model = MPVSS(MPVSSConfig()).eval()
    image = torch.rand(1, 3, 128, 256) * 255
    with torch.no_grad():
        queries, masks, classes, motion = SegmentorGraph(model)(image)[:4]
    counted = count_gflops(FlowGraph(model), motion, image.clone(), queries, masks, classes)
    assert abs(model_gflops(model, (128, 256))["nonkey"] - counted - warp_macs(masks.shape) / 1e9) < 1e-9
    assert warp_macs(masks.shape) == 4 * masks.numel()
