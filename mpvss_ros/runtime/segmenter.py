"""VideoSegmenter: turns a stream of frames into segmentation results.

It owns the key-frame state: on a key frame the runner's segmentor runs and its queries, mask
logits and class logits are kept; on the frames in between the runner propagates them with the
query-based flow. The state is dropped (next frame is a key frame) when the resolution changes,
when message time goes backwards (a bag loop) or when the stream id changes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mpvss_ros.runtime.motion import motion_score, thumbnail
from mpvss_ros.runtime.preprocess import check_rgb_image, resize_image, resize_labels, resize_map
from mpvss_ros.runtime.schedule import KeyFrameSchedule

OUTPUT_SIZES = ("input", "inference")


@dataclass
class SegmentationResult:
    labels: np.ndarray          # (H, W) uint8 train ids at the output size
    key_frame: bool
    frames_since_key: int
    inference_ms: float
    motion_score: float | None
    reset_reason: str | None    # why the key state was dropped before this frame, if it was
    probs: np.ndarray = field(repr=False)  # (K, h, w) float32 at mask resolution
    # The runner's output: its confidence (at the model's input size) is computed, and
    # up-sampled to the output size, only when read (a node nobody asks for confidence from
    # pays nothing for it).
    model_output: object = field(repr=False, default=None)
    _confidence: np.ndarray | None = field(repr=False, default=None)

    @property
    def size(self) -> tuple[int, int]:
        return self.labels.shape[:2]

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) float32 max class probability at the output size."""
        if self._confidence is None:
            self._confidence = resize_map(self.model_output.confidence, self.size)
        return self._confidence

    @property
    def model_labels(self) -> np.ndarray:
        """(h, w) uint8 train ids at the model's input size (what `labels` is up-sampled from)."""
        return self.model_output.labels

    @property
    def model_confidence(self) -> np.ndarray:
        """(h, w) float32 max class probability at the model's input size."""
        return self.model_output.confidence

    def class_probability(self, train_id: int) -> np.ndarray:
        """(H, W) float32 probability of one class, up-sampled to the output size on demand."""
        return resize_map(np.ascontiguousarray(self.probs[train_id]), self.size)


class VideoSegmenter:
    def __init__(self, runner, schedule: KeyFrameSchedule | None = None, output_size: str = "input"):
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")
        self.runner = runner
        self.schedule = schedule or KeyFrameSchedule()
        self.output_size = output_size
        self._key_state = None
        self._key_thumb: np.ndarray | None = None
        self._input_shape: tuple[int, int] | None = None
        self._last_stamp: float | None = None
        self._stream: str | None = None
        self.frames = 0
        self.key_frames = 0

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.runner.input_size)

    def request_key_frame(self) -> None:
        self.schedule.request()

    def reset(self) -> None:
        """Drop the key-frame state; the next frame is a key frame."""
        self._key_state = None
        self._key_thumb = None
        self._input_shape = None
        self._last_stamp = None
        self._stream = None
        self.schedule.reset()

    def _reset_reason(self, shape: tuple[int, int], stamp_s: float, stream: str) -> str | None:
        if self._key_state is None:
            return None
        if shape != self._input_shape:
            return f"resolution changed from {self._input_shape[1]}x{self._input_shape[0]} to {shape[1]}x{shape[0]}"
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            return f"time went backwards ({stamp_s:.3f} s < {self._last_stamp:.3f} s)"
        if stream != self._stream:
            return f"stream changed from {self._stream!r} to {stream!r}"
        return None

    def process(self, image: np.ndarray, stamp_s: float, stream: str = "") -> SegmentationResult:
        """Segment one (H, W, 3) uint8 RGB frame with message time ``stamp_s`` seconds."""
        check_rgb_image(image)
        shape = image.shape[:2]
        reason = self._reset_reason(shape, stamp_s, stream)
        if reason is not None:
            self.reset()
        model_input = resize_image(image, self.input_size)
        # Always kept (cheap on the model-size image) so a switch to the motion schedule at
        # run time has a key thumbnail to compare against.
        thumb = thumbnail(model_input)
        score = None
        if self._key_thumb is not None:
            score = motion_score(self._key_thumb, thumb)
        key = self._key_state is None or self.schedule.decide(stamp_s, score)
        if key and self._key_state is None:
            # First frame of a stream: the schedule must count it as its key frame too.
            self.schedule.reset()
            self.schedule.decide(stamp_s, score)
        since = 0 if key else self.schedule.frames_since_key
        t0 = time.perf_counter()
        if key:
            self._key_state, out = self.runner.key_frame(model_input)
            self._key_thumb = thumb
            self.key_frames += 1
        else:
            out = self.runner.propagate(self._key_state, model_input)
        inference_ms = (time.perf_counter() - t0) * 1e3
        self._input_shape = shape
        self._last_stamp = stamp_s
        self._stream = stream
        self.frames += 1
        labels = resize_labels(out.labels, shape) if self.output_size == "input" else out.labels
        return SegmentationResult(
            labels=labels, key_frame=key, frames_since_key=since, inference_ms=inference_ms,
            motion_score=score, reset_reason=reason, probs=out.probs, model_output=out)
