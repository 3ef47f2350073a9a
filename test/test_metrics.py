"""mIoU / fwIoU on hand-made confusion matrices; VC_n on hand-made sequences."""
import math

import numpy as np
import pytest

from mpvss_ros.evaluation.metrics import ConfusionMatrix, VideoConsistency


def test_iou_from_hand_made_matrix():
    # ground truth: 6 px of class 0, 4 px of class 1, 2 px ignore; prediction below
    gt = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 255, 255], np.uint8)
    pr = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 2], np.uint8)
    cm = ConfusionMatrix()
    cm.update(pr, gt)
    # class 0: TP 4, FN 2, FP 1 -> 4/7 ; class 1: TP 3, FN 1, FP 2 -> 3/6 ; class 2 only on ignore -> NaN
    iou = cm.iou()
    assert iou[0] == pytest.approx(4 / 7) and iou[1] == pytest.approx(0.5)
    assert all(math.isnan(v) for v in iou[2:])
    assert cm.miou() == pytest.approx((4 / 7 + 0.5) / 2)  # mean over the non-NaN classes only
    assert cm.fwiou() == pytest.approx(0.6 * 4 / 7 + 0.4 * 0.5)
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    per_class = cm.per_class_iou()
    assert per_class["road"] == pytest.approx(4 / 7) and per_class["sidewalk"] == pytest.approx(0.5)
    assert per_class["building"] is None and len(per_class) == 19


def test_class_predicted_but_absent_counts_with_iou_zero():
    gt = np.zeros((2, 2), np.uint8)
    pr = np.array([[0, 0], [0, 5]], np.uint8)
    cm = ConfusionMatrix()
    cm.update(pr, gt)
    assert cm.iou()[5] == 0.0
    assert cm.miou() == pytest.approx((0.75 + 0.0) / 2)
    assert cm.fwiou() == pytest.approx(0.75)


def test_prediction_outside_train_ids_is_a_miss():
    cm = ConfusionMatrix()
    cm.update(np.array([255, 3, 3], np.uint8), np.array([3, 3, 3], np.uint8))
    assert cm.iou()[3] == pytest.approx(2 / 3)
    assert cm.miou() == pytest.approx(2 / 3)


def test_accumulates_and_merges():
    a, b, both = ConfusionMatrix(), ConfusionMatrix(), ConfusionMatrix()
    x = np.array([[0, 1], [1, 1]], np.uint8)
    y = np.array([[0, 0], [1, 1]], np.uint8)
    a.update(x, y)
    b.update(y, y)
    both.update(x, y)
    both.update(y, y)
    a.merge(b)
    assert (a.matrix == both.matrix).all()
    assert a.matrix.sum() == 8
    with pytest.raises(ValueError):
        a.update(x, y[:1])


def test_empty_matrix_is_nan():
    assert math.isnan(ConfusionMatrix().miou()) and math.isnan(ConfusionMatrix().fwiou())


def _frames(*rows):
    return [np.array(r, np.uint8).reshape(1, -1) for r in rows]


def test_vc_hand_made_cases():
    # 4 pixels over 3 frames. GT: pixels 0,1,2 constant; pixel 3 changes (not counted).
    gts = _frames([1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 5])
    # prediction: pixel 0 constant, pixel 1 flickers in frame 1, pixel 2 changes in frame 2
    preds = _frames([1, 2, 3, 0], [1, 7, 3, 0], [1, 2, 9, 0])
    vc3 = VideoConsistency(3)
    assert vc3.add_sequence(preds, gts) == pytest.approx(1 / 3)  # one window: 1 of 3 pixels consistent
    vc2 = VideoConsistency(2)
    # windows (0,1): GT-constant {0,1,2}, pred-constant among them {0,2} -> 2/3
    #         (1,2): GT-constant {0,1,2,3}, pred-constant {0,3} -> 2/4
    assert vc2.add_sequence(preds, gts) == pytest.approx((2 / 3 + 2 / 4) / 2)
    assert vc2.value() == pytest.approx((2 / 3 + 2 / 4) / 2)


def test_vc_perfectly_consistent_wrong_prediction_scores_one():
    # VC measures consistency, not accuracy
    gts = _frames([1, 1, 2], [1, 1, 2], [1, 1, 2])
    preds = _frames([5, 5, 5], [5, 5, 5], [5, 5, 5])
    assert VideoConsistency(2).add_sequence(preds, gts) == 1.0


def test_vc_ignore_and_missing_ground_truth_and_sequence_averaging():
    gts = _frames([255, 1], [255, 1], [255, 1])
    preds = _frames([0, 1], [3, 1], [0, 1])
    assert VideoConsistency(3).add_sequence(preds, gts) == 1.0  # the ignore pixel does not count
    vc = VideoConsistency(2)
    sparse = [None, np.array([[1, 1]], np.uint8), np.array([[1, 1]], np.uint8), None]
    p = _frames([0, 0], [0, 0], [0, 1], [0, 0])
    assert vc.add_sequence(p, sparse) == pytest.approx(0.5)  # only window (1, 2) has ground truth
    assert vc.add_sequence(_frames([1], [2]), _frames([3], [3])) == 0.0
    assert vc.value() == pytest.approx(0.25)  # mean over sequences
    assert VideoConsistency(8).add_sequence(p, sparse) is None  # too short
    with pytest.raises(ValueError):
        VideoConsistency(1)
