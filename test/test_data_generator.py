"""The procedural sequence generator: layout, determinism, classes, exact ground-truth flow."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mpvss_ros.cli import main
from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.flow_io import warp_nearest
from mpvss_ros.data.generator import generate
from mpvss_ros.data.labels import IGNORE, TRAIN_CLASS_NAMES


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    generate(root, "val", sequences=2, frames=6, size=(64, 128), seed=7, workers=1, progress=False)
    return root


def test_layout_every_frame_has_image_labels_flow(small):
    data = CityscapesSequences(small, "val")
    assert [len(s) for s in data] == [6, 6]
    for f in data.frames():
        assert f.label_path is not None and f.flow_path is not None
        img = data.load_image(f)
        assert img.shape == (64, 128, 3) and img.dtype == np.uint8
        assert data.load_train_ids(f).shape == (64, 128)
    assert (small / "leftImg8bit_sequence/val/synth/synth_000001_000005_leftImg8bit.png").is_file()
    assert (small / "gtFine/val/synth/synth_000001_000005_gtFine_labelIds.png").is_file()
    assert (small / "flow/val/synth/synth_000001_000005_flow.png").is_file()


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small, tmp_path):
    # two worker processes here vs one in the fixture: output must not depend on the split of work
    generate(tmp_path / "a", "val", sequences=2, frames=6, size=(64, 128), seed=7, workers=2, progress=False)
    assert _digests(tmp_path / "a") == _digests(small)
    generate(tmp_path / "b", "val", sequences=2, frames=6, size=(64, 128), seed=8, workers=1, progress=False)
    assert _digests(tmp_path / "b") != _digests(small)


def test_at_least_ten_train_classes(tmp_path):
    generate(tmp_path, "train", sequences=2, frames=2, size=(128, 256), seed=1, workers=1, progress=False)
    data = CityscapesSequences(tmp_path, "train")
    present = set()
    for f in data.frames():
        present |= set(np.unique(data.load_train_ids(f)).tolist())
    present.discard(IGNORE)
    names = {TRAIN_CLASS_NAMES[i] for i in present}
    assert len(present) >= 10, names
    assert {"road", "sidewalk", "building", "sky", "car", "person", "vegetation", "pole"} <= names


def test_ground_truth_flow_maps_labels_of_previous_frame(small):
    data = CityscapesSequences(small, "val")
    agree, moving, valid_fraction, photometric = [], [], [], []
    for seq in data:
        for prev, cur in zip(seq.frames[:-1], seq.frames[1:]):
            flow, valid = data.load_flow(cur)
            valid_fraction.append(valid.mean())
            warped = warp_nearest(data.load_train_ids(prev), flow, IGNORE)
            gt = data.load_train_ids(cur)
            agree.append((warped == gt)[valid].mean())
            moving.append(np.linalg.norm(flow[valid], axis=1).mean())
            # independent of the labels: the flow also aligns the pixels' colours
            image = data.load_image(cur).astype(np.float32)
            prev_image = data.load_image(prev).astype(np.float32)
            err_warped = np.abs(warp_nearest(prev_image, flow, 0) - image)[valid].mean()
            err_still = np.abs(prev_image - image)[valid].mean()
            photometric.append(err_warped / err_still)
        first_flow, first_valid = data.load_flow(seq.frames[0])
        assert not first_valid.any()  # frame 0 has no predecessor
    assert min(agree) >= 0.99, agree
    assert np.mean(valid_fraction) > 0.8, valid_fraction  # occlusions exist but are a minority
    assert max(photometric) < 0.6, photometric
    assert np.mean(moving) > 1.0  # the camera and objects do move (px/frame at 64x128)


def test_cli_rejects_bad_size(capsys, tmp_path):
    assert main(["make-sequences", "--out", str(tmp_path), "--size", "64by128"]) == 2
    assert "HxW" in capsys.readouterr().err
