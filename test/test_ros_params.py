"""config/segment.yaml against the node's declared parameters, and starting from it."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from mpvss_ros.ros import params as P
from test_ros_helpers import RosClient, node_command, wait_for

from conftest import REPO

YAML = REPO / "config" / "segment.yaml"
ROS_OWN = {"use_sim_time", "start_type_description_service"}  # declared by rclpy itself


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml_params() -> dict:
    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == ["/**"], "parameters must sit under /** so that namespacing works"
    return _flatten(doc["/**"]["ros__parameters"])


def test_yaml_has_every_declared_parameter_with_its_default():
    values = _yaml_params()
    assert set(values) == {s.name for s in P.SPECS}
    for spec in P.SPECS:
        assert values[spec.name] == spec.default, spec.name
        assert type(values[spec.name]) is type(spec.default), spec.name
        assert P.check_value(spec.name, values[spec.name]) is None
    # every parameter has a comment line above it in the file
    lines = YAML.read_text().splitlines()
    leaves = {n.split(".")[-1] for n in values}
    commented = [line.strip().split(":")[0] for i, line in enumerate(lines)
                 if line.strip().split(":")[0] in leaves and lines[i - 1].strip().startswith("#")]
    assert sorted(commented) == sorted(n.split(".")[-1] for n in values)


@pytest.mark.ros
def test_node_started_with_params_file_declares_exactly_the_yaml(ros_domain, spawn, tmp_path):
    spawn(node_command("--params-file", str(YAML), "-p", f"model:={tmp_path}", "-r", "__ns:=/robot1",
                       autostart=True), name="node")
    client = RosClient("/robot1/mpvss_segmenter")
    try:
        wait_for(lambda: client.get_state() == "active", 60, "node active (configured from the yaml)")
        names = set(client.list_parameters()) - ROS_OWN
        expected = _yaml_params()
        assert names == set(expected)
        got = client.get_parameters(sorted(expected))
        expected["model"] = str(tmp_path)  # overridden on the command line
        assert got == expected
        # what `ros2 param describe` and rqt show: the description and the accepted values
        described = {d.name: d for d in client.describe_parameters(["schedule.interval", "overlay_alpha",
                                                                    "backend"])}
        assert described["schedule.interval"].additional_constraints == \
            "integer in 1..10000; takes effect at once"
        assert described["overlay_alpha"].additional_constraints == "number in [0.0, 1.0]; takes effect at once"
        assert described["backend"].additional_constraints == \
            "one of: onnxruntime, torch; takes effect at the next configure"
        assert described["backend"].description == P.SPEC_BY_NAME["backend"].description
    finally:
        client.close()


def test_mpvss_node_rejects_a_missing_params_file(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "node", "--params",
                          str(tmp_path / "nope.yaml")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.strip() == f"mpvss node: error: parameter file not found: {tmp_path / 'nope.yaml'}"


@pytest.mark.ros
def test_mpvss_node_exits_with_the_configure_failure_reason(ros_domain, tmp_path):
    res = subprocess.run([sys.executable, "-m", "mpvss_ros.cli", "node", "--params", str(YAML),
                          "--ros-args", "-p", f"model:={tmp_path / 'missing'}"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 1
    assert f"configure failed: model directory not found: {tmp_path / 'missing'}" in res.stderr


@pytest.mark.ros
def test_a_schedule_change_beside_a_wrongly_typed_start_up_schedule_value_is_no_crash(ros_domain):
    """A wrong type from start-up (schedule.period_s: "abc") fails configure with a reason; a
    later change of another schedule parameter must be answered, not raise out of the
    parameter service (which ended the node process with a traceback)."""
    import rclpy
    from rclpy.parameter import Parameter

    from mpvss_ros.ros.node import SegmenterNode

    context = rclpy.Context()
    rclpy.init(args=["node", "--ros-args", "-p", "schedule.period_s:=abc"], context=context)
    try:
        # its own name: a destroyed node's services can stay visible to the next module's client
        # (same domain) until its DDS participant is collected, and a request sent there is lost
        node = SegmenterNode("mpvss_typed_params", context=context)
        try:
            (result,) = node.set_parameters([Parameter("schedule.mode", value="timer")])
            assert result.successful, result.reason
            (fixed,) = node.set_parameters([Parameter("schedule.period_s", value=0.5)])
            assert fixed.successful, fixed.reason
            (refused,) = node.set_parameters([Parameter("schedule.min_interval", value=99)])
            assert not refused.successful and "min_interval=99" in refused.reason
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
def test_whole_numbers_for_float_parameters_stay_floats(ros_domain):
    """`ros2 param set <node> schedule.period_s 2` (or `period_s: 2` in a file) sends an integer;
    with dynamic typing the parameter would turn into an integer (`ros2 param get` said
    "Integer value is: 2", dump wrote `period_s: 2`). The node keeps such values doubles."""
    import rclpy
    from rclpy.parameter import Parameter

    from mpvss_ros.ros.node import SegmenterNode

    context = rclpy.Context()
    rclpy.init(args=["node", "--ros-args", "-p", "schedule.period_s:=2", "-p", "overlay_alpha:=1"],
               context=context)
    try:
        node = SegmenterNode("mpvss_float_params", context=context)
        try:
            for name, value in (("schedule.period_s", 2.0), ("overlay_alpha", 1.0)):
                param = node.get_parameter(name)
                assert (param.type_, param.value) == (Parameter.Type.DOUBLE, value), name
            (result,) = node.set_parameters([Parameter("schedule.period_s", value=3)])
            assert result.successful, result.reason
            param = node.get_parameter("schedule.period_s")
            assert (param.type_, param.value) == (Parameter.Type.DOUBLE, 3.0)
            # integers stay integers, and a wrong type is still refused with the reason
            (kept,) = node.set_parameters([Parameter("schedule.interval", value=7)])
            assert kept.successful and node.get_parameter("schedule.interval").type_ == Parameter.Type.INTEGER
            (refused,) = node.set_parameters([Parameter("overlay_alpha", value="abc")])
            assert not refused.successful and "overlay_alpha must be a number" in refused.reason
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
