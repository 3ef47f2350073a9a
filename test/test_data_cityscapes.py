"""Cityscapes layout reading/writing, label tables, KITTI flow files, datasets."""
import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, trainId2label

from mpvss_ros.data import labels as L
from mpvss_ros.data.cityscapes import CityscapesSequences, read_label_ids, write_frame
from mpvss_ros.data.dataset import FrameDataset, PairDataset
from mpvss_ros.data.flow_io import compose_backward, read_flow_png, write_flow_png


def test_label_tables_follow_cityscapesscripts():
    assert len(L.TRAIN_CLASS_NAMES) == 19
    assert L.TRAIN_CLASS_NAMES[0] == "road" and L.TRAIN_CLASS_NAMES[18] == "bicycle"
    for label_id in range(34):
        expected = id2label[label_id].trainId
        assert L.LABEL_ID_TO_TRAIN_ID[label_id] == (expected if 0 <= expected < 255 else 255)
    for t in range(19):
        assert L.TRAIN_ID_TO_LABEL_ID[t] == trainId2label[t].id
        assert tuple(L.PALETTE[t]) == trainId2label[t].color
    ids = np.array([[7, 26, 0, 1, 33]], np.uint8)
    assert L.label_ids_to_train_ids(ids).tolist() == [[0, 13, 255, 255, 18]]
    assert L.train_ids_to_label_ids(np.array([0, 13, 255], np.uint8)).tolist() == [7, 26, 0]
    assert L.colorize(np.array([[13, 255]], np.uint8)).tolist() == [[[0, 0, 142], [0, 0, 0]]]


def test_sparse_ground_truth_and_gaps_split_sequences(tmp_path):
    rng = np.random.default_rng(0)
    # frames 0..5 and 10..12 of one sequence number (real Cityscapes snippets share numbers)
    for frame in list(range(6)) + [10, 11, 12]:
        img = rng.integers(0, 255, (8, 16, 3), dtype=np.uint8)
        gt = np.full((8, 16), 13, np.uint8) if frame in (3, 11) else None
        write_frame(tmp_path, "val", "berlin", 42, frame, img, train_ids=gt)
    data = CityscapesSequences(tmp_path, "val")
    assert [(s.seq, [f.frame for f in s.frames]) for s in data] == [(42, [0, 1, 2, 3, 4, 5]), (42, [10, 11, 12])]
    seq = data[0]
    assert [data.load_train_ids(f) is None for f in seq.frames] == [True, True, True, False, True, True]
    assert (data.load_train_ids(seq.frames[3]) == 13).all()
    assert data.load_flow(seq.frames[3]) is None
    assert len(FrameDataset(tmp_path, "val")) == 2
    pair = PairDataset(tmp_path, "val", max_distance=3)[0]
    assert pair["flow"] is None and pair["train_ids"].shape == (8, 16) and 1 <= pair["distance"] <= 3


def test_flow_png_round_trip_and_kitti_encoding(tmp_path):
    rng = np.random.default_rng(1)
    flow = rng.uniform(-300, 300, (20, 30, 2)).astype(np.float32)
    valid = rng.random((20, 30)) > 0.3
    write_flow_png(tmp_path / "f.png", flow, valid)
    back, back_valid = read_flow_png(tmp_path / "f.png")
    assert (back_valid == valid).all()
    assert np.abs(back[valid] - flow[valid]).max() <= 1 / 128 + 1e-6
    assert (back[~valid] == 0).all()
    import cv2
    raw = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]  # -> R, G, B
    y, x = np.argwhere(valid)[0]
    assert raw.dtype == np.uint16 and raw[y, x, 2] == 1
    assert raw[y, x, 0] == round(flow[y, x, 0] * 64 + 32768)


def test_compose_backward_chains_translations():
    h, w = 10, 20
    a = np.zeros((h, w, 2), np.float32)
    a[..., 0] = 2.0
    b = np.zeros((h, w, 2), np.float32)
    b[..., 1] = 1.0
    valid = np.ones((h, w), bool)
    flow, v = compose_backward(a, valid, b, valid)
    assert np.allclose(flow[v], [2.0, 1.0])
    assert not v[:, -2:].any() and v[:, :-3].all()  # samples that leave the image are invalid
    b_valid = valid.copy()
    b_valid[5, 7] = False  # an occluded pixel in the middle frame
    _, v2 = compose_backward(a, valid, b, b_valid)
    assert not v2[5, 5] and v2[0, 0]


def test_pair_dataset_on_generated_data(tmp_path):
    from mpvss_ros.data.flow_io import warp_nearest
    from mpvss_ros.data.generator import generate

    generate(tmp_path, "train", sequences=1, frames=5, size=(64, 128), seed=3, workers=1, progress=False)
    ds = PairDataset(tmp_path, "train", max_distance=4, seed=0)
    assert len(ds) == 4
    distances = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            distances.add(item["distance"])
            si, t = ds.items[i]
            key_labels = ds.data.load_train_ids(ds.data.sequences[si].frames[t - item["distance"]])
            warped = warp_nearest(key_labels, item["flow"], 255)
            assert item["valid"].mean() > 0.4
            assert (warped == item["train_ids"])[item["valid"]].mean() > 0.97
    assert len(distances) >= 2
    ds.set_epoch(1)
    assert ds[3]["distance"] == ds[3]["distance"]  # reproducible for (seed, epoch, index)
    resized = PairDataset(tmp_path, "train", max_distance=2, size=(32, 64))[1]
    assert resized["image"].shape == (32, 64, 3) and resized["flow"].shape == (32, 64, 2)


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image folder"):
        CityscapesSequences(tmp_path, "test")


def _label_file(tmp_path, ids, name="x_000000_000000_gtFine_labelIds.png"):
    path = tmp_path / name
    assert cv2.imwrite(str(path), ids)
    return path


@pytest.mark.parametrize("value, dtype", [(255, np.uint8), (34, np.uint8), (263, np.uint16), (26001, np.uint16)])
def test_label_ids_outside_cityscapes_are_refused(tmp_path, value, dtype):
    # 255: trainIds' ignore saved as labelIds; 263: wraps to 7 (road) as uint8; 26001: an instanceIds car
    ids = np.full((4, 8), 7, dtype)
    ids[1, 2] = value
    with pytest.raises(ValueError, match=f"label id {value} is not a Cityscapes labelId"):
        read_label_ids(_label_file(tmp_path, ids))


def test_label_ids_16bit_in_range_and_palette_png_read_as_ids(tmp_path):
    from PIL import Image

    ids = np.array([[7, 8, 26, 33], [0, 1, 24, 11]], np.uint8)
    assert read_label_ids(_label_file(tmp_path, ids.astype(np.uint16))).tolist() == ids.tolist()
    pal = Image.fromarray(ids, mode="L").convert("P")  # indices kept, a colour palette added
    pal.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    path = tmp_path / "p_000000_000000_gtFine_labelIds.png"
    pal.save(path)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 3  # OpenCV expands the palette
    assert read_label_ids(path).tolist() == ids.tolist()
    rgb = np.dstack([ids] * 3)
    with pytest.raises(ValueError, match="single-channel, got 3 channels"):
        read_label_ids(_label_file(tmp_path, rgb, "c_000000_000000_gtFine_labelIds.png"))


def test_ground_truth_without_frame_image_is_listed(tmp_path):
    img = np.zeros((8, 16, 3), np.uint8)
    for frame in range(3):
        write_frame(tmp_path, "val", "berlin", 1, frame, img, train_ids=np.zeros((8, 16), np.uint8))
    (tmp_path / "leftImg8bit_sequence/val/berlin/berlin_000001_000001_leftImg8bit.png").unlink()
    data = CityscapesSequences(tmp_path, "val")
    assert [p.name for p in data.unmatched_labels] == ["berlin_000001_000001_gtFine_labelIds.png"]
    assert sum(f.label_path is not None for f in data.frames()) == 2
