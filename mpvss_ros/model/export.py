"""Export an MPVSS model to a model directory: segmentor.onnx, flow.onnx, model.json and,
optionally, weights.safetensors + config.json for the torch runner.

Graphs are fixed-shape, batch 1, exported with torch's dynamo exporter (the legacy exporter
emits a GridSample with a double grid for Mask2Former's pixel decoder, which ORT rejects).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .config import MPVSSConfig, cityscapes_train_classes, small_config
from .graphs import (FLOW_INPUTS, FLOW_OUTPUTS, FORMAT_VERSION, SEGMENTOR_INPUTS, SEGMENTOR_OUTPUTS, FlowGraph,
                     SegmentorGraph)
from .mpvss import CONFIG_NAME, MPVSS

MODEL_JSON = "model.json"
SEGMENTOR_ONNX = "segmentor.onnx"
FLOW_ONNX = "flow.onnx"
WEIGHTS = "weights.safetensors"


def _example_inputs(model: MPVSS, size: tuple[int, int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    key = torch.rand(1, 3, *size, generator=g) * 255
    image = torch.roll(key, shifts=(2, 3), dims=(2, 3))
    with torch.no_grad():
        queries, masks, classes, motion = SegmentorGraph(model)(key)[:4]
    return key, image, queries, masks, classes, motion


def _export(module, args, path: Path, input_names, output_names) -> None:
    import warnings

    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                    output_names=output_names, optimize=True, verbose=False)
    strip_node_metadata(program.model)
    program.save(str(path), external_data=False)


def strip_node_metadata(model) -> None:
    """Drop the exporter's per-node debug metadata (Python stack traces and FX node text, with
    the exporting machine's file paths) from an onnx_ir model.

    It is a quarter of the segmentor file and nothing reads it; the computation is untouched.
    """
    for graph in (model.graph, *model.functions.values()):
        for node in graph.all_nodes():  # subgraphs included
            node.metadata_props.clear()


def export_model(model: MPVSS, out_dir: str | Path, size: tuple[int, int] | None = None,
                 write_weights: bool = True, provenance: dict | None = None,
                 metrics: dict | None = None, verify: bool = True) -> dict:
    """Write the model directory; returns model.json's content (with "verification" if verify)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    h, w = tuple(size or model.config.image_size)
    if h % 32 or w % 32:
        raise ValueError(f"input size must be a multiple of 32 in both axes, got {h}x{w}")
    key, image, queries, masks, classes, motion = _example_inputs(model, (h, w))
    _export(SegmentorGraph(model), (key,), out / SEGMENTOR_ONNX, SEGMENTOR_INPUTS, SEGMENTOR_OUTPUTS)
    _export(FlowGraph(model), (motion, image, queries, masks, classes), out / FLOW_ONNX, FLOW_INPUTS, FLOW_OUTPUTS)

    # the full configuration, also in model.json: `mpvss recover-weights` rebuilds the torch
    # model from the graphs with it when no weights are written
    cfg = model.standalone_config()
    cfg.image_size = (h, w)
    weights = None
    if write_weights:
        from safetensors.torch import save_model

        cfg.save(out / CONFIG_NAME)
        save_model(model, str(out / WEIGHTS))
        weights = WEIGHTS
    names = model.class_names
    _, colors = cityscapes_train_classes()
    palette = [list(c) for c in colors] if len(names) == len(colors) else \
        [list(map(int, np.random.default_rng(i).integers(0, 256, 3))) for i in range(len(names))]
    info = {
        "format": "mpvss-model",
        "version": FORMAT_VERSION,
        "input_size": [h, w],
        "num_queries": model.segmentor.num_queries,
        "hidden_dim": model.segmentor.hidden_dim,
        "num_classes": model.config.num_classes,
        "class_names": names,
        "palette": palette,
        "default_interval": model.config.default_interval,
        "graphs": {"segmentor": SEGMENTOR_ONNX, "flow": FLOW_ONNX},
        "weights": weights,
        "provenance": {"exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "torch": torch.__version__, **(provenance or {})},
        "metrics": dict(metrics or {}),
        "config": cfg.to_dict(),
    }
    from .flops import model_gflops

    # GMACs ("GFLOPs" as papers quote them) of each graph, for reports' gflops_per_frame
    info["metrics"]["gflops"] = {k: round(v, 4) for k, v in model_gflops(model, (h, w)).items()}
    if verify:
        info["metrics"]["export_check"] = verify_export(model, out, (h, w))
    (out / MODEL_JSON).write_text(json.dumps(info, indent=2))
    return info


def verify_export(model: MPVSS, out_dir: str | Path, size: tuple[int, int], seed: int = 1) -> dict:
    """Run both graphs in ONNX Runtime (CPU) and torch on the same inputs; report the differences."""
    import onnxruntime as ort

    out = Path(out_dir)
    key, image, queries, masks, classes, motion = _example_inputs(model, size, seed)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    seg = ort.InferenceSession(str(out / SEGMENTOR_ONNX), so, providers=["CPUExecutionProvider"])
    flow = ort.InferenceSession(str(out / FLOW_ONNX), so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        t_seg = [t.numpy() for t in SegmentorGraph(model)(key)]
        t_flow = [t.numpy() for t in FlowGraph(model)(motion, image, queries, masks, classes)]
    o_seg = seg.run(None, {"image": key.numpy()})
    o_flow = flow.run(None, {"key_motion": motion.numpy(), "image": image.numpy(), "key_queries": queries.numpy(),
                             "key_mask_logits": masks.numpy(), "key_class_logits": classes.numpy()})
    labels = SEGMENTOR_OUTPUTS.index("labels")
    return {
        "segmentor_mask_max_abs_diff": float(np.abs(o_seg[1] - t_seg[1]).max()),
        "segmentor_label_agreement": float((o_seg[labels] == t_seg[labels]).mean()),
        "flow_mask_max_abs_diff": float(np.abs(o_flow[0] - t_flow[0]).max()),
        "flow_label_agreement": float((o_flow[2] == t_flow[2]).mean()),
    }


def export_random_model(out_dir: str | Path, size: tuple[int, int] = (64, 128), tiny: bool = True,
                        seed: int = 0, write_weights: bool = True) -> Path:
    """A randomly initialised model directory (for tests): the small test config if `tiny`,
    else the default 1.77 M segmentor + flow module."""
    torch.manual_seed(seed)
    cfg = small_config(tuple(size)) if tiny else MPVSSConfig(image_size=tuple(size))
    model = MPVSS(cfg)
    export_model(model, out_dir, size=tuple(size), write_weights=write_weights,
                 provenance={"source": "random initialisation", "seed": seed, "tiny": tiny}, verify=False)
    return Path(out_dir)
