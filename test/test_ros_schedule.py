"""Key-frame schedules of the running node over DDS: interval, timer (message time), motion,
~/request_key_frame and run-time parameter changes. Key flags are read from ~/class_stats;
frames are sent one at a time (each waits for its result) so no frame is dropped."""
from __future__ import annotations

import numpy as np
import pytest
from mpvss_ros.msg import ClassStats
from test_ros_helpers import NODE, RosClient, node_command, rgb_image_msg, stop_process, wait_for

pytestmark = pytest.mark.ros
STATS = f"{NODE}/class_stats"


@pytest.fixture(scope="module")
def node(ros_domain, tmp_path_factory):
    """One autostarted node for the module (each test starts a new stream: new frame_id)."""
    import subprocess

    log = tmp_path_factory.mktemp("node") / "node.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(node_command("-p", f"model:={log.parent}", "-r", "image:=/image",
                                             autostart=True), stdout=f, stderr=subprocess.STDOUT)
    client = RosClient()
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active")
        client.subscribe(STATS, ClassStats)
        client.wait_matched(STATS)
        client.pub = client.image_publisher("/image")
        yield client
    finally:
        client.close()
        stop_process(proc)


def _image(kind: str) -> np.ndarray:
    h, w = 64, 128
    if kind == "gradient":
        row = np.linspace(0, 255, w, dtype=np.float32)
        return np.repeat(np.repeat(row[None, :, None], h, 0), 3, 2).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    checker = (((yy // 16) + (xx // 16)) % 2 * 255).astype(np.uint8)  # a different scene
    return np.repeat(checker[..., None], 3, 2)


def _keys(client, frames, stream: str) -> list[bool]:
    """Send (image, stamp_s) pairs one at a time; the key flag of each result."""
    flags = []
    for image, stamp in frames:
        stats = client.send_and_wait(client.pub, rgb_image_msg(image, stamp, stream), STATS)
        assert stats.header.frame_id == stream
        flags.append(stats.key_frame)
    return flags


def _set(client, **values):
    results = client.set_parameters(**values)
    assert all(r.successful for r in results), [r.reason for r in results]


def test_interval_schedule_exact_pattern_and_runtime_change(node):
    _set(node, schedule__mode="interval", schedule__interval=3)
    img = _image("gradient")
    flags = _keys(node, [(img, 10.0 + 0.1 * i) for i in range(20)], "interval")
    assert flags == [i % 3 == 0 for i in range(20)]
    # frames since key count up between key frames
    got = [m.frames_since_key for m in node.messages(STATS)[-20:]]
    assert got == [i % 3 for i in range(20)]

    # change the interval through the parameter service while running: next key frames follow
    # the new interval, counted from the last key frame (frame 18 above; frame 19 was 1 after it)
    _set(node, schedule__interval=4)
    flags = _keys(node, [(img, 20.0 + 0.1 * i) for i in range(10)], "interval")
    assert flags == [False, False, True, False, False, False, True, False, False, False]


def test_request_key_frame_forces_a_key_frame(node):
    _set(node, schedule__mode="interval", schedule__interval=100)
    img = _image("gradient")
    assert _keys(node, [(img, 30.0 + 0.1 * i) for i in range(3)], "request") == [True, False, False]
    reply = node.request_key_frame()
    assert reply.success
    assert _keys(node, [(img, 31.0 + 0.1 * i) for i in range(3)], "request") == [True, False, False]
    # also in timer and motion mode
    for mode in ("timer", "motion"):
        _set(node, schedule__mode=mode, schedule__period_s=1000.0, schedule__max_interval=1000)
        assert node.request_key_frame().success
        assert _keys(node, [(img, 40.0 + 0.1 * i) for i in range(2)] if mode == "timer"
                     else [(img, 50.0 + 0.1 * i) for i in range(2)], "request") == [True, False]


def test_timer_schedule_follows_message_time(node):
    _set(node, schedule__mode="timer", schedule__period_s=1.0)
    img = _image("gradient")
    # frames 0.1 s apart in message time (sent as fast as results come back): only the first
    # is a key frame until 1.0 s of message time has passed
    t = [100.0 + 0.1 * i for i in range(10)] + [101.0, 101.5, 102.2, 102.3, 103.3]
    flags = _keys(node, [(img, s) for s in t], "timer")
    assert flags == [True] + [False] * 9 + [True, False, True, False, True]
    # message time going backwards (a bag loop) forces a key frame
    assert _keys(node, [(img, 50.0), (img, 50.1)], "timer") == [True, False]


def test_motion_schedule_keys_on_scene_cut_not_on_static_scene(node):
    _set(node, schedule__mode="motion", schedule__motion_threshold=0.08,
         schedule__min_interval=1, schedule__max_interval=1000)
    a, b = _image("gradient"), _image("checker")
    frames = [(a, 200.0 + 0.1 * i) for i in range(8)] + [(b, 201.0 + 0.1 * i) for i in range(6)]
    flags = _keys(node, frames, "motion")
    assert flags == [True] + [False] * 7 + [True] + [False] * 5
    # the resolution changing forces a key frame too
    small = np.ascontiguousarray(b[:32, :64])
    assert _keys(node, [(small, 202.0), (small, 202.1)], "motion") == [True, False]
