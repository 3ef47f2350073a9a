"""`mpvss bench`: key / non-key latency, pipeline FPS per interval, GFLOPs and ROS overhead."""
from __future__ import annotations

import json
from pathlib import Path

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import output_file, parse_int_list, parse_size, require_ros


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model directory (model.json + ONNX graphs)")
    parser.add_argument("--size", default=None,
                        help="camera image size HxW fed to the pipeline (default: the model's input size)")
    parser.add_argument("--out", required=True, help="bench.json to write")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--providers", default="auto", help="auto or comma-separated ORT providers")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = runtime default)")
    parser.add_argument("--postprocess", default="auto", choices=["auto", "host", "graph"],
                        help="full-resolution labels on the host from mask-grid scores (auto: on the CPU) "
                             "or by the graphs' own up-sampling tail")
    parser.add_argument("--io-binding", default="auto", choices=["auto", "on", "off"],
                        help="keep the key state on the device between frames (auto: on a GPU)")
    parser.add_argument("--trt-fp16", default="on", choices=["on", "off"], help="TensorRT fp16 kernels")
    parser.add_argument("--intervals", default="1,2,5,10")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40, help="frames per pipeline run")
    parser.add_argument("--ros-size", default="1024x2048",
                        help="image size for the ROS overhead loop (publisher -> node -> subscriber)")
    parser.add_argument("--ros-frames", type=int, default=30)
    parser.add_argument("--no-ros", action="store_true", help="skip the ROS overhead measurement")


def run(args) -> int:
    from mpvss_ros.evaluation.benchmark import benchmark_runner, peak_rss_mb
    from mpvss_ros.runtime.runners import create_runner

    model_dir = Path(args.model)
    if not (model_dir / "model.json").is_file():
        raise CommandError(f"{model_dir} is not a model directory (no model.json)")
    intervals = parse_int_list(args.intervals, "--intervals")
    out = output_file(args.out)
    if not args.no_ros:
        require_ros("mpvss bench (its ROS loop; --no-ros skips it)")
    providers = "auto" if args.providers == "auto" else [p.strip() for p in args.providers.split(",") if p.strip()]
    options = {}
    if args.backend == "onnxruntime":
        tri = {"auto": None, "on": True, "off": False, "host": True, "graph": False}
        options = {"host_postprocess": tri[args.postprocess], "io_binding": tri[args.io_binding],
                   "trt_fp16": args.trt_fp16 == "on"}
    try:
        runner = create_runner(model_dir, backend=args.backend, providers=providers, threads=args.threads,
                               **options)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    size = parse_size(args.size) if args.size else tuple(runner.input_size)
    extra = ""
    if args.backend == "onnxruntime":
        extra = (f" (labels on the {'host' if runner.host_postprocess else 'graph'}, "
                 f"IO binding {'on ' + runner.device_type if runner.io_binding else 'off'})")
    print(f"benchmarking {model_dir} on {runner.backend} {list(runner.providers)}{extra} at {size[0]}x{size[1]}")
    result = benchmark_runner(runner, size, intervals=intervals, repeats=args.repeats,
                              warmup=args.warmup, pipeline_frames=args.frames)
    meta = json.loads((model_dir / "model.json").read_text())
    gflops = (meta.get("metrics") or {}).get("gflops")
    result["gflops"] = gflops
    result["threads"] = args.threads
    if args.backend == "onnxruntime":
        result["runner_options"] = {"host_postprocess": runner.host_postprocess, "io_binding": runner.io_binding,
                                    "device": runner.device_type, "trt_fp16": args.trt_fp16 == "on"}
    result["ros_overhead_ms"] = None
    if not args.no_ros:
        from mpvss_ros.ros.overhead import measure_ros_overhead

        ros = measure_ros_overhead(model_dir, parse_size(args.ros_size), frames=args.ros_frames,
                                   backend=args.backend, threads=args.threads)
        result["ros_overhead_ms"] = ros["overhead_ms"]
        result["ros"] = ros
    result["peak_rss_mb"] = peak_rss_mb()
    result["model"] = str(model_dir)
    out.write_text(json.dumps(result, indent=2))
    print(f"key {result['key_ms']:.1f} ms, non-key {result['nonkey_ms']:.1f} ms "
          f"(x{result['key_over_nonkey']:.2f}; graphs alone {result['key_graph_ms']:.1f} / "
          f"{result['nonkey_graph_ms']:.1f} ms, x{result['graph_key_over_nonkey']:.2f}); per-frame {result['per_frame_fps']:.2f} FPS; "
          f"k=5 speed-up x{result['speedup_k5'] or float('nan'):.2f}; wrote {args.out}")
    if result.get("ros"):
        ros = result["ros"]
        print(f"ROS overhead at {ros['size'][0]}x{ros['size'][1]}: p50 {ros['overhead_ms']:.1f} ms "
              f"(in the node {ros['overhead_in_node_ms']:.1f} ms, transport {ros['overhead_transport_ms']:.1f} ms; "
              f"{100 * ros['overhead_fraction_of_mean_frame']:.0f} % of the average frame at k={ros['interval']})")
    return 0
