"""Bootstrap intervals over sequences (evaluation.uncertainty): the pooled mIoU rule equals the
confusion matrix's, intervals are seeded, and paired comparisons tell a real difference from
scene-to-scene spread."""
from __future__ import annotations

import numpy as np
import pytest

from mpvss_ros.evaluation.metrics import ConfusionMatrix
from mpvss_ros.evaluation.uncertainty import miou_interval, paired_difference, pooled_miou


def _sequence_matrices(rng, sequences: int, error: float, classes=(0, 1, 2, 8, 10)) -> np.ndarray:
    """Per-sequence confusion matrices of a predictor that mislabels `error` of the pixels."""
    out = []
    for _ in range(sequences):
        cm = ConfusionMatrix()
        gt = rng.choice(classes, size=(32, 32)).astype(np.uint8)
        pred = gt.copy()
        wrong = rng.random(gt.shape) < error
        pred[wrong] = rng.choice(classes, size=int(wrong.sum()))
        cm.update(pred, gt)
        out.append(cm.matrix)
    return np.stack(out)


def test_pooled_miou_is_the_confusion_matrix_rule():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cm = ConfusionMatrix()
        gt = rng.integers(0, 19, (20, 20)).astype(np.uint8)
        gt[:3] = 255  # ignored
        pred = rng.integers(0, 21, (20, 20)).astype(np.uint8)  # 19, 20: "other" column
        cm.update(pred, gt)
        assert pooled_miou(cm.matrix) == pytest.approx(cm.miou())


def test_interval_brackets_the_estimate_and_is_seeded():
    per_seq = _sequence_matrices(np.random.default_rng(1), 10, 0.3)
    low, high = miou_interval(per_seq)
    estimate = pooled_miou(per_seq.sum(axis=0))
    assert low < estimate < high and high - low < 0.2
    assert miou_interval(per_seq) == [low, high]  # same seed, same interval
    assert miou_interval(per_seq[:1]) is None  # one sequence: no spread to measure


def test_paired_difference_separates_a_real_gap_from_noise():
    rng = np.random.default_rng(2)
    good, bad = _sequence_matrices(rng, 10, 0.1), _sequence_matrices(rng, 10, 0.4)
    gap = paired_difference(good, bad)
    assert gap["miou_diff"] > 0.2 and gap["ci95"][0] > 0 and gap["drives_higher"] == 10
    # two draws of the same predictor: the interval straddles zero
    a, b = _sequence_matrices(rng, 10, 0.3), _sequence_matrices(rng, 10, 0.3)
    same = paired_difference(a, b)
    assert same["ci95"][0] < 0 < same["ci95"][1] and abs(same["miou_diff"]) < 0.05
    assert same["drives_higher"] + same["drives_lower"] == 10
    assert paired_difference(a, a)["ci95"] == [0.0, 0.0]  # identical methods (k=1)
    with pytest.raises(ValueError):
        paired_difference(a, a[:5])


def test_drives_without_ground_truth_are_left_out():
    rng = np.random.default_rng(3)
    annotated = _sequence_matrices(rng, 3, 0.3)
    empty = np.zeros((2,) + annotated.shape[1:])
    with_empty = np.concatenate([annotated, empty])
    assert miou_interval(with_empty) == miou_interval(annotated)  # not None, not shifted
    assert miou_interval(np.concatenate([annotated[:1], empty])) is None  # one annotated drive
    assert paired_difference(with_empty, with_empty)["drives"] == 3
