"""`mpvss evaluate` with the oracle runner, checked against cityscapesScripts' own evaluator."""
import glob
import json

import numpy as np
import pytest

from mpvss_ros.cli import main
from mpvss_ros.data.generator import generate
from mpvss_ros.evaluation.cityscapes_reference import main as reference_main
from mpvss_ros.evaluation.cityscapes_reference import reference_scores
from mpvss_ros.evaluation.evaluate import evaluate, schedule_gflops
from mpvss_ros.evaluation.oracle import OracleRunner

KEYS = {"method", "interval", "miou", "fwiou", "vc8", "vc16", "ms_per_frame", "gflops_per_frame", "per_class_iou",
        "miou_ci95", "key_distances"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    generate(data, "val", sequences=2, frames=17, size=(128, 256), seed=11, workers=1, progress=False)
    report_path, pred = root / "report.json", root / "pred"
    code = main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle",
                 "--methods", "per-frame,copy,optical-flow,query-flow", "--intervals", "1,5,10",
                 "--out", str(report_path), "--save-predictions", str(pred)])
    assert code == 0
    report = json.loads(report_path.read_text())
    rows = {(r["method"], r["interval"]): r for r in report["results"]}
    return data, pred, report, rows


def test_report_has_the_design_keys(run):
    _, _, report, rows = run
    assert set(report) == {"results", "model", "data", "comparisons"}
    assert all(set(r) == KEYS for r in report["results"])
    assert set(rows) == {("per-frame", 1)} | {(m, k) for m in ("copy", "optical-flow", "query-flow")
                                               for k in (1, 5, 10)}
    assert report["data"]["sequences"] == 2 and report["data"]["annotated_frames"] == 34
    assert report["model"]["backend"] == "oracle"
    assert all(r["gflops_per_frame"] is None for r in report["results"])  # the oracle has no FLOPs
    assert len(rows[("copy", 5)]["per_class_iou"]) == 19


def test_copy_degrades_with_interval_and_optical_flow_beats_copy(run):
    _, _, report, rows = run
    assert rows[("per-frame", 1)]["miou"] == pytest.approx(1.0)
    assert rows[("per-frame", 1)]["vc8"] == pytest.approx(1.0)
    assert rows[("copy", 1)]["miou"] == pytest.approx(1.0)
    copy = [rows[("copy", k)]["miou"] for k in (1, 5, 10)]
    assert copy[0] > copy[1] > copy[2]
    assert copy[2] < 0.8  # the data punishes reusing old labels
    for k in (5, 10):
        assert rows[("optical-flow", k)]["miou"] > rows[("copy", k)]["miou"] + 0.02
        assert rows[("copy", k)]["vc8"] < 1.0
    # the oracle propagates with the ground-truth flow: far better than copying, about as good as
    # DIS once both are warped at stride 4 (the mask grid, not the flow, limits them)
    assert report["model"]["propagation"] == "ground-truth flow"
    for k in (5, 10):
        assert rows[("query-flow", k)]["miou"] > rows[("copy", k)]["miou"] + 0.02
        assert abs(rows[("query-flow", k)]["miou"] - rows[("optical-flow", k)]["miou"]) < 0.05
    assert rows[("query-flow", 1)]["miou"] == pytest.approx(1.0)


def test_intervals_and_paired_comparisons_over_sequences(run):
    """Each mIoU comes with an interval over the two sequences around it; the comparisons are
    the ablation's claims, paired on the same sequences, and agree with the rows."""
    _, _, report, rows = run
    for (method, k), r in rows.items():
        if r["miou_ci95"] is not None:  # None only where the statistic has no spread (all perfect)
            low, high = r["miou_ci95"]
            assert low <= r["miou"] + 1e-9 and r["miou"] - 1e-9 <= high, (method, k)
    assert rows[("per-frame", 1)]["miou_ci95"] is None  # the oracle is perfect in every resample
    pairs = {(c["a"], c["b"], c["interval"]): c for c in report["comparisons"]}
    assert set(pairs) == {(a, b, k) for a, b in (("query-flow", "optical-flow"), ("optical-flow", "copy"))
                          for k in (1, 5, 10)}
    for (a, b, k), c in pairs.items():
        assert c["miou_diff"] == pytest.approx(rows[(a, k)]["miou"] - rows[(b, k)]["miou"], abs=1e-9)
        assert c["drives"] == 2 and c["drives_higher"] + c["drives_lower"] <= 2
    assert pairs[("optical-flow", "copy", 1)]["ci95"] == [0.0, 0.0]  # the same labels at k=1
    assert pairs[("optical-flow", "copy", 10)]["drives_higher"] == 2  # flow beats copy in both


def test_oracle_without_flow_files_copies(tmp_path):
    data = tmp_path / "data"
    generate(data, "val", sequences=1, frames=6, size=(64, 128), seed=5, workers=1, progress=False)
    for f in (data / "flow").rglob("*.png"):
        f.unlink()
    runner = OracleRunner(data, "val")
    assert runner.propagation == "copy"
    report = evaluate(data, "val", runner, ["copy", "query-flow"], [5], progress=False)
    rows = {r["method"]: r["miou"] for r in report["results"]}
    assert rows["query-flow"] == pytest.approx(rows["copy"])


def test_ground_truth_flow_chain_follows_each_link():
    from mpvss_ros.evaluation.oracle import chain_backward_flow

    right = np.zeros((8, 16, 2), np.float32)
    right[..., 0] = 2.0  # t -> t-1: content was 2 px to the right
    down = np.zeros((8, 16, 2), np.float32)
    down[:, :8, 1] = 1.0  # t-1 -> t-2: left half moved down by 1
    chained = chain_backward_flow([right, down])
    assert np.allclose(chained[2, 3], [2.0, 1.0])  # lands at x=5 (left half): picks up the y link
    assert np.allclose(chained[2, 10], [2.0, 0.0])  # lands at x=12 (right half): no y motion


@pytest.mark.parametrize("folder", ["copy_k5", "optical-flow_k10"])
def test_miou_equals_cityscapesscripts_evaluator(run, folder, tmp_path):
    data, pred, _, rows = run
    out = tmp_path / "reference.json"
    # cityscapesScripts' evaluateImgLists, driven through its own getPrediction search
    assert reference_main(["--data", str(data), "--split", "val", "--predictions", str(pred / folder),
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 34
    method, k = folder.rsplit("_k", 1)
    ours = rows[(method, int(k))]
    assert 0.2 < ours["miou"] < 1.0
    assert ours["miou"] == pytest.approx(result["miou"], abs=1e-6)
    for name, iou in ours["per_class_iou"].items():
        theirs = result["per_class_iou"][name]
        assert (iou is None and theirs is None) or iou == pytest.approx(theirs, abs=1e-6)


def test_reference_evaluator_refuses_missing_predictions(run, tmp_path):
    data, _, _, _ = run
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="evaluator stopped"):
        reference_scores(data, "val", tmp_path / "empty")


class RecordingRunner(OracleRunner):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def key_frame(self, image):
        self.calls.append(("key", image.shape))
        return super().key_frame(image)

    def propagate(self, key, image):
        self.calls.append(("propagate", image.shape))
        return super().propagate(key, image)


def test_runner_input_size_and_key_schedule(run, tmp_path):
    data, _, _, _ = run
    runner = RecordingRunner(data, "val", input_size=(64, 128), max_sequences=1)
    report = evaluate(data, "val", runner, ["query-flow"], [4], save_predictions=tmp_path, max_sequences=1,
                      progress=False)
    # 17 frames, k = 4: key frames 0, 4, 8, 12, 16
    assert [c[0] for c in runner.calls].count("key") == 5
    assert [c[0] for c in runner.calls].count("propagate") == 12
    assert all(c[1] == (64, 128, 3) for c in runner.calls)
    row = report["results"][0]
    assert row["key_distances"] == {"0": 5, "1": 4, "2": 4, "3": 4}
    # labels predicted at half size (a 16x32 mask grid, too coarse to warp well), scored at full size
    assert 0.4 < row["miou"] < 0.9
    saved = sorted(tmp_path.glob("query-flow_k4/*_pred_labelIds.png"))
    assert len(saved) == 17 and saved[0].name == "synth_000000_000000_pred_labelIds.png"
    import cv2
    assert cv2.imread(str(saved[0]), cv2.IMREAD_UNCHANGED).shape == (128, 256)


def test_schedule_gflops():
    g = {"key": 100.0, "nonkey": 20.0}
    assert schedule_gflops("per-frame", g, 10, 10) == 100.0
    assert schedule_gflops("copy", g, 2, 10) == pytest.approx(20.0)
    assert schedule_gflops("query-flow", g, 2, 10) == pytest.approx((200 + 160) / 10)
    assert schedule_gflops("optical-flow", g, 2, 10) is None
    assert schedule_gflops("copy", None, 2, 10) is None


def test_cli_errors_are_one_line(run, tmp_path, capsys):
    data = run[0]
    assert main(["evaluate", "--data", str(data), "--split", "val", "--model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--methods", "magic",
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--intervals", "0",
                 "--out", str(tmp_path / "r.json")]) == 2


class BatchedStateRunner(OracleRunner):
    """Key state with batch-1 arrays, as runtime.runners.KeyState holds them."""

    def key_frame(self, image):
        state, output = super().key_frame(image)
        state.mask_logits = state.mask_logits[None]
        state.class_logits = state.class_logits[None]
        return state, output


def test_optical_flow_accepts_batch_one_key_state(run):
    data = run[0]
    plain = evaluate(data, "val", OracleRunner(data, "val", max_sequences=1), ["optical-flow"], [5],
                     max_sequences=1, progress=False)
    batched = evaluate(data, "val", BatchedStateRunner(data, "val", max_sequences=1), ["optical-flow"], [5],
                       max_sequences=1, progress=False)
    assert plain["results"][0]["miou"] == pytest.approx(batched["results"][0]["miou"])
    assert plain["results"][0]["miou"] < 1.0


def test_oracle_grid_is_the_ground_truth_through_stride_4_masks(run):
    """oracle-grid's key frame = class shares of each 4x4 cell, up-sampled bilinearly, arg-max
    (checked against torch's avg_pool2d + interpolate); it loses thin structures the plain oracle keeps."""
    import torch
    import torch.nn.functional as F

    from mpvss_ros.data.cityscapes import CityscapesSequences

    data = run[0]
    runner = OracleRunner(data, "val", grid=True)
    dataset = CityscapesSequences(data, "val")
    frames = [f for seq in dataset.sequences for f in seq.frames if f.label_path is not None]
    disagree = 0
    for frame in frames:
        gt = CityscapesSequences.load_train_ids(frame)
        onehot = torch.from_numpy(gt[None].astype(np.int64) == torch.arange(19).view(19, 1, 1).numpy()).float()
        up = F.interpolate(F.avg_pool2d(onehot[None], 4), size=gt.shape, mode="bilinear", align_corners=False)
        expected = up[0].argmax(0).numpy()
        _, out = runner.key_frame(dataset.load_image(frame))
        valid = gt != 255
        # equal except where two classes tie (shares of exactly 0.5 / 0.5 break on float rounding)
        assert np.mean(out.labels[valid] != expected[valid]) < 2e-3
        disagree += int(np.sum(out.labels[valid] != gt[valid]))
    assert disagree > 0  # the grid costs something on these scenes
    report = evaluate(data, "val", runner, ["per-frame"], [1], progress=False)
    miou = report["results"][0]["miou"]
    assert 0.6 < miou < 0.995
    assert run[3][("per-frame", 1)]["miou"] == pytest.approx(1.0)  # the plain oracle


def test_evaluate_command_takes_oracle_grid(run, tmp_path):
    out = tmp_path / "grid.json"
    assert main(["evaluate", "--data", str(run[0]), "--split", "val", "--model", "oracle-grid",
                 "--methods", "per-frame", "--intervals", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"]["name"] == "oracle-grid"
    assert report["results"][0]["miou"] < 0.995


def test_oracle_grid_at_a_size_not_divisible_by_4_and_when_propagating(run):
    from mpvss_ros.data.cityscapes import CityscapesSequences
    from mpvss_ros.runtime.preprocess import resize_image

    data = run[0]
    size = (126, 250)
    runner = OracleRunner(data, "val", input_size=size, grid=True)
    dataset = CityscapesSequences(data, "val")
    seq = dataset.sequences[0]
    key_frame = next(f for f in seq.frames if f.label_path is not None)
    later = seq.frames[seq.frames.index(key_frame) + 3]
    state, out = runner.key_frame(resize_image(dataset.load_image(key_frame), size))
    assert out.labels.shape == size and out.probs.shape == (19, 31, 62)
    total = out.probs.sum(axis=0)  # shares of each cell: 1, less where ignored pixels (no class) lie
    assert total.max() < 1.01 and np.median(total) == pytest.approx(1.0, abs=0.01)
    moved = runner.propagate(state, resize_image(dataset.load_image(later), size))
    assert moved.labels.shape == size
    assert 0.0 < np.mean(moved.labels != out.labels) < 0.5  # warped by the ground-truth flow, not copied


def test_intervals_resample_drives_not_snippets(tmp_path):
    """Real Cityscapes keeps 30-frame snippets of one drive (city, seq) apart; the bootstrap
    must resample the drive, or correlated snippets would pass for independent ones."""
    data = tmp_path / "data"
    generate(data, "val", sequences=2, frames=6, size=(64, 128), seed=5, workers=1, progress=False)
    for p in list(data.rglob("*_000000_000003_*.png")):  # a gap: drive 0 becomes two snippets
        p.unlink()
    report = evaluate(data, "val", OracleRunner(data, "val"), ["copy", "optical-flow"], [2], progress=False)
    assert report["data"]["sequences"] == 3
    (comparison,) = report["comparisons"]
    assert comparison["drives"] == 2


def _small_split(root, sequences=2, size=(32, 64)):
    generate(root, "val", sequences=sequences, frames=4, size=size, seed=3, workers=1, progress=False)
    return root


def test_out_directory_is_refused_before_any_work(tmp_path, capsys):
    data = _small_split(tmp_path / "d")
    (tmp_path / "out").mkdir()
    code = main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--methods", "copy",
                 "--intervals", "2", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "is a directory" in err and len(err.strip().splitlines()) == 1


def test_stray_ground_truth_size_is_a_one_line_error(tmp_path, capsys):
    import cv2

    data = _small_split(tmp_path / "d")
    gt = sorted((data / "gtFine" / "val").glob("*/*_000001_000002_gtFine_labelIds.png"))[0]
    cv2.imwrite(str(gt), cv2.resize(cv2.imread(str(gt), cv2.IMREAD_UNCHANGED), (128, 64),
                                    interpolation=cv2.INTER_NEAREST))
    code = main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--methods", "copy",
                 "--intervals", "2", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("mpvss evaluate: error:")]
    assert f"{gt}: ground truth 64x128 differs from 32x64" in line
    assert "evaluate val" not in err  # refused before the first sequence was run


def test_report_counts_unmatched_ground_truth_and_lists_mixed_sizes(tmp_path, capsys):
    import cv2

    data = _small_split(tmp_path / "d", sequences=2)
    images = sorted((data / "leftImg8bit_sequence" / "val").glob("*/*_leftImg8bit.png"))
    images[0].unlink()  # sequence 0, frame 0: its ground truth stays
    for p in images[4:]:  # sequence 1 at twice the size, image and ground truth
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (128, 64)))
        gt = data / "gtFine" / "val" / p.parent.name / p.name.replace("leftImg8bit", "gtFine_labelIds")
        cv2.imwrite(str(gt), cv2.resize(cv2.imread(str(gt), cv2.IMREAD_UNCHANGED), (128, 64),
                                        interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--methods", "copy",
                 "--intervals", "2", "--out", str(out)]) == 0
    assert "warning: 1 ground-truth file(s)" in capsys.readouterr().out
    info = json.loads(out.read_text())["data"]
    assert info["unmatched_ground_truth"] == 1 and info["annotated_frames"] == 7
    assert info["image_size"] == [32, 64] and info["image_sizes"] == [[32, 64], [64, 128]]


class ConstantRunner:
    """Labels every frame as road; counts its calls."""
    input_size = (32, 64)

    def __init__(self):
        self.keys = 0

    def key_frame(self, image):
        from types import SimpleNamespace

        self.keys += 1
        out = SimpleNamespace(labels=np.zeros(image.shape[:2], np.uint8))
        return out, out

    def propagate(self, key, image):
        return key


def test_ground_truth_on_one_frame_per_snippet(tmp_path, capsys):
    """Real Cityscapes: snippets numbered from anywhere, ground truth on their 20th frame only.
    Only that frame is scored, at the distance from its key frame the schedule gives; the
    oracle, which needs ground truth on key frames, says so."""
    data = tmp_path / "d"
    generate(data, "val", sequences=2, frames=12, size=(32, 64), seed=3, workers=1, progress=False)
    for p in sorted(data.rglob("*.png")):
        if "flow" in p.parts or "gtFine" in p.parts and "_000009_" not in p.name:
            p.unlink()
        elif "_000001_" in p.name:  # the second snippet starts at frame 275, labelled 284
            frame = int(p.name.split("_")[2])
            p.rename(p.with_name(p.name.replace(f"_000001_{frame:06d}_", f"_000001_{frame + 275:06d}_")))
    runner = ConstantRunner()
    report = evaluate(data, "val", runner, ["per-frame", "copy"], [1, 4, 5], progress=False)
    assert report["data"]["annotated_frames"] == 2
    # frames 10 and 11 of each snippet come after its labelled frame: never scored, not run
    assert report["data"]["frames"] == 20 and report["data"]["frames_after_last_annotated"] == 4
    assert runner.keys == 20  # per-frame runs each frame once as a key frame (shared), none after frame 9
    rows = {(r["method"], r["interval"]): r for r in report["results"]}
    assert rows[("per-frame", 1)]["key_distances"] == {"0": 2}
    assert rows[("copy", 4)]["key_distances"] == {"1": 2} and rows[("copy", 5)]["key_distances"] == {"4": 2}
    assert rows[("copy", 5)]["per_class_iou"]["road"] > 0
    code = main(["evaluate", "--data", str(data), "--split", "val", "--model", "oracle", "--methods", "copy",
                 "--intervals", "2", "--out", str(tmp_path / "r.json")])
    assert code == 2 and "needs ground truth on every key frame" in capsys.readouterr().err
