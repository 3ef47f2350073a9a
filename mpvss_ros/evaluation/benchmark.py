"""Latency and throughput of a model through the runtime, all measured in one run.

Key and non-key latency are medians over rounds shaped like a k=5 stretch (one key frame, four
frames propagated from it), whole frames and graphs alone interleaved in each round; pipeline FPS runs the
whole `VideoSegmenter` (resize, schedule, inference, output resize) over a generated street
sequence (the data generator's scenes: a driving camera, moving objects) at the camera size for
each key interval, so the ratios come from one process, one machine state. Street content matters:
the host post-processing costs more where class boundaries are dense, and noise textures give a
trained model far more boundaries than a street does.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import numpy as np

from mpvss_ros.runtime.schedule import KeyFrameSchedule
from mpvss_ros.runtime.segmenter import VideoSegmenter

PROPAGATED = 4  # non-key frames per timing round: a k=5 stretch


def moving_frames(size: tuple[int, int], count: int, seed: int = 0) -> list[np.ndarray]:
    """A textured scene panning 3 px/frame, so propagation has real motion to follow."""
    h, w = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, (w + 3 * count) // 8 + 2, 3), dtype=np.uint8)
    import cv2

    big = cv2.resize(base, (base.shape[1] * 8, base.shape[0] * 8), interpolation=cv2.INTER_LINEAR)
    return [np.ascontiguousarray(big[:h, 3 * i: 3 * i + w]) for i in range(count)]


def street_frames(size: tuple[int, int], count: int, seed: int = 7) -> list[np.ndarray]:
    """`count` consecutive frames of one generated street sequence at `size` (rendered at most
    512x1024, then resized: rendering is ~0.5 s per 512x1024 frame)."""
    import cv2

    from mpvss_ros.data.render import Renderer
    from mpvss_ros.data.scene import make_scene

    h, w = size
    f = min(1.0, 512 / h, 1024 / w)
    render_size = (max(8, round(h * f)), max(8, round(w * f)))
    renderer = Renderer(make_scene(np.random.default_rng([seed, 0]), count, render_size))
    frames = []
    for t in range(count):
        image = renderer.render(t)[0]
        if render_size != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        frames.append(np.ascontiguousarray(image))
    return frames


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    # the cores this process may run on: one when pinned (`taskset -c 1`), as the ablation does
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_affinity": affinity, "platform": platform.platform(),
            "python": platform.python_version()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark_runner(runner, camera_size: tuple[int, int], intervals=(1, 2, 5, 10),
                     repeats: int = 20, warmup: int = 3, pipeline_frames: int = 40,
                     progress=print) -> dict:
    """Measure key / non-key latency and pipeline FPS per key interval."""
    from mpvss_ros.runtime.preprocess import resize_image

    progress(f"rendering {max(pipeline_frames, PROPAGATED + 1)} street frames at {camera_size[0]}x{camera_size[1]}")
    frames = street_frames(camera_size, max(pipeline_frames, PROPAGATED + 1))
    # Key and non-key frames are timed in rounds shaped like a k=5 stretch of the stream (a key
    # frame, then four frames propagated from it), whole frames and graphs alone interleaved: a
    # slow spell of a shared machine then lands on both kinds instead of skewing their ratio.
    model_in = [resize_image(f, tuple(runner.input_size)) for f in frames[:PROPAGATED + 1]]
    x = [runner.preprocess(m) for m in model_in]
    progress(f"key / non-key frame latency ({repeats} rounds of 1 + {PROPAGATED} frames after {warmup} warm-up)")
    times = {"key": [], "nonkey": [], "key_graph": [], "nonkey_graph": []}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        times[name].append((time.perf_counter() - t0) * 1e3)
        return result

    for r in range(warmup + repeats):
        key_state, _ = timed("key", runner.key_frame, model_in[0])
        for m in model_in[1:]:
            timed("nonkey", runner.propagate, key_state, m)
        # the graphs alone: the inference engine's time, without the host pre/post-processing
        # that both frame kinds share (input planes, full-resolution labels)
        timed("key_graph", runner.run_graphs, None, x[0])
        for xi in x[1:]:
            timed("nonkey_graph", runner.run_graphs, key_state, xi)
        if r < warmup:
            for values in times.values():
                values.clear()
    key_ms, nonkey_ms = statistics.median(times["key"]), statistics.median(times["nonkey"])
    key_graph_ms, nonkey_graph_ms = statistics.median(times["key_graph"]), statistics.median(times["nonkey_graph"])
    key_times, nonkey_times = times["key"], times["nonkey"]
    pipeline = {}
    for k in intervals:
        seg = VideoSegmenter(runner, KeyFrameSchedule.create(mode="interval", interval=k))
        seg.process(frames[0], 0.0)  # warm the path; not counted
        seg.reset()
        n = max(pipeline_frames, 2 * k)
        t0 = time.perf_counter()
        for i in range(n):
            seg.process(frames[i % len(frames)], i / 30.0)
        pipeline[str(k)] = n / (time.perf_counter() - t0)
        progress(f"pipeline k={k}: {pipeline[str(k)]:.2f} FPS over {n} frames")
    per_frame = pipeline.get("1")
    return {
        "key_ms": key_ms,
        "nonkey_ms": nonkey_ms,
        "key_over_nonkey": key_ms / nonkey_ms,
        "key_ms_p90": float(np.percentile(key_times, 90)),
        "nonkey_ms_p90": float(np.percentile(nonkey_times, 90)),
        "key_graph_ms": key_graph_ms,
        "nonkey_graph_ms": nonkey_graph_ms,
        "graph_key_over_nonkey": key_graph_ms / nonkey_graph_ms,
        "per_frame_fps": per_frame,
        "pipeline_fps": pipeline,
        "speedup_k5": (pipeline["5"] / per_frame) if per_frame and "5" in pipeline else None,
        "camera_size": list(camera_size),
        "model_input_size": list(runner.input_size),
        "backend": runner.backend,
        "providers": list(runner.providers),
        "machine": machine_info(),
    }


def plot_fps_vs_interval(results: dict[str, dict], path) -> None:
    """PNG of pipeline FPS against the key-frame interval, one line per labelled bench.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, bench in results.items():
        ks = sorted(int(k) for k in bench["pipeline_fps"])
        fps = [bench["pipeline_fps"][str(k)] for k in ks]
        ax.plot(ks, fps, marker="o", label=f"{label} (key {bench['key_ms']:.0f} ms, "
                                           f"non-key {bench['nonkey_ms']:.0f} ms)")
        if bench.get("key_ms") and bench.get("nonkey_ms"):  # what the latencies alone predict
            ideal = [1e3 * k / (bench["key_ms"] + (k - 1) * bench["nonkey_ms"]) for k in ks]
            ax.plot(ks, ideal, linestyle=":", color=ax.lines[-1].get_color())
    ax.set_xlabel("key-frame interval k")
    ax.set_ylabel("frames per second")
    ax.set_xticks(sorted({int(k) for b in results.values() for k in b["pipeline_fps"]}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="measured (dotted: from key/non-key latency)", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
