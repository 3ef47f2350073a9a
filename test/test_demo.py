"""`mpvss demo` end to end (generated sequences -> bag -> node over DDS -> report) with a small
random exported model and tiny data, and its one-line errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from mpvss_ros.cli import main


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    from mpvss_ros.model.export import export_random_model

    return export_random_model(tmp_path_factory.mktemp("demo_model") / "model", size=(64, 128))


def _demo(out, model, *extra):
    return subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "demo", "--out", str(out), "--model", str(model),
                           *extra], capture_output=True, text=True, timeout=600)


@pytest.mark.ros
@pytest.mark.slow
def test_demo_runs_end_to_end_and_reruns_into_the_same_folder(random_model, ros_domain, tmp_path):
    out = tmp_path / "demo"
    run = _demo(out, random_model, "--sequences", "2", "--frames", "6")
    assert run.returncode == 0, run.stdout + run.stderr
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert f"[demo {step}]" in run.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 12 and report["answered"] == 12 and report["dropped"] == 0
    (result,) = report["results"]
    interval = json.loads((Path(random_model) / "model.json").read_text())["default_interval"]
    assert (result["method"], result["interval"]) == ("query-flow", interval)
    assert 0.0 <= result["miou"] <= 1.0 and report["latency_ms"]["p50"] > 0
    # Every path it prints exists; the pictures are PNGs.
    printed = re.findall(r"(?:report|summary|picture|node log):\s+(\S+)", run.stdout)
    assert len(printed) >= 6
    for path in printed:
        assert Path(path).is_file(), path
        if path.endswith(".png"):
            assert cv2.imread(path) is not None, path
    assert (out / "bag" / "metadata.yaml").is_file()

    # A second run replaces its own earlier output.
    run = _demo(out, random_model, "--sequences", "1", "--frames", "4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads((out / "report.json").read_text())["frames"] == 4


def test_demo_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import mpvss_ros.ros.params as params

    # The embedded default model missing (before it is trained): a clear error, not a traceback.
    monkeypatch.setattr(params, "default_model_dir", lambda: tmp_path / "models" / "default")
    assert main(["demo", "--out", str(tmp_path / "d1")]) == 2
    err = capsys.readouterr().err
    assert "embedded default model is missing" in err and err.count("\n") == 1

    assert main(["demo", "--out", str(tmp_path / "d2"), "--model", str(tmp_path)]) == 2
    assert "no model.json" in capsys.readouterr().err

    # A folder with other content is never overwritten.
    (tmp_path / "d3").mkdir()
    (tmp_path / "d3" / "precious.txt").write_text("keep")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({"input_size": [64, 128]}))
    assert main(["demo", "--out", str(tmp_path / "d3"), "--model", str(tmp_path / "m")]) == 2
    assert "not an earlier demo output" in capsys.readouterr().err
    assert (tmp_path / "d3" / "precious.txt").read_text() == "keep"
