"""config/mpvss.rviz against rviz2 (Jazzy) and against the node's publishers.

RViz matches classes and property names by exact string and silently ignores an unknown one, so
a misspelt key (a QoS policy, "Normalize Range") would leave a display on its default. The names
below are those of rviz2's source: rviz_default_plugins/plugins_description.xml, the Image
display (image_display.cpp), RosTopicDisplay's "Topic" and QosProfileProperty
(qos_profile_property.cpp), rviz_common's panel factory, VisualizationManager and
VisualizationFrame.
"""
from __future__ import annotations

import pytest
import yaml
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from conftest import REPO
from mpvss_ros.ros.node import NODE_NAME
from mpvss_ros.ros.publishers import OutputPublishers

RVIZ = REPO / "config" / "mpvss.rviz"

IMAGE_KEYS = {"Class", "Enabled", "Name", "Value", "Topic",
              "Normalize Range", "Min Value", "Max Value", "Median window"}
TOPIC_KEYS = {"Value", "Depth", "History Policy", "Reliability Policy", "Durability Policy"}
POLICIES = {"History Policy": {"System Default", "Keep Last", "Keep All"},
            "Reliability Policy": {"System Default", "Reliable", "Best Effort"},
            "Durability Policy": {"System Default", "Transient Local", "Volatile"}}


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(RVIZ.read_text())


@pytest.fixture(scope="module")
def images(config):
    displays = config["Visualization Manager"]["Displays"]
    assert {d["Class"] for d in displays} == {"rviz_default_plugins/Image"}
    return {d["Topic"]["Value"].rsplit("/", 1)[-1]: d for d in displays}


@pytest.fixture(scope="module")
def publisher_qos():
    """{topic: QoSProfile} as OutputPublishers creates them (a stub node records the calls)."""
    created = {}

    class Node:
        def create_lifecycle_publisher(self, msg_type, topic, qos):
            created[topic] = qos
            return object()

    OutputPublishers(Node(), ["road"], [])
    return created


def test_top_level_layout_is_the_one_rviz2_loads(config):
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert {"Class", "Displays", "Enabled", "Global Options", "Name", "Tools", "Value",
            "Views"} <= set(manager)
    assert set(manager["Global Options"]) <= {"Background Color", "Fixed Frame", "Frame Rate"}
    assert [p["Class"] for p in config["Panels"]] == ["rviz_common/Displays"]
    assert set(config["Panels"][0]["Property Tree Widget"]) == {"Expanded", "Splitter Ratio"}
    assert [t["Class"] for t in manager["Tools"]] == ["rviz_default_plugins/Interact"]
    assert manager["Views"]["Current"]["Class"] == "rviz_default_plugins/Orbit"
    assert {"Width", "Height", "Hide Left Dock", "Hide Right Dock"} <= set(config["Window Geometry"])


def test_image_displays_use_only_real_property_names_and_policies(images):
    assert set(images) == {"overlay", "labels", "confidence"}
    for display in images.values():
        assert set(display) <= IMAGE_KEYS
        assert set(display["Topic"]) == TOPIC_KEYS
        for key, allowed in POLICIES.items():
            assert display["Topic"][key] in allowed


def test_topics_are_the_node_outputs_in_the_root_namespace(images, publisher_qos):
    for name, display in images.items():
        assert display["Topic"]["Value"] == f"/{NODE_NAME}/{name}"
        assert f"~/{name}" in publisher_qos


def test_display_qos_is_compatible_with_the_publishers(images, publisher_qos):
    for name, display in images.items():
        qos, topic = publisher_qos[f"~/{name}"], display["Topic"]
        if topic["Reliability Policy"] == "Reliable":
            assert qos.reliability == ReliabilityPolicy.RELIABLE
        if topic["Durability Policy"] == "Transient Local":
            assert qos.durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_confidence_maps_0_to_1_and_the_dark_labels_start_disabled(images):
    # RViz's own range estimate truncates min/max to integers (Median window > 1): off for 0..1
    confidence = images["confidence"]
    assert (confidence["Normalize Range"], confidence["Min Value"], confidence["Max Value"]) == (False, 0, 1)
    assert confidence["Enabled"] and images["overlay"]["Enabled"]
    # mono8 is drawn unscaled (ids 0..18 nearly black): the overlay is the view
    assert images["labels"]["Enabled"] is False and images["labels"]["Value"] is False
