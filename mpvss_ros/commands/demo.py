"""`mpvss demo`: the main job end to end on the embedded default model.

generated street sequences -> rosbag2 (MCAP) -> the node (started here, on sim time) fed over
DDS -> report.json, report.md, plots and an overlay strip. The data is generated at the model's
input size, so nothing is resized and a few dozen frames take well under a minute on 2 cores.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import require_ros

MARKER = "mpvss_demo.json"  # written into --out; lets a re-run replace its own earlier output
SPLIT = "val"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="mpvss_demo", metavar="DIR",
                        help="output folder (default ./mpvss_demo); a previous demo output there is replaced")
    parser.add_argument("--model", metavar="MODEL_DIR",
                        help="model directory (default: the embedded default, models/default)")
    parser.add_argument("--params", metavar="FILE",
                        help="node parameter file (default: config/segment.yaml of this package when present)")
    parser.add_argument("--sequences", type=int, default=2, help="generated sequences (default 2)")
    parser.add_argument("--frames", type=int, default=15, help="frames per sequence (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sequences")
    parser.add_argument("--rate", type=float, metavar="HZ",
                        help="replay at this rate instead of as fast as the node keeps up")


def _say(step: str, text: str) -> None:
    print(f"[demo {step}] {text}", flush=True)


def _model_dir(arg: str | None) -> Path:
    from mpvss_ros.ros.params import default_model_dir

    path = Path(arg) if arg else default_model_dir()
    if not (path / "model.json").is_file():
        if arg:
            raise CommandError(f"not a model directory (no model.json): {path}")
        raise CommandError(f"the embedded default model is missing ({path}/model.json): "
                           "make one with `mpvss train` + `mpvss export`, or pass --model MODEL_DIR")
    return path.resolve()


def _default_params() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "config" / "segment.yaml"
    return path if path.is_file() else None


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise CommandError(f"{out} exists and is not an earlier demo output; choose another --out")
    for sub in ("data", "bag"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)


def run(args) -> int:
    if args.sequences < 1 or args.frames < 2:
        raise CommandError("--sequences must be >= 1 and --frames >= 2")
    if args.rate is not None and not args.rate > 0:
        raise CommandError(f"--rate must be positive, got {args.rate}")
    require_ros("mpvss demo (the node replays a bag over DDS)")
    model = _model_dir(args.model)
    params = Path(args.params) if args.params else _default_params()
    if params is not None and not params.is_file():
        raise CommandError(f"parameter file not found: {params}")
    meta = json.loads((model / "model.json").read_text())
    size = tuple(int(v) for v in meta["input_size"])
    interval = int(meta.get("default_interval") or 5)
    out = Path(args.out)
    _prepare_out(out)
    (out / MARKER).write_text(json.dumps({"model": str(model), "sequences": args.sequences,
                                          "frames": args.frames, "seed": args.seed}) + "\n")
    started = time.perf_counter()

    from mpvss_ros.data.generator import generate

    _say("1/4", f"generating {args.sequences} sequences x {args.frames} frames at {size[0]}x{size[1]} -> {out / 'data'}")
    generate(out / "data", SPLIT, args.sequences, args.frames, size, args.seed)

    from mpvss_ros.data.bag import convert_sequences

    _say("2/4", f"converting to a rosbag2 (MCAP) -> {out / 'bag'}")
    summary = convert_sequences(out / "data", SPLIT, out / "bag", progress=True)
    _say("2/4", f"{summary.frames} frames, {summary.ground_truth_frames} with ground truth")

    from mpvss_ros.commands.bag import evaluate_bag

    _say("3/4", f"starting the node (model {model}, key frame every {interval} frames) and replaying the bag over DDS")
    report_path = out / "report.json"
    report, figures = evaluate_bag(
        out / "bag", report_path, params=params,
        overrides={"model": str(model), "schedule.mode": "interval", "schedule.interval": str(interval)},
        rate_hz=args.rate, progress=True)

    r = report["results"][0]
    lat = report["latency_ms"]
    _say("4/4", f"done in {time.perf_counter() - started:.0f} s")
    miou = "n/a" if r["miou"] is None else f"{100 * r['miou']:.1f}%"
    print(f"  {r['method']} k={r['interval']}: mIoU {miou}  "
          f"key fraction {report['key_fraction']}  dropped {report['dropped']}  "
          f"latency p50 {lat['p50']} ms  p95 {lat['p95']} ms  ({r['ms_per_frame']} ms inference/frame)")
    print(f"  report:  {report_path}")
    print(f"  summary: {report_path.with_suffix('.md')}")
    for caption, path in figures.items():
        print(f"  picture: {path}  ({caption})")
    print(f"  node log: {report_path.with_name(report_path.stem + '_node.log')}")
    sys.stdout.flush()
    return 0
