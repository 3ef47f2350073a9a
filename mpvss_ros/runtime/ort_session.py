"""ONNX Runtime sessions for the runners: providers with their options, session options, and the
host-post-processing variant of a graph.

Providers: TensorRT (fp16, engine + timing cache in a directory: building an engine takes
minutes), CUDA, CPU; CPU is always appended as the fallback for nodes the others refuse.

Host post-processing: the exported graphs end in full-resolution `labels` and `confidence`
(bilinear up-sampling of K class planes + arg-max), which on a CPU cost as much as the whole
propagation network. `host_postprocess_graph` cuts that tail off in memory and exposes the
fused `scores` (1,K,h,w) instead; `runtime.postprocess` then gives the same labels for a
fraction of the cost. The files on disk, and their signature, stay as exported.

Host half image: both graphs shrink `image` by exactly 2 (bilinear, half-pixel centres: the mean
of each 2x2 block) for the motion encoder; ORT's Resize spends 0.1-0.3 ms of a 4.4 ms non-key
frame on it, OpenCV's area filter 0.03 ms. `host_half_image_graph` makes that shrink an input.
"""
from __future__ import annotations

import os
from pathlib import Path

AUTO_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
FULL_RESOLUTION_OUTPUTS = ("labels", "confidence")
SCORES = "scores"
IMAGE = "image"
HALF_IMAGE = "image_half"


def default_trt_cache_dir() -> Path:
    return Path(os.environ.get("MPVSS_TRT_CACHE", Path.home() / ".cache" / "mpvss_ros" / "trt"))


def resolve_providers(providers="auto", available: list[str] | None = None) -> list[str]:
    """"auto" -> TensorRT, CUDA, CPU among the available ones; a list is checked against them."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if providers == "auto" or providers is None:
        chosen = [p for p in AUTO_PROVIDERS if p in available]
    else:
        if isinstance(providers, str):
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"ONNX Runtime providers not available here: {missing} (available: {available})")
        chosen = list(providers)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")  # always a fallback for unsupported nodes
    return chosen


def provider_options(providers: list[str], device_id: int = 0, trt_fp16: bool = True,
                     trt_cache_dir: str | Path | None = None) -> list:
    """ORT `providers=` argument: (name, options) for TensorRT and CUDA, bare names otherwise."""
    out = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            cache = Path(trt_cache_dir) if trt_cache_dir else default_trt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            out.append((p, {"device_id": device_id, "trt_fp16_enable": bool(trt_fp16),
                            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                            "trt_max_workspace_size": 2 << 30}))
        elif p == "CUDAExecutionProvider":
            # the fastest convolution algorithms are searched once per shape (fixed-shape graphs)
            out.append((p, {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE",
                            "do_copy_in_default_stream": True}))
        else:
            out.append(p)
    return out


def session_options(threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one image at a time: no graph parallelism
    options.log_severity_level = 3
    if threads and threads > 0:
        options.intra_op_num_threads = int(threads)
    return options


def device_type(providers: list[str]) -> str:
    """Where a session with these providers keeps its tensors: "cuda" for TensorRT/CUDA, else "cpu"."""
    return "cuda" if providers and providers[0] in GPU_PROVIDERS else "cpu"


class GraphSignature:
    """get_inputs()/get_outputs() of a ModelProto, like an InferenceSession's (name, shape)."""

    class _Arg:
        def __init__(self, value_info):
            self.name = value_info.name
            dims = value_info.type.tensor_type.shape.dim
            self.shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]

    def __init__(self, model):
        self._inputs = [self._Arg(v) for v in model.graph.input]
        self._outputs = [self._Arg(v) for v in model.graph.output]

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs


def host_postprocess_graph(model):
    """A copy of an exported graph with `scores` in place of `labels`/`confidence`, or None if the
    graph does not have that tail (then the runner uses the graph's own outputs).

    `scores` is found as the numerator of the node that makes `probs` (probs = scores / total).
    """
    import onnx

    g = model.graph
    names = [o.name for o in g.output]
    if not set(FULL_RESOLUTION_OUTPUTS) <= set(names) or "probs" not in names:
        return None
    producer = {o: n for n in g.node for o in n.output}
    div = producer.get("probs")
    if div is None or div.op_type != "Div":
        return None
    scores = div.input[0]
    probs_type = next(o for o in g.output if o.name == "probs").type
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    pg = pruned.graph
    keep_outputs = [o for o in pg.output if o.name not in FULL_RESOLUTION_OUTPUTS]
    del pg.output[:]
    pg.output.extend(keep_outputs)
    scores_info = onnx.ValueInfoProto(name=SCORES)
    scores_info.type.CopyFrom(probs_type)
    pg.output.append(scores_info)
    # `scores` gets its public name through an Identity; then drop every node no output needs.
    pg.node.append(onnx.helper.make_node("Identity", [scores], [SCORES], name="host_postprocess_scores"))
    needed = {o.name for o in pg.output}
    kept = []
    for node in reversed(list(pg.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraphs (If/Loop) read outer names
                for sub in list(attr.g.node if attr.HasField("g") else []) + \
                        [n for gr in attr.graphs for n in gr.node]:
                    needed.update(i for i in sub.input if i)
    del pg.node[:]
    pg.node.extend(reversed(kept))
    used = needed
    live_init = [t for t in pg.initializer if t.name in used]
    del pg.initializer[:]
    pg.initializer.extend(live_init)
    live_vi = [v for v in pg.value_info if v.name in used]
    del pg.value_info[:]
    pg.value_info.extend(live_vi)
    return pruned


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _is_exact_halving(node, graph, constants: dict) -> bool:
    """A Resize of `image` to half its height and width that equals the 2x2 block mean."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("mode", b"nearest") != b"linear" or attrs.get("antialias", 0) \
            or attrs.get("coordinate_transformation_mode", b"half_pixel") not in (b"half_pixel", b"pytorch_half_pixel") \
            or attrs.get("axes") or attrs.get("keep_aspect_ratio_policy", b"stretch") != b"stretch":
        return False
    image = next((i for i in graph.input if i.name == IMAGE), None)
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim] if image is not None else []
    if len(dims) != 4 or not all(dims) or dims[2] % 2 or dims[3] % 2:
        return False
    half = [dims[0], dims[1], dims[2] // 2, dims[3] // 2]
    inputs = list(node.input) + [""] * (4 - len(node.input))
    if inputs[1]:  # roi: only used by tf_crop_and_resize, but refuse anything unusual
        return False
    if inputs[3]:
        sizes = constants.get(inputs[3])
        return sizes is not None and [int(v) for v in sizes] == half
    scales = constants.get(inputs[2])
    return scales is not None and [float(v) for v in scales] == [1.0, 1.0, 0.5, 0.5]


def host_half_image_graph(model):
    """A copy of a graph in which the exact x0.5 shrink of `image` is the input `image_half`
    (1,3,H/2,W/2) that the runner computes on the host, or None if the graph has no such shrink.
    `image` stays an input only if something else reads it."""
    import onnx

    g = model.graph
    constants = _constant_values(g)
    halvings = [n for n in g.node if n.op_type == "Resize" and n.input and n.input[0] == IMAGE
                and _is_exact_halving(n, g, constants)]
    if not halvings or any(i.name == HALF_IMAGE for i in g.input):
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    replaced = {n.output[0] for n in halvings}
    halving_names = {n.name for n in halvings}
    kept = [n for n in og.node if n.name not in halving_names]
    for node in kept:
        for k, name in enumerate(node.input):
            if name in replaced:
                node.input[k] = HALF_IMAGE
    for o in og.output:
        if o.name in replaced:  # a graph output cannot be renamed away; keep the graph as it is
            return None
    del og.node[:]
    og.node.extend(kept)
    live_vi = [v for v in og.value_info if v.name not in replaced]
    del og.value_info[:]
    og.value_info.extend(live_vi)
    image = next(i for i in og.input if i.name == IMAGE)
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    half = onnx.helper.make_tensor_value_info(HALF_IMAGE, image.type.tensor_type.elem_type,
                                              [dims[0], dims[1], dims[2] // 2, dims[3] // 2])
    still_read = any(IMAGE in n.input for n in og.node)
    inputs = []
    for i in og.input:
        if i.name == IMAGE:
            inputs += [i, half] if still_read else [half]
        else:
            inputs.append(i)
    del og.input[:]
    og.input.extend(inputs)
    return out
