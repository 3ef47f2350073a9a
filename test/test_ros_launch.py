"""launch/segment.launch.py under a real launch_ros.

launch and launch_ros are not on PyPI (apt ROS 2 installs have them), so these tests skip
where launch_ros cannot be imported; where it can, the description must resolve (name,
namespace, remap, parameter file, use_sim_time) and a real LaunchService must take the node to
Active through the lifecycle events (autostart), where it segments frames.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

from conftest import REPO

launch_ros = pytest.importorskip("launch_ros", reason="launch_ros (ROS 2 apt package) not installed")

LAUNCH_FILE = REPO / "launch" / "segment.launch.py"


def _description():
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _resolve(arguments: dict):
    """(entities after the OpaqueFunction ran, context, the resolved LifecycleNode)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import LifecycleNode

    ld = _description()
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    entities = []
    for entity in ld.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)  # fills in defaults for arguments not given
        if isinstance(entity, OpaqueFunction):
            entities += entity.execute(context)  # what launch does when it visits one
        else:
            entities.append(entity)
    (node,) = [e for e in entities if isinstance(e, LifecycleNode)]
    node._perform_substitutions(context)  # what launch_ros' own tests call to resolve a Node
    return entities, context, node


def _parameters(node) -> dict:
    """The node's parameters as launch_ros passes them (files it wrote, in order)."""
    values = {}
    for path, is_file in node._Node__expanded_parameter_arguments:
        if is_file:
            with open(path) as fh:
                for params in yaml.safe_load(fh).values():
                    values.update(params["ros__parameters"])
    return values


def test_launch_description_resolves(tmp_path):
    from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler

    entities, context, node = _resolve({"namespace": "robot1", "image": "/front/image_raw",
                                        "use_sim_time": "true"})
    args = {e.name: e for e in entities if isinstance(e, DeclareLaunchArgument)}
    assert set(args) == {"params_file", "namespace", "image", "input_transport", "use_sim_time", "autostart"}
    assert node.node_package == "mpvss_ros" and node.node_executable == "mpvss_node"
    assert node.node_name == "/robot1/mpvss_segmenter"
    assert node.expanded_node_namespace == "/robot1"
    assert node.expanded_remapping_rules == [("image", "/front/image_raw")]
    # default parameter file: the installed config/segment.yaml
    from ament_index_python.packages import get_package_share_directory
    expected_yaml = f"{get_package_share_directory('mpvss_ros')}/config/segment.yaml"
    assert context.launch_configurations["params_file"] == expected_yaml
    assert context.launch_configurations["autostart"] == "true"
    # autostart: a configure event and an activate-on-inactive handler, both conditional
    assert any(isinstance(e, EmitEvent) for e in entities)
    assert any(isinstance(e, RegisterEventHandler) for e in entities)
    # use_sim_time reaches the node as a boolean parameter
    assert _parameters(node).get("use_sim_time") is True


def test_input_transport_argument_overrides_the_file_only_when_given(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"input_transport": "compressed"}}}))
    _, _, node = _resolve({"params_file": str(params)})  # not given: the file's value stands
    assert _parameters(node)["input_transport"] == "compressed"
    _, _, node = _resolve({"params_file": str(params), "input_transport": "raw"})
    assert _parameters(node)["input_transport"] == "raw"
    _, _, node = _resolve({"input_transport": "compressed"})  # the installed file says raw
    assert _parameters(node)["input_transport"] == "compressed"


@pytest.mark.ros
def test_launch_service_autostarts_the_node(ros_domain, spawn, tmp_path):
    from lifecycle_msgs.msg import Transition
    from mpvss_ros.model.export import export_random_model
    from sensor_msgs.msg import Image
    from test_ros_helpers import RosClient, rgb_image_msg, wait_for

    model = export_random_model(tmp_path / "model", size=(64, 128))
    params = tmp_path / "params.yaml"
    doc = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())
    doc["/**"]["ros__parameters"]["model"] = str(model)
    params.write_text(yaml.safe_dump(doc))
    script = textwrap.dedent(f"""
        import sys
        from launch import LaunchDescription, LaunchService
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        # SIGINT comes to this process by PID, not to a terminal's process group: noninteractive
        # makes launch forward it to the node (else it waits 5 s and escalates to SIGTERM)
        ls = LaunchService(noninteractive=True)
        ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(
            PythonLaunchDescriptionSource({str(LAUNCH_FILE)!r}),
            launch_arguments={{"params_file": {str(params)!r}, "namespace": "robot1",
                               "image": "/front/image_raw"}}.items())]))
        sys.exit(ls.run())
    """)
    launcher = spawn([sys.executable, "-c", script], name="launch")
    client = RosClient("/robot1/mpvss_segmenter")
    try:
        wait_for(lambda: launcher.poll() is None and client.get_state() == "active", 120,
                 "the launched node to become active")
        client.subscribe("/robot1/mpvss_segmenter/labels", Image)
        client.wait_matched("/robot1/mpvss_segmenter/labels")
        pub = client.image_publisher("/front/image_raw")
        labels = client.send_and_wait(pub, rgb_image_msg(np.zeros((64, 128, 3), np.uint8), 7.0, "cam"),
                                      "/robot1/mpvss_segmenter/labels")
        assert (labels.height, labels.width, labels.encoding) == (64, 128, "mono8")
        assert "configured, activating" in launcher.log_text()
        # the launched node still takes outside transitions, and autostart does not undo them:
        # deactivate stays Inactive, and cleanup + configure (another model, say) stays Inactive
        # too (the activate-on-configure handler fires once)
        assert client.change_state(Transition.TRANSITION_DEACTIVATE) is True
        assert client.change_state(Transition.TRANSITION_CLEANUP) is True
        assert client.change_state(Transition.TRANSITION_CONFIGURE) is True
        time.sleep(2.0)  # an activate event would come within milliseconds of the transition
        assert client.get_state() == "inactive"
        assert launcher.log_text().count("configured, activating") == 1
    finally:
        client.close()
