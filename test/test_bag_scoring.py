"""Replay scoring, Markdown report and figures without ROS: outcomes are built by hand."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mpvss_ros.data.labels import TRAIN_ID_TO_LABEL_ID
from mpvss_ros.evaluation import plots
from mpvss_ros.evaluation.metrics import ConfusionMatrix, VideoConsistency
from mpvss_ros.evaluation.replay_report import ReplayScorer, frame_miou
from mpvss_ros.evaluation.report_md import render

H, W = 8, 16


def _outcome(index, pred, gt_train, new_sequence=False, key=False, latency=5.0, name=None):
    gt_ids = None if gt_train is None else TRAIN_ID_TO_LABEL_ID[gt_train]
    image = np.full((H, W, 3), index * 10, np.uint8)
    record = SimpleNamespace(label_ids=gt_ids, image=lambda: image)
    stats = None if pred is None else {"key_frame": key, "frames_since_key": 0, "inference_ms": 2.0,
                                       "total_ms": 3.0}
    return SimpleNamespace(index=index, name=name or f"c_000001_{index:06d}", new_sequence=new_sequence,
                           record=record, labels=pred, stats=stats, timed_out=pred is None,
                           latency_ms=None if pred is None else latency)


def _map(*classes):
    """(H, W) train ids: vertical bands of the given classes."""
    out = np.zeros((H, W), np.uint8)
    for i, c in enumerate(classes):
        out[:, i * W // len(classes):(i + 1) * W // len(classes)] = c
    return out


def test_scores_match_metrics_and_count_missing_frames(tmp_path):
    gts = [_map(0, 1), _map(0, 1), _map(0, 2), _map(0, 2)]
    preds = [_map(0, 1), None, _map(0, 0), _map(0, 2)]
    scorer = ReplayScorer(total_frames=4, ground_truth_frames=4, vc_lengths=(2,),
                          save_predictions=str(tmp_path / "pred"))
    for i, (p, g) in enumerate(zip(preds, gts)):
        scorer.add(_outcome(i, p, g, new_sequence=i == 0, key=i in (0, 2), latency=float(i + 1)))
    report = scorer.report(method="query-flow", interval=2, model={"path": "m"}, data="bag", replay={})
    (entry,) = report["results"]

    expected = ConfusionMatrix()
    for p, g in zip(preds, gts):
        if p is not None:
            expected.update(p, g)
    assert entry["miou"] == pytest.approx(expected.miou())
    assert entry["per_class_iou"] == expected.per_class_iou()
    # VC2 over the windows whose frames were all answered: only (2, 3).
    vc = VideoConsistency(2)
    vc.add_sequence([preds[2], preds[3]], [gts[2], gts[3]])
    assert scorer.consistency[2].value() == pytest.approx(vc.value())
    assert report["frames"] == 4 and report["answered"] == 3 and report["dropped"] == 1
    assert report["timeouts"] == 1 and report["ground_truth_frames_without_prediction"] == 1
    assert report["key_fraction"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["latency_ms"]["p50"] == pytest.approx(3.0)  # of 1, 3, 4 ms
    # Stability: consecutive answered pairs only (2, 3): half the pixels change (band 0 -> 2).
    assert report["stability"] == {"changed_pixel_fraction": 0.5, "frame_pairs": 1}
    assert [t["miou"] is None for t in scorer.timeline] == [False, True, False, False]
    assert frame_miou(preds[2], gts[2]) == pytest.approx(np.mean([0.5, 0.0]))  # road 1/2, terrain 0
    saved = cv2.imread(str(tmp_path / "pred" / "c_000001_000002_pred_labelIds.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(saved, TRAIN_ID_TO_LABEL_ID[preds[2]])
    assert not (tmp_path / "pred" / "c_000001_000001_pred_labelIds.png").exists()


def test_video_consistency_restarts_at_each_sequence():
    a, b = _map(0, 1), _map(1, 0)
    scorer = ReplayScorer(total_frames=4, ground_truth_frames=4, vc_lengths=(2,))
    # Sequence 1: constant gt, constant pred -> VC 1. Sequence 2 starts with a different frame:
    # the pair across the boundary must not count.
    for i, (p, g, new) in enumerate([(a, a, True), (a, a, False), (b, b, True), (b, b, False)]):
        scorer.add(_outcome(i, p, g, new_sequence=new))
    assert scorer.consistency[2].value() == 1.0
    assert scorer.report(method="m", interval=1, model=None, data="", replay={})["stability"]["frame_pairs"] == 2


def test_camera_bag_without_ground_truth_and_markdown(tmp_path):
    scorer = ReplayScorer(total_frames=3, ground_truth_frames=0)
    for i, p in enumerate([_map(0, 1), _map(0, 1), _map(1, 1)]):
        scorer.add(_outcome(i, p, None, new_sequence=i == 0, key=i == 0))
    report = scorer.report(method="query-flow", interval=5, model={"path": "m"}, data="cam_bag",
                           replay={"pacing": "30 Hz", "fps": 29.5})
    (entry,) = report["results"]
    assert entry["miou"] is None and entry["per_class_iou"] is None
    assert report["stability"]["changed_pixel_fraction"] == pytest.approx(0.25)  # (0 + 0.5) / 2
    assert len(scorer.samples) == 3  # without ground truth any frame can be shown
    figures = {"Latency": plots.latency_histogram(scorer.latencies_ms, tmp_path / "lat.png"),
               "Strip": plots.overlay_strip(scorer.samples, tmp_path / "strip.png")}
    strip = cv2.imread(str(tmp_path / "strip.png"))
    assert strip.shape == (3 * (H + 4), 3 * W + 8, 3)
    md = render(report, figures, base=tmp_path)
    assert "no ground truth" in md and "| query-flow | 5 | n/a |" in md
    assert "| throughput (frames/s) | 29.5 |" in md and "![Strip](strip.png)" in md
    # what `bag evaluate` draws for such a bag: no per-class bars, and the timeline titled for
    # what it shows (key frames, gaps) rather than as an empty mIoU plot
    from mpvss_ros.commands.bag import write_figures

    drawn = write_figures(report, scorer, tmp_path / "report.json")
    assert list(drawn) == ["Latency", "Key frames over time (no ground truth)", "Input | labels | ground truth"]
    assert all(p.is_file() for p in drawn.values())


def test_an_undecodable_frame_is_scored_as_unanswered_without_a_picture():
    """A bag frame that cannot be decoded (the node refuses it too): the replay goes on, the
    frame counts as unanswered, and the overlay strip leaves it out instead of failing."""
    scorer = ReplayScorer(total_frames=2, ground_truth_frames=0)
    bad = _outcome(0, None, None, new_sequence=True)

    def refuse():
        raise ValueError("compressed image is not a JPEG or PNG")

    bad.record.image = refuse
    scorer.add(bad)
    scorer.add(_outcome(1, _map(0, 1), None))
    report = scorer.report(method="query-flow", interval=2, model={"path": "m"}, data="bag", replay={})
    assert report["answered"] == 1 and report["dropped"] == 1
    assert [s.index for s in scorer.samples] == [1]


def test_ground_truth_outside_labelids_is_refused():
    scorer = ReplayScorer(total_frames=1, ground_truth_frames=1)
    outcome = _outcome(0, _map(0, 1), _map(0, 1), new_sequence=True)
    outcome.record.label_ids = np.full((H, W), 255, np.uint8)  # trainIds' ignore sent as labelIds
    outcome.record.name = "c_000001_000000"
    with pytest.raises(ValueError, match="frame c_000001_000000: label id 255 is not a Cityscapes labelId"):
        scorer.add(outcome)
