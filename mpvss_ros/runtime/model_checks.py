"""Checks on a model directory before and after its files are opened.

A model directory comes from a parameter, i.e. from whoever can set parameters on a robot, so
it is treated as untrusted: model.json must be well formed, every file it names must stay
inside the (resolved) directory — no absolute names, no ``..``, no symlink leading out — and
each ONNX graph's inputs and outputs must have the shapes model.json promises. Every failure
is a ``ValueError`` (``FileNotFoundError`` for missing files) with a one-line reason, which
the node's configure transition logs.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePath

MODEL_JSON = "model.json"
MAX_MODEL_JSON_BYTES = 1 << 20  # a description, not data: anything bigger is not ours
SEGMENTOR_INPUTS = ("image",)
SEGMENTOR_OUTPUTS = ("queries", "mask_logits", "class_logits", "motion", "probs", "labels", "confidence")
FLOW_INPUTS = ("key_motion", "image", "key_queries", "key_mask_logits", "key_class_logits")
VERSION = 2  # 2: the key frame's motion features replace the key image as a flow-graph input
FLOW_OUTPUTS = ("mask_logits", "probs", "labels", "confidence")


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def read_model_json(model_dir: str | Path) -> dict:
    """model.json of ``model_dir``, checked for the keys and types the runners use."""
    path = Path(model_dir) / MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"not a model directory (no {MODEL_JSON}): {model_dir}")
    if path.stat().st_size > MAX_MODEL_JSON_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, more than a model description "
                         f"can be ({MAX_MODEL_JSON_BYTES})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != "mpvss-model":
        fmt = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise ValueError(f"{path} is not an mpvss-model description (format={fmt!r})")
    problems = _info_problems(info)
    if problems:
        raise ValueError(f"{path}: {problems[0]}")
    return info


def _info_problems(info: dict) -> list[str]:
    p = []
    version = info.get("version", 1)
    if version != VERSION:
        hint = "; re-export it with `mpvss export --checkpoint`" if version == 1 else ""
        p.append(f"unsupported version {version!r} (this code reads version {VERSION}{hint})")
    size = info.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))):
        p.append(f"input_size must be [height, width] (positive integers), got {size!r}")
    if not _positive_int(info.get("num_queries")):
        p.append(f"num_queries must be a positive integer, got {info.get('num_queries')!r}")
    names = info.get("class_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        p.append(f"class_names must be a non-empty list of names, got {names!r}")
    elif "num_classes" in info and info["num_classes"] != len(names):
        p.append(f"num_classes is {info['num_classes']!r} but class_names has {len(names)} names")
    graphs = info.get("graphs")
    if not (isinstance(graphs, dict) and all(isinstance(graphs.get(k), str) for k in ("segmentor", "flow"))):
        p.append(f"graphs must name the segmentor and flow files, got {graphs!r}")
    if info.get("weights") is not None and not isinstance(info["weights"], str):
        p.append(f"weights must be a file name or null, got {info['weights']!r}")
    return p


def member_path(model_dir: str | Path, name: str, what: str) -> Path:
    """The file ``name`` (from model.json) inside ``model_dir``, resolved; ValueError if it would
    leave the directory (absolute, ``..``, or a symlink pointing outside), FileNotFoundError if absent."""
    root = Path(model_dir).resolve()
    pure = PurePath(name)
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{what} file name {name!r} in {MODEL_JSON} must be a relative name "
                         f"inside the model directory {root}")
    path = (root / pure).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{what} file {name!r} in {MODEL_JSON} resolves to {path}, outside the "
                         f"model directory {root} (symlink)")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {name!r} named in {MODEL_JSON} is missing from {root}")
    return path


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"


def _match(shape, expected) -> bool:
    """Fixed dims must agree; symbolic dims (str/None) and expected None match anything."""
    if len(shape) != len(expected):
        return False
    return all(not isinstance(d, int) or e is None or d == e for d, e in zip(shape, expected))


def check_onnx_signatures(info: dict, segmentor, flow, names: tuple[str, str]) -> None:
    """ValueError unless the two ORT sessions have the inputs/outputs model.json implies."""
    h, w = info["input_size"]
    n, k1 = info["num_queries"], len(info["class_names"]) + 1
    c = info.get("hidden_dim")
    c = c if _positive_int(c) else None
    seg_out = {o.name: o.shape for o in segmentor.get_outputs()}
    mask = seg_out.get("mask_logits", [1, n, None, None])
    motion = tuple(d if isinstance(d, int) else None for d in seg_out.get("motion", [1, None, None, None]))
    image = (1, 3, h, w)
    expected = {
        names[0]: (segmentor, SEGMENTOR_INPUTS, SEGMENTOR_OUTPUTS,
                   {"image": image, "queries": (1, n, c), "mask_logits": (1, n, None, None),
                    "class_logits": (1, n, k1), "motion": (1, None, None, None),
                    "probs": (1, k1 - 1, None, None), "labels": (1, h, w), "confidence": (1, h, w)}),
        names[1]: (flow, FLOW_INPUTS, FLOW_OUTPUTS,
                   {"key_motion": motion, "image": image, "key_queries": (1, n, c),
                    "key_mask_logits": tuple(d if isinstance(d, int) else None for d in mask),
                    "key_class_logits": (1, n, k1), "mask_logits": (1, n, None, None),
                    "probs": (1, k1 - 1, None, None), "labels": (1, h, w), "confidence": (1, h, w)}),
    }
    for file, (session, inputs, outputs, shapes) in expected.items():
        got_in = {i.name: i.shape for i in session.get_inputs()}
        got_out = {o.name: o.shape for o in session.get_outputs()}
        if set(got_in) != set(inputs) or not set(outputs) <= set(got_out):
            raise ValueError(f"{file} is not an MPVSS graph of this kind: inputs {sorted(got_in)}, "
                             f"outputs {sorted(got_out)} (expected inputs {list(inputs)}, "
                             f"outputs {list(outputs)})")
        for name, shape in {**got_in, **{o: got_out[o] for o in outputs}}.items():
            if not _match(list(shape), shapes[name]):
                raise ValueError(f"{MODEL_JSON} does not match {file}: {name} has shape "
                                 f"{_shape_text(shape)}, model.json implies {_shape_text(shapes[name])} "
                                 f"(input_size {h}x{w}, {n} queries, {k1 - 1} classes)")
