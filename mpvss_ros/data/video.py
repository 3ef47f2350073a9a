"""A video file (mp4, avi, mkv, ... whatever OpenCV's FFmpeg build decodes) as bag frames.

`mpvss bag convert VIDEO --out BAG` writes it like a camera recording: every frame on the image
topic, named `<stem>_000000_<frame:06d>` (one Cityscapes-style sequence, so the node's replay and
reports treat it like any other), stamped at the video's own frame rate unless `--rate` is given.
There is no ground truth, so `mpvss bag evaluate` on such a bag reports latency, drops and key
fractions, and its overlay strip shows what the model made of the video.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2

from mpvss_ros.data.bag import DEFAULT_RATE_HZ, BagFrame, BagSummary, write_bag


@dataclass
class VideoInfo:
    path: Path
    fps: float | None  # None where the container does not say
    frames: int | None  # the container's count (an estimate for some formats)
    size: tuple[int, int]


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open it as a video")
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    return cap, VideoInfo(path, fps if 0 < fps < 1000 else None, count if count > 0 else None, size)


def sequence_name(path: Path) -> str:
    """The video's stem as a Cityscapes city name (no underscores: they separate the fields)."""
    return re.sub(r"[^A-Za-z0-9]+", "", path.stem) or "video"


def video_frames(cap: cv2.VideoCapture, info: VideoInfo, max_frames: int | None = None) -> Iterator[BagFrame]:
    city = sequence_name(info.path)
    index = 0
    try:
        while max_frames is None or index < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            yield BagFrame(name=f"{city}_000000_{index:06d}", image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                           label_ids=None)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise ValueError(f"{info.path}: no frame could be decoded")


def convert_video(path: str | Path, out: str | Path, rate_hz: float | None = None, progress: bool = True,
                  image_format: str = "raw", max_frames: int | None = None) -> tuple[BagSummary, VideoInfo]:
    """`mpvss bag convert VIDEO`: a video file -> rosbag2 MCAP bag (no ground truth)."""
    cap, info = open_video(path)
    rate = rate_hz or info.fps or DEFAULT_RATE_HZ
    total = min(info.frames, max_frames) if info.frames and max_frames else (info.frames or max_frames)
    summary = write_bag(video_frames(cap, info, max_frames), out, rate_hz=rate, total=total, progress=progress,
                        image_format=image_format)
    return summary, info
