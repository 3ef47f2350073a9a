#!/usr/bin/env python3
"""Soak test of the segmentation node (not run in CI): stream many frames into a real
``mpvss node`` (ONNX Runtime) and report how its resident memory grows.

    python tools/soak.py --frames 10000 [--model DIR] [--frame-size 512x1024] [--rate 30]
                         [--out soak.json]

Without ``--model`` a random model is exported at ``--model-size`` (30-60 s). Frames are a
moving scene (key and propagated frames alike) published reliably at ``--rate`` Hz
(0 = the next frame once the previous result arrived: no drops). The node's RSS is read from
/proc after ``--warmup`` frames and every ``--sample-every`` frames; the report gives the growth
after warm-up (goal: < 50 MB over 10k frames), a least-squares slope in MB per 1000 frames,
the frame counts from /diagnostics and the latency from ~/class_stats. Progress goes to
stderr, the JSON report to stdout and ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def size_arg(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def moving_scene(size: tuple[int, int], count: int = 30) -> list[np.ndarray]:
    h, w = size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        img = base.copy()
        x = (i * w // count) % max(1, w - w // 4)
        img[h // 4: h // 2, x: x + w // 4] = (230, 200, 40)
        frames.append(img)
    return frames


class Client:
    """Publisher of frames, collector of ~/class_stats and /diagnostics (own context, spun on a thread)."""

    def __init__(self, ns: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from mpvss_ros.msg import ClassStats

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("mpvss_soak", context=self.context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, f"{ns}/image", qos)
        self.lock = threading.Lock()
        self.results = 0
        self.total_ms: list[float] = []
        self.diag: dict[str, str] = {}
        self.node.create_subscription(ClassStats, f"{ns}/mpvss_segmenter/class_stats", self._on_stats,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", self._on_diag, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # context shut down while spinning
            pass

    def _on_stats(self, msg):
        with self.lock:
            self.results += 1
            self.total_ms.append(msg.total_ms)

    def _on_diag(self, msg):
        from mpvss_ros.ros.diagnostics import values_of
        with self.lock:
            self.diag = values_of(msg.status[0])

    def close(self):
        self.context.try_shutdown()
        self.thread.join(5)


def wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def soak(args) -> dict:
    from mpvss_ros.ros.conversions import rgb_to_image
    from mpvss_ros.ros.node_process import stop_process
    from std_msgs.msg import Header

    ns = f"/soak{os.getpid()}"
    cmd = [sys.executable, "-m", "mpvss_ros.cli", "node", "--ros-args", "-r", f"__ns:={ns}",
           "-r", f"image:={ns}/image", "-r", f"/diagnostics:={ns}/diagnostics",
           "-p", f"model:={args.model}", "-p", "input_reliability:=reliable",
           "-p", f"schedule.interval:={args.interval}", "-p", f"threads:={args.threads}"]
    log = open(args.log, "wb")
    node = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    client = Client(ns)
    try:
        wait(lambda: client.pub.get_subscription_count() > 0 or node.poll() is not None, 120, "the node")
        if node.poll() is not None:
            raise RuntimeError(f"node exited with {node.returncode}; see {args.log}")
        frames = [rgb_to_image(f, Header(frame_id="soak")) for f in moving_scene(args.frame_size)]
        samples: list[tuple[int, float]] = []
        start = time.monotonic()
        for i in range(args.frames):
            msg = frames[i % len(frames)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(i * 1e9 / 30), 10**9)
            if args.rate > 0:
                client.pub.publish(msg)
                time.sleep(max(0.0, start + (i + 1) / args.rate - time.monotonic()))
            else:  # flow control: one frame in flight
                before = client.results
                client.pub.publish(msg)
                wait(lambda: client.results > before or node.poll() is not None, 120, f"result {i}")
            if node.poll() is not None:
                raise RuntimeError(f"node exited with {node.returncode} at frame {i}; see {args.log}")
            if i + 1 == args.warmup or (i + 1 > args.warmup and (i + 1) % args.sample_every == 0):
                samples.append((i + 1, rss_mb(node.pid)))
                print(f"frame {i + 1}/{args.frames}: RSS {samples[-1][1]:.1f} MB, results {client.results}, "
                      f"{(i + 1) / (time.monotonic() - start):.1f} frames/s", file=sys.stderr, flush=True)
        seconds = time.monotonic() - start
        time.sleep(3.0)  # two diagnostics periods: the counters settle
        samples.append((args.frames, rss_mb(node.pid)))
        n = np.array([s[0] for s in samples], float)
        mb = np.array([s[1] for s in samples])
        slope = float(np.polyfit(n, mb, 1)[0] * 1000) if len(samples) > 2 else 0.0
        with client.lock:
            lat = np.array(client.total_ms or [0.0])
            diag = dict(client.diag)
        return {
            "frames_sent": args.frames, "seconds": round(seconds, 1),
            "frame_size": list(args.frame_size), "rate_hz": args.rate, "model": str(args.model),
            "frames_received": int(diag.get("frames_received", 0)),
            "frames_processed": int(diag.get("frames_processed", 0)),
            "frames_dropped": int(diag.get("frames_dropped", 0)),
            "frames_bad": int(diag.get("frames_bad", 0)), "frames_failed": int(diag.get("frames_failed", 0)),
            "results_received": client.results,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))},
            "rss_mb": {"after_warmup": float(mb[0]), "end": float(mb[-1]), "max": float(mb.max())},
            "rss_growth_mb": float(mb[-1] - mb[0]), "rss_slope_mb_per_1000_frames": round(slope, 3),
            "goal_growth_mb": 50.0, "ok": bool(mb[-1] - mb[0] < 50.0 and node.poll() is None),
            "samples": [[int(a), round(float(b), 1)] for a, b in samples],
        }
    finally:
        client.close()
        stop_process(node, timeout_s=30.0)
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=200, help="frames before the first RSS sample")
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--rate", type=float, default=30.0, help="Hz; 0 = one frame in flight (no drops)")
    p.add_argument("--frame-size", type=size_arg, default=(512, 1024))
    p.add_argument("--model", type=Path, help="model directory (default: export a random one)")
    p.add_argument("--model-size", type=size_arg, default=(128, 256))
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "mpvss_soak_node.log")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.frames <= args.warmup:
        p.error(f"--frames ({args.frames}) must exceed --warmup ({args.warmup})")
    os.environ.setdefault("ROS_DOMAIN_ID", str(140 + os.getpid() % 60))  # away from the tests' 10..99
    if args.model is None:
        from mpvss_ros.model.export import export_random_model
        print(f"exporting a random {args.model_size[0]}x{args.model_size[1]} model ...", file=sys.stderr)
        args.model = export_random_model(Path(tempfile.mkdtemp(prefix="mpvss_soak_")) / "model",
                                         size=args.model_size)
    elif not (args.model / "model.json").is_file():
        p.error(f"not a model directory (no model.json): {args.model}")
    report = soak(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
