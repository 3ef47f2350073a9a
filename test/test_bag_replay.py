"""`mpvss bag evaluate` over real DDS against the real SegmenterNode driven by a ScriptedRunner
(labels = red channel // 13 of the key frame; test/test_ros_helpers.py), attached with --attach.

The expected numbers are worked out here from the scripted runner's rule, so the tests check
the replay's stamp matching, key-frame alignment at sequence starts, scoring and report files.
"""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mpvss_ros.data import bag
from mpvss_ros.data.labels import TRAIN_ID_TO_LABEL_ID
from test_ros_helpers import node_command

pytestmark = pytest.mark.ros

H, W = 32, 64  # the ScriptedRunner's input size: nothing is resized
# Per-frame class (uniform frames): the scripted runner predicts the key frame's class.
CLASSES = {"a": [0, 1, 2, 3, 4], "b": [5, 5, 6, 6, 7]}


def _frames(with_ground_truth: bool):
    frames = []
    for city, classes in CLASSES.items():
        for f, c in enumerate(classes):
            image = np.zeros((H, W, 3), np.uint8)
            image[..., 0] = 13 * c + 6
            image[..., 1] = 40 * f  # confidence varies, labels do not
            gt = np.full((H, W), TRAIN_ID_TO_LABEL_ID[c], np.uint8) if with_ground_truth else None
            if gt is not None:
                gt[:4, :4] = 0  # labelId 0 = unlabeled -> ignored
            frames.append(bag.BagFrame(f"{city}_000001_{f:06d}", image, gt))
    return frames


def _expected_miou(interval: int) -> float:
    """Confusion over all frames with key frames at 0, k, 2k, ... of each sequence."""
    inter, gt_px, pred_px = np.zeros(19), np.zeros(19), np.zeros(19)
    pixels = H * W - 16
    for classes in CLASSES.values():
        for f, c in enumerate(classes):
            p = classes[f - f % interval]
            gt_px[c] += pixels
            pred_px[p] += pixels
            inter[c] += pixels * (p == c)
    union = gt_px + pred_px - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


def _evaluate(bag_path, out, *extra):
    return subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "bag", "evaluate", str(bag_path),
                           "--out", str(out), "--attach", "--quiet", "--startup-timeout", "60", *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def scripted_node(ros_domain, spawn, tmp_path):
    def start(interval: int, *ros_args: str):
        model = tmp_path / "model"
        model.mkdir(exist_ok=True)
        return spawn(node_command("-p", f"model:={model}", "-p", "use_sim_time:=true",
                                  "-p", f"schedule.interval:={interval}",
                                  "-r", "image:=/camera/image_raw", *ros_args, autostart=True), name="node")
    return start


def test_attached_replay_scores_every_frame_with_aligned_key_frames(scripted_node, tmp_path):
    interval = 2
    node = scripted_node(interval)
    bag.write_bag(_frames(True), tmp_path / "bag", rate_hz=10.0, progress=False)
    out = tmp_path / "report" / "report.json"
    run = _evaluate(tmp_path / "bag", out, "--save-predictions", str(tmp_path / "pred"))
    assert run.returncode == 0, run.stderr + node.log_text()
    report = json.loads(out.read_text())

    assert report["frames"] == 10 and report["answered"] == 10
    assert report["dropped"] == 0 and report["timeouts"] == 0
    assert report["ground_truth_frames"] == 10
    assert report["ground_truth_frames_without_prediction"] == 0
    assert report["data"]["sequences"] == 2 and report["data"]["annotated_frames"] == 10
    # Keys at frames 0, 2, 4 of each 5-frame sequence only if the replay re-aligns the schedule
    # at each sequence start (the node counts frames across the whole bag otherwise).
    assert report["key_fraction"] == pytest.approx(0.6)
    (result,) = report["results"]
    assert (result["method"], result["interval"]) == ("query-flow", interval)
    assert result["miou"] == pytest.approx(_expected_miou(interval), abs=1e-6)
    assert result["per_class_iou"]["road"] == pytest.approx(0.5)  # train id 0: predicted on 2 frames, true on 1
    assert result["per_class_iou"]["sidewalk"] == 0.0
    assert result["vc8"] is None  # 5-frame sequences have no 8-frame window (as offline)
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    # Predictions per frame: a [0,0,2,2,4], b [5,5,6,6,7]: the whole image changes label
    # between frames 1->2 and 3->4 of each sequence, 4 of the 8 consecutive pairs.
    assert report["stability"]["frame_pairs"] == 8
    assert report["stability"]["changed_pixel_fraction"] == pytest.approx(4 / 8)

    # Saved predictions are the scripted labels of each frame's key frame, in labelIds.
    saved = cv2.imread(str(tmp_path / "pred" / "a_000001_000003_pred_labelIds.png"), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (H, W) and (saved == TRAIN_ID_TO_LABEL_ID[2]).all()

    # The Markdown summary and the pictures exist and are real PNGs of sensible size.
    md = out.with_suffix(".md").read_text()
    assert "query-flow" in md and "latency p50" in md
    for suffix in ("per_class_iou", "latency", "miou_over_time", "overlay_strip"):
        png = cv2.imread(str(out.parent / f"report_{suffix}.png"))
        assert png is not None and png.shape[0] > 20 and png.shape[1] > 100, suffix
        assert f"report_{suffix}.png" in md
    strip = cv2.imread(str(out.parent / "report_overlay_strip.png"))
    assert strip.shape[1] == 3 * W + 8  # input | labels | ground truth at full size


def test_compressed_bag_replays_into_a_compressed_transport_node(scripted_node, tmp_path):
    """A PNG CompressedImage bag goes out on /camera/image_raw/compressed; a node with
    input_transport:=compressed scores exactly as the raw bag does (PNG is lossless)."""
    interval = 2
    node = scripted_node(interval, "-p", "input_transport:=compressed")
    bag.write_bag(_frames(True), tmp_path / "bag", rate_hz=10.0, progress=False, image_format="png")
    out = tmp_path / "report.json"
    run = _evaluate(tmp_path / "bag", out)
    assert run.returncode == 0, run.stderr + node.log_text()
    report = json.loads(out.read_text())
    assert report["frames"] == report["answered"] == 10 and report["timeouts"] == 0
    assert report["data"]["image_topic"] == "/camera/image_raw/compressed"
    assert report["data"]["image_type"] == "sensor_msgs/msg/CompressedImage"
    assert report["replay"]["input_transport"] == "compressed"
    assert report["key_fraction"] == pytest.approx(0.6)
    (result,) = report["results"]
    assert result["miou"] == pytest.approx(_expected_miou(interval), abs=1e-6)


def test_camera_bag_without_ground_truth_reports_speed_and_stability(scripted_node, tmp_path):
    node = scripted_node(5, "-r", "__ns:=/robot1")  # outputs under /robot1/mpvss_segmenter/
    frames = _frames(False)
    bag.write_bag(frames, tmp_path / "bag", rate_hz=10.0, progress=False)
    out = tmp_path / "cam.json"
    run = _evaluate(tmp_path / "bag", out, "--rate", "15", "--node-namespace", "robot1")
    assert run.returncode == 0, run.stderr + node.log_text()
    assert "n/a (no ground truth)" in run.stdout
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["miou"] is None and result["per_class_iou"] is None and result["vc8"] is None
    assert report["ground_truth_frames"] == 0
    assert report["frames"] == 10
    assert report["answered"] + report["dropped"] == 10 and report["answered"] > 0
    assert 0.0 < report["key_fraction"] <= 1.0
    assert report["stability"]["changed_pixel_fraction"] is not None
    assert report["replay"]["pacing"] == "15 Hz" and report["replay"]["namespace"] == "robot1"
    assert not (tmp_path / "cam_per_class_iou.png").exists()  # nothing to plot without ground truth
    assert (tmp_path / "cam_latency.png").is_file() and (tmp_path / "cam_overlay_strip.png").is_file()


def test_evaluate_rejects_bad_input(tmp_path, capsys):
    from mpvss_ros.cli import main

    bag.write_bag(_frames(False)[:2], tmp_path / "bag", progress=False)
    bag.write_bag(_frames(False)[:2], tmp_path / "png", progress=False, image_format="png")
    cases = [
        ([str(tmp_path / "bag"), "--out", str(tmp_path / "r.json"), "--set", "input_transport:=compressed"],
         "holds sensor_msgs/Image messages"),
        ([str(tmp_path / "png"), "--out", str(tmp_path / "r.json"), "--set", "input_transport:=raw"],
         "holds sensor_msgs/CompressedImage messages"),
        ([str(tmp_path / "bag"), "--out", str(tmp_path / "r.json"), "--image-topic", "/camera/camera_info"],
         "not sensor_msgs/msg/Image"),
        ([str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")], "bag not found"),
        ([str(tmp_path / "bag"), "--out", str(tmp_path / "r.json"), "--rate", "-1"], "--rate"),
        ([str(tmp_path / "bag"), "--out", str(tmp_path / "r.json"), "--attach", "--model", str(tmp_path)],
         "not with --attach"),
        ([str(tmp_path / "bag"), "--out", str(tmp_path / "r.json"), "--params", str(tmp_path / "x.yaml")],
         "parameter file not found"),
    ]
    for argv, reason in cases:
        status = main(["bag", "evaluate", *argv])
        err = capsys.readouterr().err
        assert status == 2 and reason in err and err.count("\n") == 1, err


@pytest.mark.parametrize("image_format,transport", [("raw", "raw"), ("png", "compressed")])
def test_started_node_takes_the_transport_of_the_bag(tmp_path, monkeypatch, image_format, transport):
    """Whatever the parameter file says, the node this command starts gets the transport the
    bag's image messages need (a raw bag with a file saying compressed would wait forever)."""
    from mpvss_ros.cli import CommandError
    from mpvss_ros.commands.bag import evaluate_bag
    from mpvss_ros.ros import node_process

    seen = {}

    class Refusing:
        def __init__(self, params=None, namespace="", overrides=None, log_path=None):
            seen.update(overrides)

        def start(self):
            raise RuntimeError("not started in this test")

    monkeypatch.setattr(node_process, "NodeProcess", Refusing)
    bag.write_bag(_frames(False)[:2], tmp_path / "bag", progress=False, image_format=image_format)
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    input_transport: %s\n" % ("raw" if transport == "compressed" else "compressed"))
    with pytest.raises((CommandError, RuntimeError)):
        evaluate_bag(tmp_path / "bag", tmp_path / "r.json", params=str(params), progress=False)
    assert seen["input_transport"] == transport
