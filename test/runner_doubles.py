"""A deterministic numpy Runner for testing the runtime without a model.

It "segments" by brightness bands (labels = mean RGB // 32 clipped to 0..7) and records each call,
so tests can check which frames were key frames and what image the runner saw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BandKeyState:
    labels: np.ndarray


@dataclass
class BandOutput:
    labels: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray
    mask_logits: np.ndarray


class BandRunner:
    backend = "test-bands"
    providers = ["numpy"]

    def __init__(self, input_size=(32, 64), num_classes=19):
        self.input_size = input_size
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.calls: list[str] = []
        self.seen_shapes: list[tuple] = []

    def _output(self, labels: np.ndarray) -> BandOutput:
        h, w = self.input_size
        k = len(self.class_names)
        probs = np.zeros((k, h // 4, w // 4), np.float32)
        small = labels[::4, ::4]
        for c in range(k):
            probs[c] = (small == c) * 0.9
        return BandOutput(labels, np.full(labels.shape, 0.9, np.float32), probs,
                          np.zeros((k, h // 4, w // 4), np.float32))

    def key_frame(self, image):
        self.calls.append("key")
        self.seen_shapes.append(image.shape)
        labels = np.clip(image.mean(axis=2) // 32, 0, 7).astype(np.uint8)
        return BandKeyState(labels), self._output(labels)

    def propagate(self, key, image):
        self.calls.append("propagate")
        self.seen_shapes.append(image.shape)
        return self._output(key.labels)  # copy propagation
