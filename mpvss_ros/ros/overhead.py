"""ROS overhead: what DDS transport, image conversion and message building add to inference.

A real loop: this process publishes sensor_msgs/Image frames, a separate `mpvss node` process
segments them and publishes its outputs, this process receives them. For each frame,
overhead = (labels received − image sent) − the node's own inference time (from ClassStats).
Frames are sent one at a time (the next after the previous result arrives) so no queueing
inflates the numbers. The node gets the bench's thread count, and both ends keep large message
buffers on the heap as the node does (`ros.large_buffers`). The overhead is split into the
node's own share (received -> results ready to publish: conversion, resizing both ways) and
the rest (serialising, DDS transport both ways, deserialising, building the output messages);
it is reported against the median frame (a non-key frame at interval 5) and against the
average frame of the schedule.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _start_node(model_dir: Path, backend: str, namespace: str, interval: int, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mpvss_ros.cli", "node", "--ros-args",
           "-r", f"__ns:={namespace}", "-r", "image:=/bench/image_raw",
           "-p", f"model:={model_dir}", "-p", f"backend:={backend}", "-p", f"threads:={threads}",
           "-p", "schedule.mode:=interval", "-p", f"schedule.interval:={interval}",
           "-p", "input_reliability:=reliable"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


def measure_ros_overhead(model_dir: Path, size: tuple[int, int], frames: int = 30,
                         backend: str = "onnxruntime", interval: int = 5, threads: int = 0,
                         timeout_s: float = 120.0) -> dict:
    """``threads``: the node's intra-op threads, the same as the runner timed beside it (a node with
    the backend default on a CPU set narrower than the machine oversubscribes it)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mpvss_ros.evaluation.benchmark import street_frames
    from mpvss_ros.msg import ClassStats
    from mpvss_ros.ros.large_buffers import keep_large_buffers_on_heap
    from mpvss_ros.ros.node_process import stop_process

    keep_large_buffers_on_heap()  # as the node does: a camera driver reuses its frame buffers
    namespace = f"/bench{os.getpid()}"
    node_proc = _start_node(Path(model_dir).resolve(), backend, namespace, interval, threads)
    rclpy.init(args=None)
    node = rclpy.create_node(f"mpvss_bench_{os.getpid()}")
    try:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Image, "/bench/image_raw", qos)
        received: dict[int, float] = {}
        stats: dict[int, float] = {}

        def on_labels(msg):
            received[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = time.perf_counter()

        def on_stats(msg):
            stats[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = (msg.inference_ms, msg.total_ms)

        node.create_subscription(Image, f"{namespace}/mpvss_segmenter/labels", on_labels, qos)
        node.create_subscription(ClassStats, f"{namespace}/mpvss_segmenter/class_stats", on_stats, qos)
        imgs = street_frames(size, 8)
        h, w = size
        deadline = time.monotonic() + timeout_s
        # Wait until the node is Active and subscribed.
        while pub.get_subscription_count() == 0:
            if node_proc.poll() is not None:
                raise RuntimeError("node exited: " + node_proc.stderr.read().decode()[-500:])
            if time.monotonic() > deadline:
                raise TimeoutError("node did not subscribe to the bench image topic")
            rclpy.spin_once(node, timeout_sec=0.1)
        latency, overhead, in_node = [], [], []
        for i in range(frames + 2):  # the first two warm up
            msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, is_bigendian=0)
            msg.header.frame_id = "camera"
            msg.header.stamp.sec, msg.header.stamp.nanosec = i + 1, 0
            msg.data = imgs[i % len(imgs)].tobytes()
            key = (i + 1) * 10**9
            sent = time.perf_counter()
            pub.publish(msg)
            while (key not in received or key not in stats) and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            if key not in received or key not in stats:
                raise TimeoutError(f"no output for frame {i} within {timeout_s:.0f} s")
            if i >= 2:
                e2e = (received[key] - sent) * 1e3
                latency.append(e2e)
                inference_ms, total_ms = stats[key]
                overhead.append(e2e - inference_ms)
                in_node.append(total_ms - inference_ms)
        inference = [stats[(i + 1) * 10**9][0] for i in range(2, frames + 2)]
        frame_ms = statistics.median(latency)
        return {
            "size": [h, w], "frames": frames, "interval": interval, "threads": threads,
            "latency_ms_p50": frame_ms,
            "inference_ms_p50": statistics.median(inference),
            "overhead_ms": statistics.median(overhead),
            "overhead_fraction": statistics.median(overhead) / frame_ms,
            "overhead_ms_p90": float(np.percentile(overhead, 90)),
            # the same against the average frame of the schedule (key frames included)
            "overhead_fraction_of_mean_frame": statistics.mean(overhead) / statistics.mean(latency),
            # the node's share (conversion, resizing, message building; received -> published)
            # and the rest (publishing, DDS transport both ways, receiving)
            "overhead_in_node_ms": statistics.median(in_node),
            "overhead_transport_ms": statistics.median(overhead) - statistics.median(in_node),
        }
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop_process(node_proc)
