"""Bad model directories and configuration into one running node with the real runners (ONNX
Runtime): every configure attempt fails with a one-line reason in the log, the node stays
Unconfigured and up, and configures once the problem is fixed. One exported random model
(~30 s) is copied and damaged per case. Unknown confidence classes, a missing directory and
out-of-range values set at run time are covered in test_ros_lifecycle.py."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from lifecycle_msgs.msg import Transition
from mpvss_ros.model.export import export_random_model
from sensor_msgs.msg import Image
from test_reliability_helpers import running_node
from test_ros_helpers import NODE, rgb_image_msg, wait_for

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    return export_random_model(tmp_path_factory.mktemp("good") / "model", size=(64, 128))


@pytest.fixture(scope="module")
def node(ros_domain, tmp_path_factory, good_model):
    log = tmp_path_factory.mktemp("node") / "node.log"
    # started with an out-of-range schedule: the first configure must fail on it
    with running_node(log, "-p", f"model:={good_model}", "-p", "schedule.min_interval:=50",
                      "-r", "image:=/image", "-p", "input_reliability:=reliable",
                      real=True, autostart=False, state="unconfigured") as (client, proc):
        client.proc = proc
        yield client


def _edit_json(d: Path, **changes):
    info = json.loads((d / "model.json").read_text())
    info.update(changes)
    (d / "model.json").write_text(json.dumps(info))


def _edit_graph_input(d: Path):
    m = onnx.load(str(d / "segmentor.onnx"))
    for dim, v in zip(m.graph.input[0].type.tensor_type.shape.dim[2:], (32, 64)):
        dim.dim_value = v
    onnx.save(m, str(d / "segmentor.onnx"))


def _symlink_out(d: Path):
    outside = d.parent / f"{d.name}_outside"
    outside.mkdir()
    shutil.move(d / "flow.onnx", outside / "flow.onnx")
    os.symlink(outside / "flow.onnx", d / "flow.onnx")


def _loop(d: Path):
    shutil.rmtree(d)
    os.symlink(d, d)  # a link to itself
    return d


CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle"]
CASES = {  # name: (damage(dir) -> optional model path, reason expected in the log; {d} = the dir)
    "no model.json": (lambda d: (d / "model.json").unlink(), "not a model directory (no model.json): {d}"),
    "model path is a file": (lambda d: Path(d / "model.json"), "model path is not a directory: {d}/model.json"),
    "symlink loop": (_loop, "model directory not found: {d}"),
    "graph file missing": (lambda d: (d / "flow.onnx").unlink(),
                           "flow graph file 'flow.onnx' named in model.json is missing from {d}"),
    "truncated graph": (lambda d: (d / "segmentor.onnx").write_bytes((d / "segmentor.onnx").read_bytes()[:100_000]),
                        "cannot load segmentor graph {d}/segmentor.onnx: "),
    "empty graph": (lambda d: (d / "flow.onnx").write_bytes(b""), "cannot load flow graph {d}/flow.onnx: "),
    "graph of another size": (_edit_graph_input, "model.json does not match segmentor.onnx: image has shape "
                              "[1, 3, 32, 64], model.json implies [1, 3, 64, 128]"),
    "graphs swapped": (lambda d: (d / "segmentor.onnx").write_bytes((d / "flow.onnx").read_bytes()),
                       "segmentor.onnx is not an MPVSS graph of this kind: inputs ['image', 'key_class_logits', "
                       "'key_mask_logits', 'key_motion', 'key_queries']"),
    "model.json size differs from graphs": (lambda d: _edit_json(d, input_size=[128, 256]),
                                            "model.json does not match segmentor.onnx: image has shape "
                                            "[1, 3, 64, 128], model.json implies [1, 3, 128, 256]"),
    "model.json classes differ from graphs": (lambda d: _edit_json(d, class_names=CLASSES, num_classes=18),
                                              "model.json does not match segmentor.onnx: class_logits has shape "
                                              "[1, 8, 20], model.json implies [1, 8, 19]"),
    "model.json truncated": (lambda d: (d / "model.json").write_text((d / "model.json").read_text()[:200]),
                             "{d}/model.json is not valid JSON (Unterminated string"),
    "model.json without num_queries": (lambda d: _edit_json(d, num_queries=None),
                                       "{d}/model.json: num_queries must be a positive integer, got None"),
    "graph name with ..": (lambda d: _edit_json(d, graphs={"segmentor": "../../etc/passwd", "flow": "flow.onnx"}),
                           "segmentor graph file name '../../etc/passwd' in model.json must be a relative "
                           "name inside the model directory {d}"),
    "absolute graph name": (lambda d: _edit_json(d, graphs={"segmentor": "segmentor.onnx", "flow": "/etc/passwd"}),
                            "flow graph file name '/etc/passwd' in model.json must be a relative name"),
    "graph symlinked outside": (_symlink_out, "flow graph file 'flow.onnx' in model.json resolves to "
                                "{d}_outside/flow.onnx, outside the model directory {d} (symlink)"),
}


def _configure_fails_with(node, reason: str):
    assert node.change_state(Transition.TRANSITION_CONFIGURE) is False
    assert node.get_state() == "unconfigured"
    wait_for(lambda: f"configure failed: {reason}" in node.log(), 30, f"'{reason}' in the log")
    assert node.proc.poll() is None  # the node is still up


def test_out_of_range_schedule_at_start_fails_configure_until_fixed(node):
    _configure_fails_with(node, "schedule needs 1 <= min_interval <= max_interval <= 10000, got "
                          "min_interval=50 max_interval=30")
    # other parameters can be changed meanwhile (rclpy checks a multi-parameter set one at a time,
    # so a model fix sent before the schedule fix must not be refused for the schedule)
    assert all(r.successful for r in node.set_parameters(overlay_alpha=0.5))
    (refused,) = node.set_parameters(schedule__max_interval=40)  # a schedule change still out of range
    assert not refused.successful and "min_interval=50 max_interval=40" in refused.reason
    assert all(r.successful for r in node.set_parameters(schedule__min_interval=2))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_directory_fails_configure_with_reason(node, good_model, tmp_path, case):
    damage, reason = CASES[case]
    d = tmp_path / "model"
    shutil.copytree(good_model, d)
    path = damage(d)
    path = path if isinstance(path, Path) else d  # some damages name the path to configure
    assert all(r.successful for r in node.set_parameters(model=str(path), schedule__min_interval=2))
    _configure_fails_with(node, reason.format(d=d))


def test_fixed_in_place_then_symlinked_dir_configures_and_segments(node, good_model, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(good_model, d)
    original = (d / "model.json").read_text()
    (d / "model.json").write_text("{")
    assert all(r.successful for r in node.set_parameters(model=str(d), schedule__min_interval=2))
    _configure_fails_with(node, f"{d}/model.json is not valid JSON")
    (d / "model.json").write_text(original)  # fixed: the same node configures
    link = tmp_path / "current"
    os.symlink(d, link)  # models/current -> a versioned directory, as deployments do
    assert all(r.successful for r in node.set_parameters(model=f"{link}/../current"))
    assert node.change_state(Transition.TRANSITION_CONFIGURE) is True
    wait_for(lambda: f"configured: model {d} (onnxruntime" in node.log(), 30, "the resolved path in the log")
    assert "input 64x128 (HxW" in node.log()  # the model's size written as everywhere else
    node.subscribe(f"{NODE}/labels", Image)
    assert node.change_state(Transition.TRANSITION_ACTIVATE) is True
    node.wait_matched(f"{NODE}/labels")
    pub = node.image_publisher("/image")
    rgb = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    labels = node.send_and_wait(pub, rgb_image_msg(rgb, 1.0), f"{NODE}/labels")
    assert (labels.height, labels.width, labels.encoding) == (64, 128, "mono8")
    assert node.change_state(Transition.TRANSITION_DEACTIVATE) is True
    assert node.change_state(Transition.TRANSITION_CLEANUP) is True
