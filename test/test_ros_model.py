"""The node with a real (randomly initialised, exported: slow to build, ~1 min) MPVSS model, started the way users
start it (`python -m mpvss_ros.cli node --params config/segment.yaml --ros-args ...`): labels
over DDS equal the offline VideoSegmenter's labels for the same frames, key and propagated
frames alike, for the ONNX Runtime and the torch backends."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from mpvss_ros.model.export import export_random_model
from mpvss_ros.msg import ClassStats
from mpvss_ros.ros.conversions import image_msg_to_array
from mpvss_ros.runtime.runners import create_runner
from mpvss_ros.runtime.schedule import KeyFrameSchedule
from mpvss_ros.runtime.segmenter import VideoSegmenter
from sensor_msgs.msg import Image
from test_ros_helpers import NODE, RosClient, rgb_image_msg, wait_for

from conftest import REPO

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_random_model(tmp_path_factory.mktemp("model"), size=(64, 128))


def _frames():
    """A moving scene: a bright square sliding over a gradient, at 96x160 (resized to 64x128)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 80, (96, 160, 3), dtype=np.uint8)
    out = []
    for i in range(6):
        img = base.copy()
        img[20:60, 10 + 8 * i:50 + 8 * i] = (230, 200, 40)
        out.append(img)
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_labels_over_dds_equal_offline_video_segmenter(ros_domain, spawn, model_dir, backend):
    node = spawn([sys.executable, "-m", "mpvss_ros.cli", "node", "--params",
                  str(REPO / "config" / "segment.yaml"), "--ros-args", "-p", f"model:={model_dir}",
                  "-p", f"backend:={backend}", "-p", "schedule.interval:=3", "-r", "image:=/image"],
                 name=f"node-{backend}")
    client = RosClient()
    try:
        wait_for(lambda: client.get_state() == "active", 120, f"node active ({node.log_text()})")
        client.subscribe(f"{NODE}/labels", Image)
        client.subscribe(f"{NODE}/class_stats", ClassStats)
        client.subscribe(f"{NODE}/confidence", Image)
        client.wait_matched(f"{NODE}/confidence")
        client.wait_matched(f"{NODE}/labels")
        client.wait_matched(f"{NODE}/class_stats")
        pub = client.image_publisher("/image")

        runner = create_runner(model_dir, backend, providers="auto")
        offline = VideoSegmenter(runner, KeyFrameSchedule.create(interval=3))
        keys, confidences = [], []
        for i, rgb in enumerate(_frames()):
            stamp = 5.0 + i / 30
            msg = client.send_and_wait(pub, rgb_image_msg(rgb, stamp, "cam"), f"{NODE}/labels")
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, round(i / 30 * 1e9))
            assert msg.header.frame_id == "cam"
            expected = offline.process(rgb, stamp, stream="cam")
            got = image_msg_to_array(msg)
            assert got.shape == (96, 160)
            # identical except where float differences between two processes flip an argmax tie
            np.testing.assert_array_equal(got, expected.labels)
            # a random model's labels are nearly constant; its confidence map is not, and must
            # match bit for bit too (same frame, same resize, same key state, same graph)
            conf = wait_for(lambda: [m for m in client.messages(f"{NODE}/confidence")
                                     if m.header.stamp == msg.header.stamp], 30, "confidence")[0]
            np.testing.assert_array_equal(image_msg_to_array(conf), expected.confidence)
            confidences.append(expected.confidence)
            keys.append(expected.key_frame)
        assert keys == [True, False, False, True, False, False]
        # propagated frames are not copies of their key frame
        assert not np.array_equal(confidences[0], confidences[1])
        stats = wait_for(lambda: len(client.messages(f"{NODE}/class_stats")) >= 6 and
                         client.messages(f"{NODE}/class_stats"), 30, "class_stats")
        assert [s.key_frame for s in stats[:6]] == keys
        assert client.change_state(Transition.TRANSITION_DEACTIVATE) is True
        assert client.change_state(Transition.TRANSITION_CLEANUP) is True
    finally:
        client.close()
