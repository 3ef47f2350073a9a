"""`mpvss recover-weights --model MODEL_DIR --out CKPT_DIR`: rebuild the torch checkpoint of a
model directory exported without weights (e.g. the embedded default) from its ONNX graphs, so
that training can continue from it (`mpvss train segmentor --init`, `train flow --segmentor`).
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model directory (model.json + ONNX graphs)")
    parser.add_argument("--out", required=True, help="checkpoint directory to write (config.json + model.safetensors)")


def run(args) -> int:
    from mpvss_ros.model.recover import recover_model

    # a directory without model.json or graphs is refused there with a one-line reason
    result = recover_model(Path(args.model), progress=lambda text: print(f"mpvss recover-weights: {text}", flush=True))
    result.model.save(args.out)
    check = ", ".join(f"{k}={v:.3g}" for k, v in result.check.items())
    print(f"mpvss recover-weights: {len(result.recovered)} parameters read from the graphs; "
          f"{len(result.not_in_graphs)} unused by inference kept at their initial values "
          f"({', '.join(result.not_in_graphs) or 'none'})")
    for name, rows in result.rows_kept.items():
        print(f"mpvss recover-weights: {name}: rows {rows} are never read by the graphs, kept at their initial values")
    print(f"mpvss recover-weights: ONNX Runtime vs the rebuilt model: {check}")
    print(f"mpvss recover-weights: wrote {args.out}")
    return 0
