"""`mpvss evaluate`: score per-frame / copy / optical-flow / query-flow on a Cityscapes-style split."""
from __future__ import annotations

import json
from pathlib import Path

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import output_file, parse_int_list, parse_size


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset root (Cityscapes layout)")
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--model", required=True,
                        help="model directory (model.json + ONNX graphs / weights), a transformers "
                             "Mask2Former directory (per-frame, copy and optical-flow only, in torch), "
                             "'oracle' for the ground-truth runner (data checks), or 'oracle-grid' for the "
                             "ground truth through stride-4 masks (what the mask grid alone costs)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated: per-frame, copy, optical-flow, query-flow (default all four; "
                             "the first three for a transformers Mask2Former directory)")
    parser.add_argument("--size", default=None,
                        help="input size HxW for a transformers Mask2Former directory (default: the split's "
                             "frame size); a model directory has its own")
    parser.add_argument("--intervals", default="1,2,5,10", help="key-frame intervals k (default 1,2,5,10)")
    parser.add_argument("--out", required=True, help="report JSON to write")
    parser.add_argument("--save-predictions", metavar="PRED_DIR", default=None,
                        help="write PRED_DIR/<method>_k<interval>/<city>_<seq>_<frame>_pred_labelIds.png "
                             "for every frame with ground truth")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"],
                        help="runner backend for a model directory (default onnxruntime)")
    parser.add_argument("--max-sequences", type=int, default=None, help="score only the first N sequences")


def _load_runner(args, segmentor_only: bool):
    """-> (runner, model_info, gflops)."""
    if args.model in ("oracle", "oracle-grid"):
        from mpvss_ros.evaluation.oracle import OracleRunner

        runner = OracleRunner(args.data, args.split, max_sequences=args.max_sequences,
                              grid=args.model == "oracle-grid")
        return runner, {"name": args.model, "path": None, "backend": "oracle",
                        "propagation": runner.propagation}, None
    model_dir = Path(args.model)
    if not model_dir.exists():
        raise CommandError(f"model {args.model} does not exist (give a model directory, 'oracle' or 'oracle-grid')")
    if segmentor_only:
        return _mask2former_runner(args, model_dir)
    if args.size:
        raise CommandError("--size applies to a transformers Mask2Former directory only (a model directory "
                           "runs at the size it was exported at)")
    meta_path = model_dir / "model.json" if model_dir.is_dir() else None
    meta = json.loads(meta_path.read_text()) if meta_path and meta_path.is_file() else {}
    from mpvss_ros.runtime.runners import create_runner  # lazy: torch / onnxruntime are heavy

    runner = create_runner(str(model_dir), backend=args.backend)
    info = {"name": model_dir.name, "path": str(model_dir), "backend": getattr(runner, "backend", args.backend),
            "provenance": meta.get("provenance")}
    gflops = (meta.get("metrics") or {}).get("gflops")
    gflops = gflops if isinstance(gflops, dict) else None
    info["input_size"] = list(getattr(runner, "input_size", []))
    info["gflops"] = gflops
    return runner, info, gflops


def _mask2former_runner(args, model_dir: Path):
    """A user's Mask2Former as the key-frame segmentor alone (torch), before any query-flow training."""
    from mpvss_ros.data.cityscapes import CityscapesSequences
    from mpvss_ros.runtime.runners import TorchRunner

    if args.size:
        size = parse_size(args.size)
    else:  # the split's own frame size
        data = CityscapesSequences(args.data, args.split)
        if not data.sequences:
            raise CommandError(f"no sequences in {args.data}/{args.split}")
        size = data.load_image(data.sequences[0].frames[0]).shape[:2]
    runner = TorchRunner(model_dir, image_size=size)
    info = {"name": model_dir.name, "path": str(model_dir), "backend": "torch", "provenance": None,
            "input_size": list(runner.input_size), "gflops": None, "query_flow": False}
    return runner, info, None


def _methods(args, segmentor_only: bool) -> list[str]:
    """The methods to run; checked before any model is loaded."""
    if args.methods is None:
        return ["per-frame", "copy", "optical-flow"] + ([] if segmentor_only else ["query-flow"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise CommandError("--methods is empty")
    if segmentor_only and "query-flow" in methods:
        raise CommandError(f"{args.model} is a Mask2Former without a query-flow module: train one on it "
                           "(`mpvss train flow --segmentor DIR`, then `mpvss export`), or leave out query-flow")
    return methods


def run(args) -> int:
    from mpvss_ros.evaluation.evaluate import evaluate

    from mpvss_ros.model.config import is_mask2former_dir

    # a transformers Mask2Former directory: the segmentor alone (no query flow)
    segmentor_only = args.model not in ("oracle", "oracle-grid") and is_mask2former_dir(args.model)
    methods = _methods(args, segmentor_only)
    intervals = parse_int_list(args.intervals, "--intervals")
    if args.max_sequences is not None and args.max_sequences <= 0:
        raise CommandError("--max-sequences must be positive")
    out = output_file(args.out)
    runner, info, gflops = _load_runner(args, segmentor_only)
    report = evaluate(args.data, args.split, runner, methods, intervals, save_predictions=args.save_predictions,
                      max_sequences=args.max_sequences, model_info=info, gflops=gflops)
    out.write_text(json.dumps(report, indent=2) + "\n")
    unmatched = report["data"]["unmatched_ground_truth"]
    if unmatched:
        from mpvss_ros.data.cityscapes import unmatched_warning

        print(unmatched_warning(args.split, unmatched, "they were not scored"))
    for r in report["results"]:
        miou = "n/a" if r["miou"] is None else f"{r['miou']:.4f}"
        ms = "n/a" if r["ms_per_frame"] is None else f"{r['ms_per_frame']:.1f}"
        print(f"{r['method']:>12} k={r['interval']:<3} mIoU {miou}  {ms} ms/frame")
    print(f"wrote {out}")
    return 0
