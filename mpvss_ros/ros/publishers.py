"""The node's output topics, built only for topics somebody subscribes to.

Every publisher is a lifecycle publisher (silent unless the node is Active). Each frame, a
message is built only when ``get_subscription_count() > 0`` for its topic: an unwatched
1024x2048 overlay or 32FC1 map costs nothing.

``~/label_info`` is a std_msgs/String holding JSON (class names, train ids, Cityscapes labelIds,
palette), published once per activation with transient-local durability so late subscribers
get it. vision_msgs/LabelInfo would be the standard message, but vision_msgs is not available
from PyPI, and the node must run from the PyPI wheels.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from mpvss_ros.data.labels import IGNORE, TRAIN_ID_TO_LABEL_ID, TRAIN_ID_TO_LABEL_ID_LIST, colorize
from mpvss_ros.msg import ClassStats
from mpvss_ros.ros.conversions import float_to_image, labels_to_image, rgb_to_image
from mpvss_ros.runtime.preprocess import resize_image

OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def label_info_json(class_names, palette, label_format: str, model: str) -> str:
    return json.dumps({
        "class_names": list(class_names),
        "train_ids": list(range(len(class_names))),
        "label_ids": list(TRAIN_ID_TO_LABEL_ID_LIST[: len(class_names)]),
        "palette": [[int(c) for c in rgb] for rgb in palette],
        "ignore_train_id": IGNORE,
        "label_format": label_format,
        "model": model,
    })


def class_stats(labels: np.ndarray, confidence: np.ndarray, num_classes: int):
    """(mean confidence per class over its pixels, pixel fraction per class)."""
    flat = labels.ravel()
    # cv2's histogram reads uint8 directly (np.bincount first widens 2M labels to int64): ~10x faster
    counts = cv2.calcHist([np.ascontiguousarray(labels, np.uint8)], [0], None, [256], [0, 256])[:num_classes, 0]
    counts = counts.astype(np.float64)
    conf_sum = np.bincount(flat, weights=confidence.ravel(), minlength=256)[:num_classes]
    mean = np.divide(conf_sum, counts, out=np.zeros(num_classes), where=counts > 0)
    return mean.astype(np.float32), (counts / max(flat.size, 1)).astype(np.float32)


class OutputPublishers:
    def __init__(self, node, class_names, confidence_classes: list[tuple[int, str]]):
        self.node = node
        self.class_names = list(class_names)
        self.labels = node.create_lifecycle_publisher(Image, "~/labels", OUTPUT_QOS)
        self.confidence = node.create_lifecycle_publisher(Image, "~/confidence", OUTPUT_QOS)
        self.overlay = node.create_lifecycle_publisher(Image, "~/overlay", OUTPUT_QOS)
        self.stats = node.create_lifecycle_publisher(ClassStats, "~/class_stats", OUTPUT_QOS)
        self.label_info = node.create_lifecycle_publisher(String, "~/label_info", LATCHED_QOS)
        self.class_maps = [
            (train_id, node.create_lifecycle_publisher(Image, f"~/class_confidence/{suffix}", OUTPUT_QOS))
            for train_id, suffix in confidence_classes]

    def all(self):
        return [self.labels, self.confidence, self.overlay, self.stats, self.label_info] + \
            [pub for _, pub in self.class_maps]

    def destroy(self) -> None:
        for pub in self.all():
            self.node.destroy_lifecycle_publisher(pub)

    def publish_label_info(self, palette, label_format: str, model: str) -> None:
        self.label_info.publish(String(data=label_info_json(self.class_names, palette, label_format, model)))

    def publish(self, result, rgb: np.ndarray, header, *, label_format: str, overlay_alpha: float,
                total_ms: float) -> None:
        """Publish every watched output of one SegmentationResult for the frame ``rgb``."""
        if self.labels.get_subscription_count():
            labels = result.labels
            if label_format == "labelid":
                labels = TRAIN_ID_TO_LABEL_ID[labels]
            self.labels.publish(labels_to_image(labels, header))
        if self.confidence.get_subscription_count():
            self.confidence.publish(float_to_image(result.confidence, header))
        if self.overlay.get_subscription_count():
            self.overlay.publish(rgb_to_image(overlay(rgb, result.labels, overlay_alpha), header))
        for train_id, pub in self.class_maps:
            if pub.get_subscription_count():
                pub.publish(float_to_image(result.class_probability(train_id), header))
        if self.stats.get_subscription_count():
            # at the model's resolution: the output is an up-sampling of it, and the statistics
            # over 4-16x fewer pixels skip the full-resolution confidence altogether
            mean, fraction = class_stats(result.model_labels, result.model_confidence, len(self.class_names))
            msg = ClassStats()
            msg.header = header
            msg.class_names = self.class_names
            msg.mean_confidence = mean.tolist()
            msg.pixel_fraction = fraction.tolist()
            msg.key_frame = bool(result.key_frame)
            msg.frames_since_key = int(result.frames_since_key)
            msg.inference_ms = float(result.inference_ms)
            msg.total_ms = float(total_ms)
            self.stats.publish(msg)


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Blend the class colours over the frame (at the label image's size); void stays as is."""
    base = resize_image(rgb, labels.shape[:2])
    colours = colorize(labels)
    out = cv2.addWeighted(base, 1.0 - alpha, colours, alpha, 0.0)
    void = labels == IGNORE
    if void.any():
        out[void] = base[void]
    return out
