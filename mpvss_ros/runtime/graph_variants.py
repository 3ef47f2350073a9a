"""In-memory variants of the exported graphs, made when a runner loads them. The files on disk,
and their signature as checked against model.json, stay as exported; each variant gives the same
values as the graph it comes from.

Host post-processing (`host_postprocess_graph`): the exported graphs end in full-resolution
`labels` and `confidence` (bilinear up-sampling of K class planes + arg-max), which on a CPU cost
as much as the whole propagation network. The variant cuts that tail off and exposes the fused
`scores` (1,K,h,w) instead; `runtime.postprocess` then gives the same labels for a fraction of
the cost.

Host half image (`host_half_image_graph`): both graphs shrink `image` by exactly 2 (bilinear,
half-pixel centres: the mean of each 2x2 block) for the motion encoder; ORT's Resize spends
0.1-0.3 ms of a 4.4 ms non-key frame on it, OpenCV's area filter 0.03 ms. The variant makes that
shrink an input.

32-bit gather indices (`int32_index_graph`): torch's `gather` takes int64 indices only, so the
exported warp computes its four flat indices per mask pixel in int64; in int32 the same
arithmetic moves half the bytes (the indices are below the mask grid's size).
"""
from __future__ import annotations

FULL_RESOLUTION_OUTPUTS = ("labels", "confidence")
SCORES = "scores"
IMAGE = "image"
HALF_IMAGE = "image_half"


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


def _has_subgraphs(graph) -> bool:
    return any(a.HasField("g") or len(a.graphs) for n in graph.node for a in n.attribute)


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    fed = {v.name for v in graph.input}  # an initializer listed as an input can be overridden
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name not in fed}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _is_exact_halving(node, graph, constants: dict) -> bool:
    """A Resize of `image` to half its height and width that equals the 2x2 block mean."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    mode = attrs.get("coordinate_transformation_mode", b"half_pixel")
    if attrs.get("mode", b"nearest") != b"linear" or attrs.get("antialias", 0) \
            or mode not in (b"half_pixel", b"pytorch_half_pixel") \
            or attrs.get("axes") or attrs.get("keep_aspect_ratio_policy", b"stretch") != b"stretch":
        return False
    image = next((i for i in graph.input if i.name == IMAGE), None)
    if image is None or image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:  # the host makes float32
        return False
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims) or dims[2] % 2 or dims[3] % 2:
        return False
    if mode == b"pytorch_half_pixel" and min(dims[2], dims[3]) < 4:  # it samples 0, not a mean, for a length of 1
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
    if _has_subgraphs(g):  # names read from inside If/Loop/Scan bodies are not followed here
        return None
    constants = _constant_values(g)
    halving_at = {i for i, n in enumerate(g.node) if n.op_type == "Resize" and n.input and n.input[0] == IMAGE
                  and _is_exact_halving(n, g, constants)}  # positions: node names may be empty
    replaced = {g.node[i].output[0] for i in halving_at}
    if not halving_at or any(i.name == HALF_IMAGE for i in g.input) \
            or any(o.name in replaced for o in g.output):  # a graph output cannot be renamed away
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    kept = [n for i, n in enumerate(og.node) if i not in halving_at]
    for node in kept:
        for k, name in enumerate(node.input):
            if name in replaced:
                node.input[k] = HALF_IMAGE
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


# nodes an index passes through unchanged in meaning when its type is int32 instead of int64
_INDEX_ARITHMETIC = ("Add", "Sub", "Mul")


def int32_index_graph(model):
    """A copy of a graph whose int64 gather indices are computed in int32, or None if it has none
    or if an int64 value on the way is also read by anything but index arithmetic, a reshape of
    it, or a `Gather`/`GatherElements` index input (then the graph is left as it is)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    g = model.graph
    if _has_subgraphs(g):  # names read from inside If/Loop/Scan bodies are not followed here
        return None
    # nodes are kept by position (the copy below has the same order): names may be empty
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    starts = {i for i, n in enumerate(g.node) if n.op_type == "Cast"
              and any(a.name == "to" and a.i == TensorProto.INT64 for a in n.attribute)}
    constants = _constant_values(g)
    values = {o for i in starts for o in g.node[i].output}
    chain, stack = set(), list(values)
    while stack:
        value = stack.pop()
        for i in consumers.get(value, []):
            node = g.node[i]
            if node.op_type in ("Gather", "GatherElements") and list(node.input).index(value) == 1:
                continue
            if not (node.op_type == "Reshape" and node.input[0] == value) and node.op_type not in _INDEX_ARITHMETIC:
                return None
            chain.add(i)
            for o in node.output:
                if o not in values:
                    values.add(o)
                    stack.append(o)
    arithmetic = [i for i in chain if g.node[i].op_type in _INDEX_ARITHMETIC]
    # an arithmetic node's other operand: a converted value or an int64 constant
    if any(n not in values and not (n in constants and constants[n].dtype == np.int64)
           for i in arithmetic for n in g.node[i].input):
        return None
    if not starts or any(o.name in values for o in g.output):
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    taken = {t.name for t in g.initializer} | {o for n in g.node for o in n.output} | {v.name for v in g.input}
    converted: dict[str, str] = {}
    for i in starts:
        next(a for a in og.node[i].attribute if a.name == "to").i = TensorProto.INT32
    for i in arithmetic:
        node = og.node[i]
        for k, name in enumerate(node.input):
            if name in values:
                continue
            if name not in converted:
                array = constants[name]
                if np.abs(array).max(initial=0) >= 2 ** 31:
                    return None
                new = name + "_int32"
                while new in taken:
                    new += "_"
                taken.add(new)
                converted[name] = new
                og.initializer.append(numpy_helper.from_array(array.astype(np.int32), new))
            node.input[k] = converted[name]
    live_vi = [v for v in og.value_info if v.name not in values]  # their recorded type was int64
    del og.value_info[:]
    og.value_info.extend(live_vi)
    return out
