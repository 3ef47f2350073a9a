"""Runners: execute a model directory's key-frame and non-key-frame graphs on one image at a time.

`OnnxRunner` uses ONNX Runtime (TensorRT -> CUDA -> CPU among the available providers);
`TorchRunner` runs the same two graphs in torch from the directory's safetensors weights (or an
MPVSS training checkpoint). Both take `(H, W, 3) uint8 RGB` images and return `FrameOutput`s at the
model input size; the key state is kept as numpy arrays on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpvss_ros.runtime.model_checks import check_onnx_signatures, member_path, read_model_json

AUTO_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass
class KeyState:
    """What a key frame leaves for propagation (all batch 1, float32)."""
    image: np.ndarray  # (1,3,H,W) RGB 0..255 as fed to the graphs
    queries: np.ndarray  # (1,N,C)
    mask_logits: np.ndarray  # (1,N,h,w)
    class_logits: np.ndarray  # (1,N,K+1)


@dataclass
class FrameOutput:
    labels: np.ndarray  # (H,W) uint8 train ids
    confidence: np.ndarray  # (H,W) float32, share of the winning class (0..1)
    probs: np.ndarray  # (K,h,w) float32 class distribution per mask-grid pixel
    mask_logits: np.ndarray  # (N,h,w) float32


class _RunnerBase:
    backend = ""
    providers: list[str] = []

    def _init_info(self, info: dict) -> None:
        self.info = info
        self.input_size = (int(info["input_size"][0]), int(info["input_size"][1]))
        self.class_names = list(info["class_names"])
        self.palette = [tuple(c) for c in info.get("palette", [])]
        self.default_interval = int(info.get("default_interval", 5))
        self.num_queries = int(info["num_queries"])
        self.gflops = (info.get("metrics") or {}).get("gflops")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 RGB -> (1,3,H,W) float32 at input_size (resized bilinearly if needed)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            desc = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {desc}")
        h, w = self.input_size
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)

    def key_frame(self, image: np.ndarray) -> tuple[KeyState, FrameOutput]:
        x = self.preprocess(image)
        queries, masks, classes, probs, labels, confidence = self._run_segmentor(x)
        state = KeyState(image=x, queries=queries, mask_logits=masks, class_logits=classes)
        return state, FrameOutput(labels[0], confidence[0], probs[0], masks[0])

    def propagate(self, key: KeyState, image: np.ndarray) -> FrameOutput:
        x = self.preprocess(image)
        masks, probs, labels, confidence = self._run_flow(key, x)
        return FrameOutput(labels[0], confidence[0], probs[0], masks[0])


def resolve_providers(providers="auto") -> list[str]:
    """"auto" -> TensorRT, CUDA, CPU among the available ones; a list is checked against them."""
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


class OnnxRunner(_RunnerBase):
    backend = "onnxruntime"

    def __init__(self, model_dir: str | Path, providers="auto", threads: int = 0):
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self._init_info(read_model_json(self.model_dir))
        requested = resolve_providers(providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads and threads > 0:
            options.intra_op_num_threads = int(threads)
        provider_args = []
        for p in requested:
            if p == "TensorrtExecutionProvider":  # cache engines: building one takes minutes
                cache = Path.home() / ".cache" / "mpvss_ros" / "trt"
                cache.mkdir(parents=True, exist_ok=True)
                provider_args.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}))
            else:
                provider_args.append(p)
        graphs = self.info["graphs"]
        self._seg = self._session(ort, graphs["segmentor"], "segmentor", options, provider_args)
        self._flow = self._session(ort, graphs["flow"], "flow", options, provider_args)
        check_onnx_signatures(self.info, self._seg, self._flow, (graphs["segmentor"], graphs["flow"]))
        self.providers = self._seg.get_providers()

    def _session(self, ort, name: str, what: str, options, providers):
        path = member_path(self.model_dir, name, f"{what} graph")
        try:
            return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT's own types; a corrupt or truncated file must say so in one line
            reason = " ".join(str(exc).split())
            raise ValueError(f"cannot load {what} graph {path}: {reason}") from None

    def _run_segmentor(self, x):
        return self._seg.run(None, {"image": x})

    def _run_flow(self, key: KeyState, x):
        return self._flow.run(None, {"key_image": key.image, "image": x, "key_queries": key.queries,
                                     "key_mask_logits": key.mask_logits, "key_class_logits": key.class_logits})


class TorchRunner(_RunnerBase):
    """Runs the torch graphs from a model directory with weights, or from an MPVSS checkpoint."""

    backend = "torch"

    def __init__(self, model_dir_or_checkpoint: str | Path, device: str = "cpu"):
        import torch

        from mpvss_ros.model.graphs import FlowGraph, SegmentorGraph
        from mpvss_ros.model.mpvss import MPVSS

        path = Path(model_dir_or_checkpoint)
        if (path / "model.json").is_file():
            info = read_model_json(path)
            if not info.get("weights"):
                raise ValueError(f"model directory {path} has no torch weights (exported with --no-weights); "
                                 "use the ONNX backend")
            weights = member_path(path, info["weights"], "weights")
            model = MPVSS.load(path.resolve(), weights_name=str(weights.relative_to(path.resolve())))
        else:
            model = MPVSS.load(path)
            info = self._info_from_model(model)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._init_info(info)
        self.providers = [str(self.device)]
        self._seg = SegmentorGraph(self.model).eval()
        self._flow = FlowGraph(self.model).eval()
        self._torch = torch

    @staticmethod
    def _info_from_model(model) -> dict:
        from mpvss_ros.model.config import cityscapes_train_classes

        _, colors = cityscapes_train_classes()
        return {"input_size": list(model.config.image_size), "class_names": model.class_names,
                "palette": [list(c) for c in colors], "default_interval": model.config.default_interval,
                "num_queries": model.segmentor.num_queries, "metrics": {}}

    def _run(self, module, *arrays):
        t = self._torch
        with t.inference_mode():
            outs = module(*(t.from_numpy(a).to(self.device) for a in arrays))
        return [o.cpu().numpy() for o in outs]

    def _run_segmentor(self, x):
        return self._run(self._seg, x)

    def _run_flow(self, key: KeyState, x):
        return self._run(self._flow, key.image, x, key.queries, key.mask_logits, key.class_logits)


def create_runner(path: str | Path, backend: str = "auto", providers="auto", threads: int = 0,
                  device: str = "cpu"):
    """backend "auto": ONNX Runtime when the directory has model.json + graphs, else torch."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    if backend == "auto":
        backend = "onnx" if (path / "model.json").is_file() else "torch"
    if backend in ("onnx", "onnxruntime", "ort"):
        return OnnxRunner(path, providers=providers, threads=threads)
    if backend == "torch":
        return TorchRunner(path, device=device)
    raise ValueError(f"unknown backend {backend!r} (auto, onnx, torch)")
