"""`mpvss bench` end to end on a tiny random model: every bench.json key, values consistent."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mpvss_ros.model.export import export_random_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_model")
    export_random_model(out, size=(64, 128))
    return out


def test_bench_writes_design_keys(tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpvss_ros.cli", "bench", "--model", str(tiny_model), "--size", "96x192",
         "--out", str(out), "--repeats", "3", "--warmup", "1", "--frames", "10",
         "--ros-size", "128x256", "--ros-frames", "4", "--threads", "1"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads(out.read_text())
    for key in ("key_ms", "nonkey_ms", "key_over_nonkey", "per_frame_fps", "pipeline_fps", "speedup_k5",
                "ros_overhead_ms", "backend", "providers", "machine"):
        assert key in bench, key
    assert bench["key_ms"] > 0 and bench["nonkey_ms"] > 0
    assert bench["key_over_nonkey"] == pytest.approx(bench["key_ms"] / bench["nonkey_ms"])
    assert bench["key_graph_ms"] > 0 and bench["nonkey_graph_ms"] > 0  # the graphs alone
    affinity = bench["machine"]["cpu_affinity"]
    assert affinity and set(affinity) <= set(range(bench["machine"]["cores"]))
    assert bench["graph_key_over_nonkey"] == pytest.approx(bench["key_graph_ms"] / bench["nonkey_graph_ms"])
    assert set(bench["pipeline_fps"]) == {"1", "2", "5", "10"}
    assert bench["per_frame_fps"] == bench["pipeline_fps"]["1"]
    assert bench["speedup_k5"] == pytest.approx(bench["pipeline_fps"]["5"] / bench["pipeline_fps"]["1"])
    assert bench["camera_size"] == [96, 192] and bench["model_input_size"] == [64, 128]
    assert bench["backend"] == "onnxruntime" and "CPUExecutionProvider" in bench["providers"]
    assert bench["gflops"]["key"] > bench["gflops"]["nonkey"] > 0
    ros = bench["ros"]
    assert ros["size"] == [128, 256] and ros["frames"] == 4
    assert 0 < ros["inference_ms_p50"] < ros["latency_ms_p50"]
    assert bench["ros_overhead_ms"] == ros["overhead_ms"] > 0
    assert ros["threads"] == bench["threads"] == 1
    assert ros["overhead_in_node_ms"] > 0
    assert 0 < ros["overhead_fraction_of_mean_frame"] < 1
    assert ros["overhead_in_node_ms"] + ros["overhead_transport_ms"] == pytest.approx(ros["overhead_ms"])
    assert f"ROS overhead at 128x256: p50 {ros['overhead_ms']:.1f} ms" in proc.stdout  # not only in the JSON


def test_ros_loop_node_runs_with_the_bench_threads(monkeypatch):
    """The node of the ROS loop gets the runner's thread count (a node with the backend default,
    pinned to fewer cores than the machine has, oversubscribes them and inflates frame time)."""
    from mpvss_ros.ros import overhead

    seen = {}
    monkeypatch.setattr(overhead.subprocess, "Popen", lambda cmd, **kw: seen.setdefault("cmd", cmd))
    overhead._start_node("/m", "onnxruntime", "/ns", 5, 1)
    cmd = seen["cmd"]
    assert cmd[cmd.index("threads:=1") - 1] == "-p"
    assert "schedule.interval:=5" in cmd and "model:=/m" in cmd


def test_bench_rejects_a_non_model_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "bench", "--model", str(tmp_path),
                           "--out", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no model.json" in proc.stderr and proc.stderr.count("\n") == 1


def test_street_frames_are_a_moving_street_at_the_camera_size():
    from mpvss_ros.evaluation.benchmark import street_frames

    frames = street_frames((96, 160), 3)
    again = street_frames((96, 160), 3)
    assert [f.shape for f in frames] == [(96, 160, 3)] * 3 and frames[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # seeded
    moved = np.abs(frames[2].astype(int) - frames[0].astype(int)).mean()
    assert 0.5 < moved < 60  # the camera moves; it is the same street, not new noise
    big = street_frames((1024, 2048), 1)[0]  # rendered at 512x1024, resized
    assert big.shape == (1024, 2048, 3)
