"""ONNX export of a tiny random model: files, model.json, and ORT vs torch agreement on both graphs."""
import json
import numpy as np
import pytest
import torch

from mpvss_ros.model.graphs import FlowGraph, SegmentorGraph
from mpvss_ros.model.mpvss import MPVSS

SIZE = (64, 128)



def test_model_directory_contents(model_dir):
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["config.json", "flow.onnx", "model.json", "segmentor.onnx", "weights.safetensors"]
    info = json.loads((model_dir / "model.json").read_text())
    assert info["format"] == "mpvss-model" and info["version"] == 2
    assert info["input_size"] == list(SIZE)
    assert info["num_classes"] == 19 and len(info["class_names"]) == 19 and len(info["palette"]) == 19
    assert info["class_names"][11] == "person" and info["palette"][0] == [128, 64, 128]
    assert info["graphs"] == {"segmentor": "segmentor.onnx", "flow": "flow.onnx"}
    assert info["weights"] == "weights.safetensors" and info["default_interval"] == 5
    assert info["metrics"]["gflops"]["key"] > info["metrics"]["gflops"]["nonkey"] > 0
    for key in ("format", "version", "input_size", "num_queries", "hidden_dim", "num_classes", "class_names",
                "palette", "default_interval", "graphs", "weights", "provenance", "metrics"):
        assert key in info


@pytest.mark.parametrize("directory", ["exported", "shipped"])
def test_graphs_carry_no_exporter_debug_metadata(model_dir, directory):
    """The dynamo exporter tags every node with a Python stack trace and FX text naming the
    exporting machine's paths; export drops them (a quarter of the segmentor file)."""
    import onnx
    from pathlib import Path

    folder = model_dir if directory == "exported" else Path(__file__).resolve().parents[1] / "models" / "default"
    for name in ("segmentor.onnx", "flow.onnx"):
        raw = (folder / name).read_bytes()
        model = onnx.load_model_from_string(raw)
        assert len(model.graph.node) > 50
        assert [n.name for n in model.graph.node if len(n.metadata_props)] == []
        assert b"stack_trace" not in raw and b"mpvss_ros/model/" not in raw and b"site-packages" not in raw


def test_onnx_graphs_match_torch(model_dir):
    import onnxruntime as ort

    model = MPVSS.load(model_dir, weights_name="weights.safetensors")
    g = torch.Generator().manual_seed(5)
    key = torch.rand(1, 3, *SIZE, generator=g) * 255
    image = torch.roll(key, shifts=(1, 5), dims=(2, 3))
    seg = ort.InferenceSession(str(model_dir / "segmentor.onnx"), providers=["CPUExecutionProvider"])
    flow = ort.InferenceSession(str(model_dir / "flow.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in seg.get_inputs()] == ["image"]
    assert [o.name for o in seg.get_outputs()] == ["queries", "mask_logits", "class_logits", "motion", "probs",
                                                    "labels", "confidence"]
    assert [i.name for i in flow.get_inputs()] == ["key_motion", "image", "key_queries", "key_mask_logits",
                                                    "key_class_logits"]
    assert [o.name for o in flow.get_outputs()] == ["mask_logits", "probs", "labels", "confidence"]

    with torch.no_grad():
        t_seg = [t.numpy() for t in SegmentorGraph(model)(key)]
    o_seg = seg.run(None, {"image": key.numpy()})
    n, h, w = model.segmentor.num_queries, SIZE[0] // 4, SIZE[1] // 4
    assert o_seg[1].shape == (1, n, h, w) and o_seg[5].shape == (1, *SIZE) and o_seg[5].dtype == np.uint8
    assert o_seg[4].shape == (1, 19, h, w) and o_seg[6].dtype == np.float32
    assert o_seg[3].shape[0] == 1 and o_seg[3].shape[2:] == (h, w)  # motion: stride 2 on the half-size pair
    for i in (1, 2, 3):
        assert np.abs(o_seg[i] - t_seg[i]).max() <= 1e-3
    assert (o_seg[5] == t_seg[5]).mean() >= 0.999

    q, m, c, motion = (torch.from_numpy(a) for a in o_seg[:4])
    with torch.no_grad():
        t_flow = [t.numpy() for t in FlowGraph(model)(motion, image, q, m, c)]
    o_flow = flow.run(None, {"key_motion": o_seg[3], "image": image.numpy(), "key_queries": o_seg[0],
                             "key_mask_logits": o_seg[1], "key_class_logits": o_seg[2]})
    assert o_flow[0].shape == (1, n, h, w) and o_flow[2].shape == (1, *SIZE)
    assert np.abs(o_flow[0] - t_flow[0]).max() <= 1e-3
    assert (o_flow[2] == t_flow[2]).mean() >= 0.999
    assert np.allclose(o_flow[1].sum(axis=1), 1.0, atol=1e-4)  # probs is a class distribution


@pytest.mark.slow
def test_export_command(tmp_path, model_dir):
    from mpvss_ros.cli import main

    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(model_dir), "--out", str(out), "--no-weights", "--no-verify"]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["weights"] is None and not (out / "weights.safetensors").exists()
    assert (out / "segmentor.onnx").is_file() and (out / "flow.onnx").is_file()
    # bad input: one-line error, non-zero status
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["export", "--checkpoint", str(model_dir), "--out", str(out), "--size", "60x128"]) == 2
