"""ONNX Runtime sessions for the runners: providers with their options, session options, and a
graph's signature as a session would report it.

Providers: TensorRT (fp16, engine + timing cache in a directory: building an engine takes
minutes), CUDA, CPU; CPU is always appended as the fallback for nodes the others refuse.
The in-memory variants of the graphs that the runners load are in `runtime.graph_variants`.
"""
from __future__ import annotations

import os
from pathlib import Path

AUTO_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


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
