"""End to end with a real (randomly initialised, exported) model: generated sequences -> bag ->
`mpvss bag evaluate` starting the node itself over DDS, against offline `mpvss evaluate` of the
same model, data and interval. The bag holds PNG CompressedImages (lossless): the command starts
the node with input_transport:=compressed, and its predictions still equal offline ones pixel by
pixel (the raw-Image path is the demo's, test_demo.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SIZE = (64, 128)
INTERVAL = 3
SEQUENCES, FRAMES = 2, 8  # 8 frames: one VC8 window per sequence


def _diverse_random_model(out_dir):
    """A random model whose labels vary over the image (plain random init predicts one class
    everywhere, which would make a comparison of predictions meaningless): larger class and
    mask-embedding weights make queries claim different regions and classes."""
    import torch

    from mpvss_ros.model.config import small_config
    from mpvss_ros.model.export import export_model
    from mpvss_ros.model.mpvss import MPVSS

    torch.manual_seed(1)
    model = MPVSS(small_config(SIZE)).eval()
    scaled = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "class_predictor" in name:
                p.mul_(20.0)
                scaled += 1
            elif "mask_embedder.2" in name and name.endswith("weight"):
                p.mul_(100.0)
                scaled += 1
    assert scaled >= 3, "model layout changed: update the parameter names above"
    export_model(model, out_dir, size=SIZE, write_weights=False, verify=False,
                 provenance={"source": "test: scaled random initialisation"})
    return out_dir


def _cli(*args, timeout=400):
    run = subprocess.run([sys.executable, "-m", "mpvss_ros.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"mpvss {' '.join(map(str, args[:2]))} failed:\n{run.stdout}\n{run.stderr}"
    return run


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, ros_domain):
    from mpvss_ros.data.generator import generate

    root = tmp_path_factory.mktemp("model_replay")
    model = _diverse_random_model(root / "model")
    generate(root / "data", "val", SEQUENCES, FRAMES, SIZE, seed=5, progress=False)
    _cli("evaluate", "--data", root / "data", "--split", "val", "--model", model, "--methods", "query-flow",
         "--intervals", INTERVAL, "--out", root / "offline.json", "--save-predictions", root / "offline_pred")
    _cli("bag", "convert", root / "data", "--split", "val", "--out", root / "bag", "--image-format", "png", "--quiet")
    out = root / "replay" / "report.json"
    run = _cli("bag", "evaluate", root / "bag", "--out", out, "--model", model,
               "--set", f"schedule.interval:={INTERVAL}", "--save-predictions", root / "replay_pred", "--quiet")
    return {"root": root, "offline": json.loads((root / "offline.json").read_text()),
            "report": json.loads(out.read_text()), "out": out, "stdout": run.stdout}


def test_every_ground_truth_frame_got_a_prediction(replayed):
    r = replayed["report"]
    frames = SEQUENCES * FRAMES
    assert r["frames"] == frames and r["answered"] == frames
    assert r["ground_truth_frames"] == frames and r["ground_truth_frames_without_prediction"] == 0
    assert r["dropped"] == 0 and r["timeouts"] == 0
    keys_per_sequence = len(range(0, FRAMES, INTERVAL))
    assert r["key_fraction"] == pytest.approx(keys_per_sequence / FRAMES, abs=1e-4)


def test_replayed_scores_equal_offline_evaluate(replayed):
    (off,) = replayed["offline"]["results"]
    (rep,) = replayed["report"]["results"]
    assert (rep["method"], rep["interval"]) == (off["method"], off["interval"]) == ("query-flow", INTERVAL)
    assert abs(rep["miou"] - off["miou"]) < 0.005
    assert abs(rep["fwiou"] - off["fwiou"]) < 0.005
    assert abs(rep["vc8"] - off["vc8"]) < 0.005
    assert set(rep["per_class_iou"]) == set(off["per_class_iou"])
    for name, iou in off["per_class_iou"].items():
        assert (iou is None) == (rep["per_class_iou"][name] is None), name
        if iou is not None:
            assert abs(rep["per_class_iou"][name] - iou) < 0.01, name
    assert rep["gflops_per_frame"] == pytest.approx(off["gflops_per_frame"], rel=1e-3)


def test_node_predictions_equal_offline_predictions_pixel_by_pixel(replayed):
    root = replayed["root"]
    offline = sorted((root / "offline_pred" / f"query-flow_k{INTERVAL}").glob("*_pred_labelIds.png"))
    assert len(offline) == SEQUENCES * FRAMES
    classes = set()
    for path in offline:
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(root / "replay_pred" / path.name), cv2.IMREAD_UNCHANGED)
        assert b is not None, path.name
        assert (a == b).mean() >= 0.999, path.name
        classes |= set(np.unique(a).tolist())
    assert len(classes) >= 3  # the comparison is not between constant images


def test_report_files_are_written_with_sane_values(replayed):
    r, out = replayed["report"], replayed["out"]
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    (rep,) = r["results"]
    assert rep["ms_per_frame"] > 0 and 0 <= rep["miou"] <= 1
    assert r["model"]["path"].endswith("model") and r["model"]["input_size"] == list(SIZE)
    assert r["replay"]["pacing"] == "as-fast-as-possible" and r["replay"]["fps"] > 0
    assert r["replay"]["schedule"]["interval"] == INTERVAL
    assert r["replay"]["input_reliability"] == "reliable"  # the started node's default for bags
    assert r["replay"]["input_transport"] == "compressed"  # chosen from the bag's message type
    assert r["data"]["image_topic"] == "/camera/image_raw/compressed"
    md = out.with_suffix(".md").read_text()
    assert f"| query-flow | {INTERVAL} | {100 * rep['miou']:.1f} |" in md
    for suffix in ("per_class_iou", "latency", "miou_over_time", "overlay_strip"):
        png = cv2.imread(str(out.parent / f"report_{suffix}.png"))
        assert png is not None and png.size > 0, suffix
    assert (out.parent / "report_node.log").is_file()
    assert f"report: {out}" in replayed["stdout"]
