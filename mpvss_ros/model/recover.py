"""Rebuild the torch weights of an exported model directory from its ONNX graphs.

Model directories exported with `--no-weights` (the embedded default among them) hold every
trained value inside `segmentor.onnx` and `flow.onnx`, but the exporter renames, transposes,
splits and folds many of them. Rather than reverse each graph rewrite by hand, two reference
models of the same configuration, each with its own unique random values, go through the same
exporter: the exporter is deterministic, so an initializer element that holds value a in
reference A and value b in reference B at the same place holds parameter element (a, b) in
the trained graphs too. Values folded into a constant (a level embedding added to a fixed
position embedding) are recovered from the difference to the reference's constant.

The result is checked against the graphs with ONNX Runtime (`verify_export`) before it is
returned: a wrong configuration or an exporter that changed cannot pass silently.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .config import MPVSSConfig
from .export import FLOW_ONNX, MODEL_JSON, SEGMENTOR_ONNX, export_model, verify_export
from .mpvss import MPVSS

GRAPHS = (SEGMENTOR_ONNX, FLOW_ONNX)


@dataclasses.dataclass
class Recovery:
    model: MPVSS
    recovered: list[str]  # parameter names read from the graphs
    not_in_graphs: list[str]  # parameters inference never uses (kept at their initial values)
    rows_kept: dict[str, list[int]]  # rows of (L, C) parameters the graphs never read (initial values)
    check: dict  # verify_export of the rebuilt model against the graphs


def _initializers(model_dir: Path) -> list[tuple[str, np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    out = []
    for graph in GRAPHS:
        for init in onnx.load(str(model_dir / graph)).graph.initializer:
            out.append((f"{graph}:{init.name}", numpy_helper.to_array(init)))
    return out


def _flat(inits: list[tuple[str, np.ndarray]]) -> np.ndarray:
    arrays = [a.ravel() for _, a in inits if a.dtype == np.float32]
    return np.concatenate(arrays) if arrays else np.zeros(0, np.float32)


def _codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One uint64 per element pair: (bits of a) << 32 | bits of b."""
    return (a.view(np.uint32).astype(np.uint64) << np.uint64(32)) | b.view(np.uint32).astype(np.uint64)


def _reference(cfg: MPVSSConfig, size: tuple[int, int], seed: int, out_dir: Path) -> dict[str, np.ndarray]:
    """Export a model whose every parameter element is distinct; return its parameters."""
    torch.manual_seed(0)
    model = MPVSS(dataclasses.replace(cfg)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # small offsets keep the model numerically sane (the export traces real computations)
        for p in model.parameters():
            p.add_(torch.rand(p.shape, generator=g) * 0.02 + 0.01)
    export_model(model, out_dir, size=size, write_weights=False, verify=False)
    return {k: v.detach().numpy().copy() for k, v in model.named_parameters()}


def model_config_of(model_dir: Path) -> MPVSSConfig:
    """The MPVSSConfig stored in model.json, or the default one at the graphs' input size."""
    try:
        info = json.loads((model_dir / MODEL_JSON).read_text())
        size = tuple(int(v) for v in info["input_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{model_dir / MODEL_JSON}: cannot read the input size ({exc!r})") from None
    if info.get("config"):
        return dataclasses.replace(MPVSSConfig.from_dict(info["config"]), image_size=size)
    return MPVSSConfig(image_size=size, num_classes=int(info.get("num_classes", 19)))


def recover_model(model_dir: str | Path, config: MPVSSConfig | None = None, progress=print) -> Recovery:
    """The MPVSS model whose export produced `model_dir`'s graphs."""
    model_dir = Path(model_dir)
    for name in (MODEL_JSON, *GRAPHS):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir} is not a model directory: no {name}")
    cfg = config or model_config_of(model_dir)
    size = tuple(cfg.image_size)
    target = _initializers(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        refs, ref_inits = [], []
        for seed in (1, 2):
            progress(f"exporting reference model {seed} of 2")
            refs.append(_reference(cfg, size, seed, Path(tmp) / f"ref{seed}"))
            ref_inits.append(_initializers(Path(tmp) / f"ref{seed}"))
    layout = [(k, a.shape, a.dtype) for k, a in target]
    for inits in ref_inits:
        other = [(k, a.shape, a.dtype) for k, a in inits]
        if other != layout:
            first = next((f"{x[0]} {x[1]}" for x, y in zip(layout, other) if x != y), f"{len(layout)} initializers")
            made_with = (json.loads((model_dir / MODEL_JSON).read_text()).get("provenance") or {}).get("torch")
            versions = f"; it was exported with torch {made_with}, this is torch {torch.__version__}" \
                if made_with and made_with != torch.__version__ else ""
            raise ValueError(f"{model_dir}: its graphs do not match this configuration's export at {first} "
                             "(another model configuration, or another exporter version: recover it with the "
                             f"code and torch that exported it, or re-export its checkpoint{versions})")
    flat_a, flat_b, flat_t = _flat(ref_inits[0]), _flat(ref_inits[1]), _flat(target)
    codes = _codes(flat_a, flat_b)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]

    torch.manual_seed(0)
    model = MPVSS(dataclasses.replace(cfg))
    state = model.state_dict()
    recovered, missing, rows_kept = [], [], {}
    for name, pa in refs[0].items():
        pb = refs[1][name]
        want = _codes(pa.ravel(), pb.ravel())
        at = np.clip(np.searchsorted(sorted_codes, want), 0, len(sorted_codes) - 1)
        found = sorted_codes[at] == want
        values = np.where(found, flat_t[order[at]], np.nan).astype(np.float32).reshape(pa.shape)
        if not found.all() and pa.ndim == 2:
            _recover_folded_rows(values, pa, pb, ref_inits, target)
        if np.isnan(values).all():
            missing.append(name)
            continue
        # whole rows of a (L, C) table the graphs never read (e.g. level embeddings of levels a
        # small decoder does not reach) keep their initial values; anything else partial is an error
        unused_rows = np.isnan(values).all(axis=1) if values.ndim == 2 else None
        if np.isnan(values if unused_rows is None else values[~unused_rows]).any():
            raise ValueError(f"{model_dir}: could only partly recover parameter {name}")
        if unused_rows is not None and unused_rows.any():
            values[unused_rows] = state[name].numpy()[unused_rows]
            rows_kept[name] = [int(r) for r in np.nonzero(unused_rows)[0]]
        state[name] = torch.from_numpy(values)
        recovered.append(name)
    model.load_state_dict(state)
    model.eval()
    progress("checking the rebuilt model against the graphs with ONNX Runtime")
    check = verify_export(model, model_dir, size)
    # the export check's own tolerance: ORT and torch differ by ~1e-4 on these graphs
    if check["segmentor_label_agreement"] < 0.999 or check["flow_label_agreement"] < 0.999 or \
            check["segmentor_mask_max_abs_diff"] > 5e-3 or check["flow_mask_max_abs_diff"] > 5e-3:
        raise ValueError(f"{model_dir}: the rebuilt model does not reproduce the graphs ({check})")
    return Recovery(model, recovered, missing, rows_kept, check)


def _recover_folded_rows(values: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                         ref_inits: list[list[tuple[str, np.ndarray]]], target: list[tuple[str, np.ndarray]]) -> None:
    """Rows of a (L, C) parameter added to a constant that is the same in every export (e.g. a
    level embedding added to a sine position embedding): find initializer rows that differ
    between the references by exactly that row's difference, and subtract the constant."""
    channels = pa.shape[1]
    if channels < 8:  # a short row could match unrelated values by chance
        return
    for row in np.nonzero(np.isnan(values).any(axis=1))[0]:
        delta = pa[row] - pb[row]
        for (_, xa), (_, xb), (_, xt) in zip(ref_inits[0], ref_inits[1], target):
            if xa.dtype != np.float32 or xa.ndim == 0:
                continue
            for axis in [a for a in range(xa.ndim) if xa.shape[a] == channels]:
                rows = lambda x: np.moveaxis(x, axis, -1).reshape(-1, channels)  # noqa: E731
                # the constant may hold several levels (concatenated): use the rows of this one
                match = np.all(np.abs(rows(xa - xb) - delta) < 1e-6, axis=1)
                offsets = rows(xt)[match] - rows(xa)[match]
                # every place the row was added to must show the same trained-minus-reference offset
                if match.any() and np.allclose(offsets, offsets[0], atol=1e-4):
                    values[row] = pa[row] + offsets.mean(axis=0)
                    break
            else:
                continue
            break
