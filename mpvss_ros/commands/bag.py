"""`mpvss bag convert` (sequences -> rosbag2 MCAP) and `mpvss bag evaluate` (replay a bag through
the node over DDS and score what comes back)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import output_file, require_ros


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="{convert,evaluate}")
    sub.required = True
    c = sub.add_parser("convert", help="Cityscapes-style sequences or a video file -> rosbag2 (MCAP)",
                       description="Write /camera/image_raw (rgb8; or JPEG / PNG CompressedImages on "
                       "/camera/image_raw/compressed with --image-format), /camera/camera_info, "
                       "/ground_truth/labels (mono8 labelIds, frames with ground truth only) and "
                       "/camera/sequence (frame names), stamped from the frame rate.")
    c.add_argument("dir", metavar="DIR|VIDEO", help="Cityscapes-style root (leftImg8bit_sequence/, gtFine/), "
                   "or a video file (mp4, avi, mkv, ...: every frame, no ground truth)")
    c.add_argument("--split", help="split to convert (e.g. val); required for a Cityscapes-style root")
    c.add_argument("--out", required=True, metavar="BAG", help="new bag directory")
    c.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="frame rate (default: 17, the Cityscapes rate; a video's own rate)")
    c.add_argument("--max-frames", type=int, default=None, metavar="N", help="a video's first N frames only")
    c.add_argument("--image-format", choices=("raw", "png", "jpeg"), default="raw",
                   help="raw: sensor_msgs/Image rgb8 (default); png / jpeg: sensor_msgs/CompressedImage "
                   "on /camera/image_raw/compressed, as compressed_image_transport records it (JPEG quality 95)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(_run=run_convert)

    e = sub.add_parser("evaluate", help="replay a bag through the node over DDS and score it",
                       description="Starts the node (or attaches to a running one), replays the bag "
                       "with /clock, collects ~/labels, ~/confidence, ~/class_stats by header stamp and "
                       "writes report.json, report.md, plots and an overlay strip beside it.")
    e.add_argument("bag", metavar="BAG", help="rosbag2 directory (or .mcap file)")
    e.add_argument("--out", required=True, metavar="REPORT_JSON", help="report.json path; the other files go beside it")
    e.add_argument("--params", metavar="FILE", help="parameter file for the node it starts (e.g. config/segment.yaml)")
    pace = e.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, metavar="HZ", help="send frames at this wall-clock rate (the node drops what it cannot keep up with)")
    pace.add_argument("--as-fast-as-possible", action="store_true",
                      help="send each frame when the previous one's outputs arrived (default)")
    e.add_argument("--attach", action="store_true", help="use a node that is already running (Active, taking "
                   "images from /camera/image_raw) instead of starting one")
    e.add_argument("--node-namespace", default="", metavar="NS", help="namespace of the node (default: none)")
    e.add_argument("--model", metavar="MODEL_DIR", help="model directory for the node it starts (overrides the params file)")
    e.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter for the node it starts, e.g. schedule.interval:=2 (repeatable); "
                   "the started node takes input_reliability:=reliable unless set here")
    e.add_argument("--image-topic", metavar="TOPIC",
                   help="sensor_msgs/Image or CompressedImage topic in the bag (default /camera/image_raw, "
                   "or /camera/image_raw/compressed when the bag has only that); it is always published "
                   "as /camera/image_raw (compressed: /camera/image_raw/compressed, and a node this command "
                   "starts takes input_transport:=compressed), with its camera_info beside it")
    e.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="flow control: wait at most this long for a frame's outputs (default 10)")
    e.add_argument("--startup-timeout", type=float, default=180.0, metavar="S",
                   help="wait this long for the node to become active (default 180)")
    e.add_argument("--save-predictions", metavar="PRED_DIR",
                   help="write the node's labels as PRED_DIR/<city>_<seq>_<frame>_pred_labelIds.png")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(_run=run_evaluate)


def run(args) -> int:
    return args._run(args)


def run_convert(args) -> int:
    from mpvss_ros.data.bag import DEFAULT_RATE_HZ, convert_sequences

    if args.rate is not None and not args.rate > 0:
        raise CommandError(f"--rate must be positive, got {args.rate}")
    if args.max_frames is not None and args.max_frames <= 0:
        raise CommandError(f"--max-frames must be positive, got {args.max_frames}")
    root = Path(args.dir)
    if not root.exists():
        raise CommandError(f"no such directory or video file: {root}")
    if Path(args.out).exists():
        raise CommandError(f"{args.out} exists already; choose a new bag path")
    if root.is_dir():
        if not args.split:
            raise CommandError("--split is required for a Cityscapes-style root (e.g. --split val)")
        if args.max_frames is not None:
            raise CommandError("--max-frames applies to a video file, not to a Cityscapes-style root")
        summary = convert_sequences(root, args.split, args.out, rate_hz=args.rate or DEFAULT_RATE_HZ,
                                    progress=not args.quiet, image_format=args.image_format)
    else:
        from mpvss_ros.data.video import convert_video

        summary, video = convert_video(root, args.out, rate_hz=args.rate, progress=not args.quiet,
                                       image_format=args.image_format, max_frames=args.max_frames)
        if args.rate is None and video.fps is None:
            print(f"warning: {root} does not state its frame rate; stamped at {summary.rate_hz:g} Hz")
    h, w = summary.size
    images = "rgb8 Images on /camera/image_raw" if args.image_format == "raw" else \
        f"{args.image_format} CompressedImages on /camera/image_raw/compressed"
    print(f"wrote {summary.path}: {summary.frames} frames ({summary.ground_truth_frames} with ground truth) "
          f"in {len(summary.sequences)} sequences, {h}x{w}, {summary.rate_hz:g} Hz, {summary.duration_s:.1f} s; "
          f"{images}")
    if summary.unmatched_ground_truth:
        from mpvss_ros.data.cityscapes import unmatched_warning

        print(unmatched_warning(args.split, summary.unmatched_ground_truth, "they are not in the bag"))
    return 0


def _overrides(args) -> dict[str, str]:
    values: dict[str, str] = {}
    if args.model:
        model = Path(args.model)
        if not model.is_dir():
            raise CommandError(f"model directory not found: {model}")
        values["model"] = str(model.resolve())
    for item in args.set:
        name, sep, value = item.partition(":=")
        if not sep or not name.strip():
            raise CommandError(f"--set expects NAME:=VALUE, got {item!r}")
        values[name.strip()] = value
    return values


def _method(params: dict) -> tuple[str, int | None]:
    mode = params.get("schedule.mode") or "interval"
    if mode == "interval":
        k = params.get("schedule.interval")
        return ("per-frame" if k == 1 else "query-flow"), k
    return f"query-flow ({mode} schedule)", None


def run_evaluate(args) -> int:
    from mpvss_ros.data.bag import bag_info

    bag = Path(args.bag)
    if not bag.exists():
        raise CommandError(f"bag not found: {bag}")
    require_ros("mpvss bag evaluate")
    if args.rate is not None and not args.rate > 0:
        raise CommandError(f"--rate must be positive, got {args.rate}")
    if args.timeout <= 0 or args.startup_timeout <= 0:
        raise CommandError("--timeout and --startup-timeout must be positive")
    if args.attach and (args.params or args.model or args.set):
        raise CommandError("--params/--model/--set configure a node this command starts; not with --attach")
    if args.params and not Path(args.params).is_file():
        raise CommandError(f"parameter file not found: {args.params}")
    overrides = _overrides(args)
    try:
        info = bag_info(bag, args.image_topic)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if info.frames == 0:
        raise CommandError(f"{bag} has no {info.image_topic} messages")
    needed = "compressed" if info.compressed else "raw"
    transport = overrides.get("input_transport", needed).strip()
    if transport != needed:
        kind = "CompressedImage" if info.compressed else "Image"
        raise CommandError(f"{info.image_topic} holds sensor_msgs/{kind} messages; "
                           f"the node cannot take them with input_transport:={transport}")
    out = output_file(args.out)
    report, figures = evaluate_bag(
        bag, out, info=info, params=args.params, overrides=overrides, attach=args.attach,
        namespace=args.node_namespace, rate_hz=args.rate, timeout_s=args.timeout,
        startup_timeout_s=args.startup_timeout, save_predictions=args.save_predictions,
        image_topic=info.image_topic,
        progress=not args.quiet)
    _print_summary(report, out, figures)
    return 0


def evaluate_bag(bag: Path, out: Path, *, info=None, params=None, overrides=None, attach=False,
                 namespace="", rate_hz=None, timeout_s=10.0, startup_timeout_s=180.0,
                 save_predictions=None, image_topic=None, progress=True) -> tuple[dict, dict[str, Path]]:
    """Replay ``bag`` through the node and write report.json (+ .md, plots, strip); returns
    (report, {caption: png path}). Also used by `mpvss demo`."""
    from mpvss_ros.data.bag import bag_info, read_records
    from mpvss_ros.evaluation.replay_report import ReplayScorer
    from mpvss_ros.ros.node_process import NodeProcess
    from mpvss_ros.ros.replay import BagReplayer, ReplayOptions

    info = info or bag_info(bag, image_topic)
    node = None
    if not attach:
        # Reliable input by default: a bag evaluation wants every frame delivered (best-effort
        # large images are lost under some DDS setups); --set input_reliability:=best_effort
        # measures the camera-like QoS instead.
        overrides = {"input_reliability": "reliable", **(overrides or {})}
        # the bag's message type decides, whatever a parameter file says (run_evaluate has refused a
        # --set that disagrees)
        overrides["input_transport"] = "compressed" if info.compressed else "raw"
        node = NodeProcess(params=params, namespace=namespace, overrides=overrides,
                           log_path=out.with_name(out.stem + "_node.log")).start()
        if progress:
            print(f"started node (pid {node.pid}), log {node.log_path}", file=sys.stderr)
    options = ReplayOptions(rate_hz=rate_hz, timeout_s=timeout_s, namespace=namespace,
                            startup_timeout_s=startup_timeout_s, is_alive=node.alive if node else None,
                            compressed=info.compressed)
    scorer = ReplayScorer(total_frames=info.frames, ground_truth_frames=info.ground_truth_frames,
                          save_predictions=str(save_predictions) if save_predictions else None)
    replayer = None
    try:
        replayer = BagReplayer(options)
        bar = _bar(info.frames, progress)
        try:
            summary = replayer.replay(read_records(bag, info.image_topic), scorer.add, progress=bar.update)
        finally:
            bar.close()
        params_now = replayer.node_parameters(
            ["schedule.mode", "schedule.interval", "schedule.period_s", "model", "backend",
             "output_resolution", "label_format", "input_reliability", "input_transport"])
    except (TimeoutError, RuntimeError) as exc:
        detail = node.last_log_line() if node is not None and not node.alive() else ""
        raise CommandError(f"{exc}" + (f"; node said: {detail}" if detail else "")) from None
    finally:
        if replayer is not None:
            replayer.close()
        if node is not None:
            node.stop()
    method, interval = _method(params_now)
    model = _model_info(summary.label_info.get("model") or params_now.get("model") or "", params_now)
    replay = {
        "pacing": "as-fast-as-possible" if rate_hz is None else f"{rate_hz:g} Hz",
        "wall_s": round(summary.wall_s, 3),
        "fps": round(summary.frames / summary.wall_s, 3) if summary.wall_s > 0 else None,
        "key_frame_requests": summary.key_requests,
        "node": "attached" if attach else "started",
        "namespace": namespace or "/",
        "schedule": {k.split(".", 1)[1]: v for k, v in params_now.items() if k.startswith("schedule.")},
        "backend": params_now.get("backend"),
        "input_reliability": params_now.get("input_reliability"),
        "input_transport": params_now.get("input_transport"),
        "node_overrides": dict(overrides or {}) if not attach else None,
    }
    from mpvss_ros.evaluation.evaluate import schedule_gflops

    gflops = schedule_gflops("query-flow" if method != "per-frame" else method, model.pop("gflops", None),
                             scorer.key_frames, scorer.answered)
    data = {"bag": str(bag), "image_topic": info.image_topic, "image_type": info.image_type, "frames": info.frames,
            "annotated_frames": info.ground_truth_frames, "sequences": scorer.sequences}
    report = scorer.report(method=method, interval=interval, model=model, data=data, replay=replay,
                           gflops_per_frame=gflops)
    out.write_text(json.dumps(report, indent=2) + "\n")
    figures = write_figures(report, scorer, out)
    from mpvss_ros.evaluation.report_md import write_markdown

    write_markdown(report, out.with_suffix(".md"), figures, title="MPVSS bag evaluation")
    return report, figures


def _model_info(path: str, params: dict) -> dict:
    """What the report says about the node's model (model.json's size and FLOPs when readable)."""
    info = {"path": path or None, "backend": params.get("backend")}
    meta_path = Path(path) / "model.json" if path else None
    if meta_path is not None and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        info["input_size"] = meta.get("input_size")
        info["gflops"] = (meta.get("metrics") or {}).get("gflops")
    return info


def write_figures(report: dict, scorer, out: Path) -> dict[str, Path]:
    from mpvss_ros.evaluation import plots

    stem = out.with_suffix("")
    figures = {}
    result = report["results"][0]
    if result.get("per_class_iou"):
        figures["IoU per class"] = plots.per_class_iou_bars(result["per_class_iou"], f"{stem}_per_class_iou.png")
    figures["Latency"] = plots.latency_histogram(scorer.latencies_ms, f"{stem}_latency.png")
    if any(t.get("miou") is not None for t in scorer.timeline):
        figures["mIoU over time (red: key frames)"] = plots.miou_over_time(scorer.timeline, f"{stem}_miou_over_time.png")
    else:  # a bag without ground truth (e.g. from a video): the key frames and gaps are still worth seeing
        figures["Key frames over time (no ground truth)"] = plots.miou_over_time(
            scorer.timeline, f"{stem}_miou_over_time.png", title="key frames and missing outputs (no ground truth)")
    if scorer.samples:
        figures["Input | labels | ground truth"] = plots.overlay_strip(scorer.samples, f"{stem}_overlay_strip.png")
    return figures


def _print_summary(report: dict, out: Path, figures: dict[str, Path]) -> None:
    r = report["results"][0]
    lat = report["latency_ms"]
    miou = "n/a (no ground truth)" if r["miou"] is None else f"{100 * r['miou']:.1f}%"
    print(f"{r['method']} k={r['interval']}: mIoU {miou}, frames {report['frames']}, "
          f"dropped {report['dropped']}, key fraction {report['key_fraction']}, "
          f"latency p50 {lat['p50']} ms p95 {lat['p95']} ms")
    print(f"report: {out}")
    print(f"summary: {out.with_suffix('.md')}")
    for caption, path in figures.items():
        print(f"figure: {path}  ({caption})")


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="frame", disable=not enabled, dynamic_ncols=True)
