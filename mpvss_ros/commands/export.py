"""`mpvss export --checkpoint CKPT_DIR --out MODEL_DIR [--size HxW] [--no-weights]`.

CKPT_DIR is an MPVSS checkpoint (config.json + model.safetensors, as `mpvss train` writes), an
exported model directory with weights (config.json + weights.safetensors), or a plain
transformers Mask2Former directory (the flow module is then randomly initialised: train it).
"""
from __future__ import annotations

import json
from pathlib import Path

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import parse_size


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="MPVSS checkpoint or transformers Mask2Former directory")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--size", default=None, help="graph input size HxW (default: the checkpoint's image_size)")
    parser.add_argument("--no-weights", action="store_true",
                        help="write only the ONNX graphs + model.json (no weights.safetensors for the torch runner)")
    parser.add_argument("--metrics", default=None, help="JSON file whose object is stored under model.json 'metrics'")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")


def load_checkpoint(path: Path):
    """Any of the accepted checkpoint layouts -> MPVSS (eval mode)."""
    from mpvss_ros.model.config import MPVSSConfig, read_json_object
    from mpvss_ros.model.mpvss import MPVSS, WEIGHTS_NAME
    from mpvss_ros.model.export import WEIGHTS

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CommandError(f"no config.json in checkpoint directory {path}")
    cfg_data = read_json_object(cfg_file)
    if cfg_data.get("model_type") == "mask2former":
        print(f"mpvss export: {path} is a transformers Mask2Former directory; the flow module is untrained")
        return MPVSS(MPVSSConfig(segmentor_path=str(path))).eval()
    for weights in (WEIGHTS_NAME, WEIGHTS):
        if (path / weights).is_file():
            return MPVSS.load(path, weights_name=weights)
    raise CommandError(f"no {WEIGHTS_NAME} or {WEIGHTS} in checkpoint directory {path}")


def _portable(path: Path) -> str:
    """The checkpoint as model.json records it: relative to the working directory when inside it
    (a model shipped in a repository should not carry the path of the machine it was built on)."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def run(args) -> int:
    ckpt = Path(args.checkpoint)
    if not ckpt.is_dir():
        raise CommandError(f"checkpoint directory not found: {ckpt}")
    size = parse_size(args.size) if args.size else None
    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(Path(args.metrics).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read metrics JSON {args.metrics}: {exc}") from None
        if not isinstance(metrics, dict):
            raise CommandError(f"metrics file {args.metrics} must hold a JSON object")

    from mpvss_ros.model.export import export_model

    print(f"mpvss export: loading {ckpt}", flush=True)
    model = load_checkpoint(ckpt)
    print("mpvss export: exporting segmentor.onnx and flow.onnx (this takes a while)", flush=True)
    info = export_model(model, args.out, size=size, write_weights=not args.no_weights,
                        provenance={"checkpoint": _portable(ckpt)}, metrics=metrics,
                        verify=not args.no_verify)
    check = info["metrics"].get("export_check")
    if check:
        print("mpvss export: ONNX Runtime vs torch: " + ", ".join(f"{k}={v:.3g}" for k, v in check.items()))
    print(f"mpvss export: wrote {args.out} (input {info['input_size'][0]}x{info['input_size'][1]}, "
          f"{info['num_queries']} queries)")
    return 0
