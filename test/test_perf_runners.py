"""The runner's fast paths agree with the plain ones: host post-processing vs the graphs' own
labels, IO binding (on the CPU device) vs plain runs, the flow graph's pair pre-processing vs
the model; provider options; key vs non-key micro-benchmarks (disabled in the suite)."""
import numpy as np
import pytest
import torch

from mpvss_ros.runtime.graph_variants import host_half_image_graph, host_postprocess_graph, int32_index_graph
from mpvss_ros.runtime.ort_session import GraphSignature, device_type, provider_options, resolve_providers
from mpvss_ros.runtime.runners import KeyState, OnnxRunner

SIZE = (64, 128)



@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, size=(SIZE[0] // 4, SIZE[1] // 4 + 4, 3), dtype=np.uint8)
    import cv2

    big = cv2.resize(base, (base.shape[1] * 4, base.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    return [np.ascontiguousarray(big[:, i:i + SIZE[1]]) for i in (0, 3, 6)]


def test_host_postprocessing_equals_graph_outputs(model_dir, frames):
    fast = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1)
    plain = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1, host_postprocess=False)
    assert fast.host_postprocess and not plain.host_postprocess
    assert [o.name for o in fast._seg.get_outputs()] == ["queries", "mask_logits", "class_logits", "motion",
                                                         "probs", "scores"]
    assert [o.name for o in fast._flow.get_outputs()] == ["mask_logits", "probs", "scores"]
    kf, of = fast.key_frame(frames[0])
    kp, op = plain.key_frame(frames[0])
    assert (of.labels == op.labels).mean() >= 0.999 and np.abs(of.confidence - op.confidence).max() < 1e-4
    assert np.array_equal(of.probs, op.probs) and np.array_equal(kf.queries, kp.queries)
    for frame in frames[1:]:
        pf, pp = fast.propagate(kf, frame), plain.propagate(kp, frame)
        assert (pf.labels == pp.labels).mean() >= 0.999
        assert np.abs(pf.confidence - pp.confidence).max() < 1e-4
        assert np.abs(pf.mask_logits - pp.mask_logits).max() < 1e-5


def test_io_binding_on_the_cpu_device(model_dir, frames):
    bound = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1, io_binding=True)
    plain = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1)
    assert bound.io_binding and bound.device_type == "cpu"
    kb, ob = bound.key_frame(frames[0])
    kp, op = plain.key_frame(frames[0])
    assert isinstance(kb, KeyState) and set(kb.device) == {"queries", "mask_logits", "class_logits", "motion"}
    assert kb.device["mask_logits"].shape() == list(kb.mask_logits.shape)
    assert np.array_equal(kb.device["queries"].numpy(), kb.queries)
    assert np.array_equal(ob.labels, op.labels) and np.allclose(ob.mask_logits, op.mask_logits, atol=1e-6)
    for frame in frames[1:]:
        pb, pp = bound.propagate(kb, frame), plain.propagate(kp, frame)
        assert np.array_equal(pb.labels, pp.labels) and np.allclose(pb.probs, pp.probs, atol=1e-6)
    # a key state without device values (e.g. made by another runner) still propagates
    host_only = KeyState(kb.queries, kb.mask_logits, kb.class_logits, kb.motion)
    assert np.array_equal(bound.propagate(host_only, frames[1]).labels, plain.propagate(kp, frames[1]).labels)


def test_host_half_image_equals_the_graphs_own_shrink(model_dir, frames):
    import onnx

    fast = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1)
    plain = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1, host_half_image=False)
    # the flow graph reads the image only through its shrink; the segmentor also normalises it
    assert [i.name for i in fast._flow.get_inputs()] == ["key_motion", "image_half", "key_queries",
                                                         "key_mask_logits", "key_class_logits"]
    assert [i.name for i in fast._seg.get_inputs()] == ["image", "image_half"]
    assert fast._flow.get_inputs()[1].shape == [1, 3, SIZE[0] // 2, SIZE[1] // 2]
    assert [i.name for i in plain._flow.get_inputs()] == ["key_motion", "image", "key_queries",
                                                          "key_mask_logits", "key_class_logits"]
    kf, of = fast.key_frame(frames[0])
    kp, op = plain.key_frame(frames[0])
    assert np.abs(kf.motion - kp.motion).max() < 1e-4 and np.array_equal(of.labels, op.labels)
    for frame in frames[1:]:
        pf, pp = fast.propagate(kf, frame), plain.propagate(kp, frame)
        assert np.abs(pf.mask_logits - pp.mask_logits).max() < 1e-4 and np.array_equal(pf.labels, pp.labels)
    model = onnx.load_model(str(model_dir / "flow.onnx"))
    halved = host_half_image_graph(model)
    assert not any(n.op_type == "Resize" and n.input[0] == "image" for n in halved.graph.node)
    assert host_half_image_graph(halved) is None  # nothing left to move
    # a shrink that is not the 2x2 block mean (anti-aliased here) stays in the graph
    resize = next(n for n in model.graph.node if n.op_type == "Resize" and n.input[0] == "image")
    resize.attribute.append(onnx.helper.make_attribute("antialias", 1))
    assert host_half_image_graph(model) is None


def test_int32_gather_indices_give_the_same_values(model_dir, frames):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    model = onnx.load_model(str(model_dir / "flow.onnx"))
    narrow = int32_index_graph(model)
    casts = [n for n in narrow.graph.node if n.op_type == "Cast"]
    assert casts and not any(a.i == TensorProto.INT64 for n in casts for a in n.attribute)
    assert sum(n.op_type == "GatherElements" for n in narrow.graph.node) == 4
    assert int32_index_graph(narrow) is None  # nothing left in int64
    runner = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1, host_postprocess=False,
                        host_half_image=False)
    key, _ = runner.key_frame(frames[0])
    feeds = {"key_" + n: getattr(key, n) for n in ("motion", "queries", "mask_logits", "class_logits")}
    feeds["image"] = runner.preprocess(frames[1])
    wide_out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    narrow_out = ort.InferenceSession(narrow.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(wide_out, narrow_out):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # an int64 index that something else also reads (here a graph output) keeps the graph as it is
    index = next(n for n in model.graph.node if n.op_type == "GatherElements").input[1]
    model.graph.output.append(onnx.helper.make_tensor_value_info(index, TensorProto.INT64, None))
    assert int32_index_graph(model) is None


def test_graph_variants_do_not_rely_on_node_names(model_dir, frames):
    """Node names are optional in ONNX: with all of them empty the variants still change only
    their own nodes, and give the graph's own values."""
    import onnx
    import onnxruntime as ort

    from mpvss_ros.runtime.preprocess import half_image

    model = onnx.load_model(str(model_dir / "flow.onnx"))
    for node in model.graph.node:
        node.name = ""
    variant = int32_index_graph(host_half_image_graph(host_postprocess_graph(model)))
    pruned = host_postprocess_graph(model)
    assert len(variant.graph.node) == len(pruned.graph.node) - 1  # only the image's shrink left
    runner = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1, host_postprocess=False,
                        host_half_image=False)
    key, _ = runner.key_frame(frames[0])
    x = runner.preprocess(frames[1])
    feeds = {"key_" + n: getattr(key, n) for n in ("motion", "queries", "mask_logits", "class_logits")}
    want = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {**feeds, "image": x})
    got = ort.InferenceSession(variant.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {**feeds, "image_half": half_image(x)})
    for a, b in zip(want, got):
        assert np.abs(a - b).max() < 1e-4


def _tiny_graph(nodes, inputs, outputs, initializers=(), extra_inputs=()):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
                              + list(extra_inputs),
                              [helper.make_tensor_value_info(n, t, None) for n, t in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_graph_variants_refuse_what_they_cannot_do_exactly():
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "scales")

    def halving(shape, mode, extra_inputs=()):
        resize = helper.make_node("Resize", ["image", "", "scales"], ["half"], mode="linear",
                                  coordinate_transformation_mode=mode)
        return _tiny_graph([resize, helper.make_node("Relu", ["half"], ["out"])], [("image", shape)],
                           [("out", TensorProto.FLOAT)], [scales], extra_inputs)

    assert host_half_image_graph(halving([1, 3, 8, 16], "half_pixel")) is not None
    assert host_half_image_graph(halving([1, 3, 8, 16], "pytorch_half_pixel")) is not None
    # pytorch_half_pixel samples coordinate 0 for an output length of 1: not the 2x2 mean
    assert host_half_image_graph(halving([1, 3, 2, 16], "pytorch_half_pixel")) is None
    assert host_half_image_graph(halving([1, 3, 8, 16], "align_corners")) is None
    # scales that a caller can override (an initializer listed as an input) are not a constant
    fed = helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4])
    assert host_half_image_graph(halving([1, 3, 8, 16], "half_pixel", [fed])) is None

    def index_chain(with_subgraph=False):
        nodes = [helper.make_node("Cast", ["where"], ["i"], to=TensorProto.INT64),
                 helper.make_node("Mul", ["i", "two"], ["i2"]),
                 helper.make_node("GatherElements", ["data", "i2"], ["out"], axis=0)]
        outputs = [("out", TensorProto.FLOAT)]
        if with_subgraph:  # an If branch reads the int64 index from the outer scope
            branch = helper.make_graph([helper.make_node("Add", ["i2", "two"], ["b"])], "branch", [],
                                       [helper.make_tensor_value_info("b", TensorProto.INT64, None)])
            nodes.append(helper.make_node("If", ["cond"], ["picked"], then_branch=branch, else_branch=branch))
            outputs.append(("picked", TensorProto.INT64))
        extra = [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])] if with_subgraph else []
        return _tiny_graph(nodes, [("where", [4]), ("data", [8])], outputs,
                           [numpy_helper.from_array(np.array(2, np.int64), "two")], extra)

    narrow = int32_index_graph(index_chain())
    assert narrow is not None and narrow.graph.node[0].attribute[0].i == TensorProto.INT32
    assert int32_index_graph(index_chain(with_subgraph=True)) is None
    import onnxruntime as ort

    feeds = {"where": np.array([3, 0, 1, 2], np.float32), "data": np.arange(8, dtype=np.float32) * 10}
    got = ort.InferenceSession(narrow.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert got[0].tolist() == [60, 0, 20, 40]


def test_provider_resolution_and_options(tmp_path):
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", available=gpu) == gpu
    assert resolve_providers("auto", available=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("CUDAExecutionProvider", available=gpu) == ["CUDAExecutionProvider",
                                                                         "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not available"):
        resolve_providers(["CUDAExecutionProvider"], available=["CPUExecutionProvider"])
    opts = provider_options(gpu, device_id=1, trt_fp16=True, trt_cache_dir=tmp_path / "trt")
    name, trt = opts[0]
    assert name == "TensorrtExecutionProvider" and trt["trt_fp16_enable"] is True and trt["device_id"] == 1
    assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert opts[1][0] == "CUDAExecutionProvider" and opts[1][1]["device_id"] == 1
    assert opts[2] == "CPUExecutionProvider"
    assert provider_options(gpu[:1], trt_fp16=False, trt_cache_dir=tmp_path)[0][1]["trt_fp16_enable"] is False
    assert device_type(gpu) == "cuda" and device_type(gpu[1:]) == "cuda" and device_type(gpu[2:]) == "cpu"


def test_unavailable_gpu_provider_is_a_clear_error(model_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(ValueError, match="CUDAExecutionProvider"):
        OnnxRunner(model_dir, providers=["CUDAExecutionProvider"])


def test_pruning_keeps_the_signature_and_needs_the_tail(model_dir):
    import onnx

    model = onnx.load_model(str(model_dir / "flow.onnx"))
    pruned = host_postprocess_graph(model)
    assert [o.name for o in pruned.graph.output] == ["mask_logits", "probs", "scores"]
    assert len(pruned.graph.node) < len(model.graph.node)
    assert not any(n.op_type == "ArgMax" for n in pruned.graph.node)
    sig = GraphSignature(model)  # the file's own signature, as checked against model.json
    assert [o.name for o in sig.get_outputs()] == ["mask_logits", "probs", "labels", "confidence"]
    assert sig.get_outputs()[2].shape == [1, *SIZE]
    assert host_postprocess_graph(pruned) is None  # no labels/confidence tail: nothing to cut


def test_flow_graph_with_the_key_frames_motion_features_equals_the_model():
    """The flow graph's split first conv (key share from the segmentor graph, scaled and
    normalised per image) computes what the trained model's stacked-pair encoder does."""
    from mpvss_ros.model.config import small_config
    from mpvss_ros.model.graphs import FlowGraph, SegmentorGraph
    from mpvss_ros.model.mpvss import MPVSS

    torch.manual_seed(0)
    model = MPVSS(small_config(SIZE)).eval()
    with torch.no_grad():  # a non-trivial pixel flow, so the check covers real warping
        for head in model.query_flow.encoder.predict:
            head.weight.normal_(0, 0.05)
    key = torch.rand(1, 3, *SIZE) * 255
    image = torch.roll(key, (2, 3), (2, 3))
    with torch.no_grad():
        q, m, c, motion = SegmentorGraph(model)(key)[:4]
        ref = model.propagate(key, image, q, m)
        ours = FlowGraph(model)(motion, image, q, m, c)[0]
    assert ref.flow.abs().max() > 0.1
    assert torch.allclose(ours, ref.mask_logits, atol=1e-4)


@pytest.mark.parametrize("which", ["key", "nonkey"])
def test_bench_key_vs_nonkey(benchmark, model_dir, frames, which):
    runner = OnnxRunner(model_dir, providers=["CPUExecutionProvider"], threads=1)
    key, _ = runner.key_frame(frames[0])
    fn = (lambda: runner.key_frame(frames[1])[1]) if which == "key" else (lambda: runner.propagate(key, frames[1]))
    out = benchmark(fn)
    assert out.labels.shape == SIZE
