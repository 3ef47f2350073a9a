"""Runners: execute a model directory's key-frame and non-key-frame graphs on one image at a time.

`OnnxRunner` uses ONNX Runtime (TensorRT -> CUDA -> CPU among the available providers);
`TorchRunner` runs the same two graphs in torch from the directory's safetensors weights (or an
MPVSS training checkpoint). Both take `(H, W, 3) uint8 RGB` images and return `FrameOutput`s at the
model input size. Full-resolution labels and confidence come from `runtime.postprocess` on the
host when the graphs run on the CPU (the graphs' own dense tail costs as much as propagation),
from the graphs themselves on a GPU. With IO binding (default on a GPU) the key frame's queries,
mask logits, class logits and motion features stay on the device between frames (`KeyState.device`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpvss_ros.runtime.model_checks import check_onnx_signatures, member_path, read_model_json
from mpvss_ros.runtime.graph_variants import (HALF_IMAGE, IMAGE, SCORES, host_half_image_graph,
                                              host_postprocess_graph, int32_index_graph)
from mpvss_ros.runtime.ort_session import (AUTO_PROVIDERS, GraphSignature, device_type, provider_options,
                                           resolve_providers, session_options)
from mpvss_ros.runtime.postprocess import UpsampledScores
from mpvss_ros.runtime.preprocess import half_image

__all__ = ["AUTO_PROVIDERS", "FrameOutput", "KeyState", "OnnxRunner", "TorchRunner", "create_runner",
           "read_model_json", "resolve_providers"]
KEY_OUTPUTS = ("queries", "mask_logits", "class_logits", "motion")


@dataclass
class KeyState:
    """What a key frame leaves for propagation (all batch 1, float32, numpy on the host).

    `device` holds the same tensors as ORT values on the inference device when the runner uses
    IO binding (keys as the fields); propagation reads those.
    """
    queries: np.ndarray  # (1,N,C)
    mask_logits: np.ndarray  # (1,N,h,w)
    class_logits: np.ndarray  # (1,N,K+1)
    motion: np.ndarray  # (1,C,h',w') the key image's share of the motion encoder's first conv
    device: dict | None = field(default=None, repr=False)


class FrameOutput:
    """One frame's outputs at the model input size.

    labels (H,W) uint8 train ids; probs (K,h,w) float32 class distribution per mask-grid pixel;
    mask_logits (N,h,w) float32; confidence (H,W) float32, the winning class's share (0..1),
    given as an array or as a zero-argument function evaluated on first read (host
    post-processing computes it only for callers that read it).
    """

    __slots__ = ("labels", "probs", "mask_logits", "_confidence")

    def __init__(self, labels: np.ndarray, confidence, probs: np.ndarray, mask_logits: np.ndarray):
        self.labels, self.probs, self.mask_logits = labels, probs, mask_logits
        self._confidence = confidence

    @property
    def confidence(self) -> np.ndarray:
        if callable(self._confidence):
            self._confidence = self._confidence()
        return self._confidence


class _RunnerBase:
    """Subclasses implement `_run_segmentor(x)` and `_run_flow(key, x)` returning {output name: array}
    (host arrays; the segmentor's dict may carry "device" values for KeyState)."""

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
        import cv2

        h, w = self.input_size
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.empty((1, 3, h, w), np.float32)
        for c, plane in enumerate(cv2.split(image)):  # contiguous planes: ~2x faster than a strided cast
            out[0, c] = plane
        return out

    def _frame_output(self, out: dict) -> FrameOutput:
        if SCORES in out:
            up = UpsampledScores(out[SCORES][0], self.input_size)
            return FrameOutput(up.labels, lambda: up.confidence, out["probs"][0], out["mask_logits"][0])
        return FrameOutput(out["labels"][0], out["confidence"][0], out["probs"][0], out["mask_logits"][0])

    def key_frame(self, image: np.ndarray) -> tuple[KeyState, FrameOutput]:
        x = self.preprocess(image)
        out = self._run_segmentor(x)
        state = KeyState(queries=out["queries"], mask_logits=out["mask_logits"],
                         class_logits=out["class_logits"], motion=out["motion"], device=out.get("device"))
        return state, self._frame_output(out)

    def propagate(self, key: KeyState, image: np.ndarray) -> FrameOutput:
        return self._frame_output(self._run_flow(key, self.preprocess(image)))

    def run_graphs(self, key: KeyState | None, x: np.ndarray) -> dict:
        """The segmentor graph (key None) or the flow graph alone on a preprocessed input, with no
        pre- or post-processing: what the inference engine itself spends, for benchmarks."""
        return self._run_segmentor(x) if key is None else self._run_flow(key, x)


class OnnxRunner(_RunnerBase):
    """ONNX Runtime runner.

    providers: "auto" (TensorRT -> CUDA -> CPU among the available ones) or a list/comma string.
    host_postprocess: None = on when the first provider is the CPU (labels/confidence computed by
    `runtime.postprocess` from the graphs' scores), False = the graphs' own outputs.
    io_binding: None = on for TensorRT/CUDA (key state stays on the GPU); True on the CPU binds
    CPU values (same code path, used by the tests).
    host_half_image: None = on for the CPU (the graphs' x0.5 shrink of the image done by OpenCV,
    `graph_variants.host_half_image_graph`), False = in the graphs.
    """

    backend = "onnxruntime"

    def __init__(self, model_dir: str | Path, providers="auto", threads: int = 0,
                 host_postprocess: bool | None = None, io_binding: bool | None = None,
                 host_half_image: bool | None = None, device_id: int = 0, trt_fp16: bool = True,
                 trt_cache_dir: str | Path | None = None):
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self._init_info(read_model_json(self.model_dir))
        requested = resolve_providers(providers)
        self.device_type = device_type(requested)
        self.device_id = int(device_id)
        self.host_postprocess = self.device_type == "cpu" if host_postprocess is None else bool(host_postprocess)
        self.io_binding = self.device_type != "cpu" if io_binding is None else bool(io_binding)
        self.host_half_image = self.device_type == "cpu" if host_half_image is None else bool(host_half_image)
        options = session_options(threads)
        provider_args = provider_options(requested, device_id=device_id, trt_fp16=trt_fp16,
                                         trt_cache_dir=trt_cache_dir)
        graphs = self.info["graphs"]
        self._seg, seg_sig = self._session(ort, graphs["segmentor"], "segmentor", options, provider_args)
        self._flow, flow_sig = self._session(ort, graphs["flow"], "flow", options, provider_args)
        check_onnx_signatures(self.info, seg_sig, flow_sig, (graphs["segmentor"], graphs["flow"]))
        self.providers = self._seg.get_providers()
        if device_type(self.providers) != self.device_type:  # e.g. CUDA asked for, its libraries missing
            self.device_type = device_type(self.providers)
            if io_binding is None:
                self.io_binding = self.device_type != "cpu"
        self._seg_outputs = [o.name for o in self._seg.get_outputs()]
        self._flow_outputs = [o.name for o in self._flow.get_outputs()]
        self._seg_images = [i.name for i in self._seg.get_inputs() if i.name in (IMAGE, HALF_IMAGE)]
        self._flow_images = [i.name for i in self._flow.get_inputs() if i.name in (IMAGE, HALF_IMAGE)]
        self._ort = ort

    def _session(self, ort, name: str, what: str, options, providers):
        """(session, signature of the file on disk); the session may run the host-post-processing variant."""
        import onnx

        path = member_path(self.model_dir, name, f"{what} graph")
        try:
            model = onnx.load_model(str(path), load_external_data=False)
            signature = GraphSignature(model)
            variant = (host_postprocess_graph(model) if self.host_postprocess else None) or model
            variant = (host_half_image_graph(variant) if self.host_half_image else None) or variant
            variant = int32_index_graph(variant) or variant  # same values, half the index bytes
            source = variant.SerializeToString() if variant is not model else str(path)
            return ort.InferenceSession(source, options, providers=providers), signature
        except Exception as exc:  # ORT's and protobuf's own types: a corrupt file must say so in one line
            reason = " ".join(str(exc).split())
            raise ValueError(f"cannot load {what} graph {path}: {reason}") from None

    @staticmethod
    def _image_feeds(names: list[str], x: np.ndarray) -> dict:
        """The image inputs a session takes: `image` and/or its host-made half (`image_half`)."""
        return {n: (x if n == IMAGE else half_image(x)) for n in names}

    def _run_segmentor(self, x):
        feeds = self._image_feeds(self._seg_images, x)
        if not self.io_binding:
            return dict(zip(self._seg_outputs, self._seg.run(None, feeds)))
        binding = self._seg.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, self._device_value(value))
        for name in self._seg_outputs:
            if name in KEY_OUTPUTS:
                binding.bind_output(name, self.device_type, self.device_id)
            else:  # host memory is device 0 whatever GPU runs the graph
                binding.bind_output(name, "cpu")
        binding.synchronize_inputs()
        self._seg.run_with_iobinding(binding)
        values = dict(zip(self._seg_outputs, binding.get_outputs()))
        out = {n: v.numpy() for n, v in values.items()}  # device outputs: one copy each, for the host fields
        out["device"] = {n: values[n] for n in KEY_OUTPUTS}
        return out

    def _run_flow(self, key: KeyState, x):
        images = self._image_feeds(self._flow_images, x)
        if not self.io_binding or key.device is None:
            feeds = {"key_" + n: getattr(key, n) for n in KEY_OUTPUTS}
            return dict(zip(self._flow_outputs, self._flow.run(None, {**feeds, **images})))
        binding = self._flow.io_binding()
        for name in KEY_OUTPUTS:
            binding.bind_ortvalue_input("key_" + name, key.device[name])
        for name, value in images.items():
            binding.bind_ortvalue_input(name, self._device_value(value))
        for name in self._flow_outputs:
            binding.bind_output(name, "cpu")
        binding.synchronize_inputs()
        self._flow.run_with_iobinding(binding)
        return dict(zip(self._flow_outputs, binding.copy_outputs_to_cpu()))

    def _device_value(self, array: np.ndarray):
        return self._ort.OrtValue.ortvalue_from_numpy(array, self.device_type, self.device_id)


class TorchRunner(_RunnerBase):
    """Runs the torch graphs from a model directory with weights, or from an MPVSS checkpoint.

    A transformers Mask2Former directory runs too, at `image_size` (H, W), as a key-frame
    segmentor alone: per-frame, copy and optical flow, measured before any query-flow training;
    `propagate` then refuses (`has_query_flow` is False).
    """

    backend = "torch"

    def __init__(self, model_dir_or_checkpoint: str | Path, device: str = "cpu",
                 image_size: tuple[int, int] | None = None):
        import torch

        from mpvss_ros.model.config import MPVSSConfig, is_mask2former_dir
        from mpvss_ros.model.graphs import FLOW_OUTPUTS, SEGMENTOR_OUTPUTS, FlowGraph, SegmentorGraph
        from mpvss_ros.model.mpvss import MPVSS

        path = Path(model_dir_or_checkpoint)
        self.has_query_flow = True
        self._source = path
        if is_mask2former_dir(path):
            if image_size is None:
                raise ValueError(f"{path} is a transformers Mask2Former directory: give the input size to run it at")
            torch.manual_seed(0)  # the unused query-flow module's weights: the same every run
            model = MPVSS(MPVSSConfig(image_size=tuple(int(v) for v in image_size), segmentor_path=str(path)))
            info = self._info_from_model(model)
            self.has_query_flow = False
        elif (path / "model.json").is_file():
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
        # labels/confidence from runtime.postprocess, as the ONNX runner does on the CPU
        self._seg = SegmentorGraph(self.model, full_resolution=False).eval()
        self._flow = FlowGraph(self.model, full_resolution=False).eval()
        self._seg_outputs = list(SEGMENTOR_OUTPUTS[:5]) + [SCORES]
        self._flow_outputs = list(FLOW_OUTPUTS[:2]) + [SCORES]
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
        return dict(zip(self._seg_outputs, self._run(self._seg, x)))

    def _run_flow(self, key: KeyState, x):
        if not self.has_query_flow:
            raise ValueError(f"{self._source} is a Mask2Former segmentor without a query-flow module: train one "
                             "on it with `mpvss train flow --segmentor DIR`, then `mpvss export`")
        return dict(zip(self._flow_outputs,
                        self._run(self._flow, key.motion, x, key.queries, key.mask_logits, key.class_logits)))


def create_runner(path: str | Path, backend: str = "auto", providers="auto", threads: int = 0,
                  device: str = "cpu", image_size: tuple[int, int] | None = None, **onnx_options):
    """backend "auto": ONNX Runtime when the directory has model.json + graphs, else torch.

    image_size: the input size for a transformers Mask2Former directory (torch only; it has none).
    onnx_options go to OnnxRunner (host_postprocess, io_binding, device_id, trt_fp16, trt_cache_dir).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    from mpvss_ros.model.config import is_mask2former_dir

    if image_size is None and is_mask2former_dir(path):  # the node, bench: they run exported models
        raise ValueError(f"{path} is a transformers Mask2Former directory, not an exported model: train the "
                         "query-flow module on it (`mpvss train flow --segmentor DIR`), then `mpvss export`; "
                         "`mpvss evaluate --model DIR` scores it per frame as it is")
    if backend == "auto":
        backend = "onnx" if (path / "model.json").is_file() else "torch"
    if backend in ("onnx", "onnxruntime", "ort"):
        return OnnxRunner(path, providers=providers, threads=threads, **onnx_options)
    if backend == "torch":
        return TorchRunner(path, device=device, image_size=image_size)
    raise ValueError(f"unknown backend {backend!r} (auto, onnx, torch)")
