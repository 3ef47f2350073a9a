"""Procedural street sequences in the Cityscapes layout, with ground truth on every frame.

`generate(out, split, sequences, frames, size, seed)` writes, for every frame:
  leftImg8bit_sequence/<split>/<city>/<city>_<seq:06>_<frame:06>_leftImg8bit.png   RGB image
  gtFine/<split>/<city>/<city>_<seq:06>_<frame:06>_gtFine_labelIds.png             Cityscapes labelIds
  flow/<split>/<city>/<city>_<seq:06>_<frame:06>_flow.png                          KITTI flow to frame-1
Sequence i is drawn from numpy's generator seeded with (seed, i), so output does not depend on
the number of worker processes and the same seed gives identical bytes.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mpvss_ros.data import cityscapes, flow_io
from mpvss_ros.data.render import Renderer
from mpvss_ros.data.scene import make_scene

CITY = "synth"  # one pseudo-city; no underscore (Cityscapes file names split on "_")


def render_sequence(seed: int, index: int, frames: int, size: tuple[int, int]):
    """Yield (image, label_ids, flow, valid) for each frame of sequence `index`."""
    rng = np.random.default_rng([seed, index])
    renderer = Renderer(make_scene(rng, frames, size))
    prev_segments = None
    for t in range(frames):
        image, label_ids, obj, prev_points = renderer.render(t)
        segments = renderer.segment_ids(obj, label_ids)
        if prev_segments is None:  # the first frame has no predecessor: all flow invalid
            flow = np.zeros(size + (2,), np.float32)
            valid = np.zeros(size, bool)
        else:
            flow, valid = renderer.backward_flow(t, segments, prev_points, prev_segments)
        prev_segments = segments
        yield image, label_ids, flow, valid


def _write_sequence(job) -> int:
    out, split, seed, index, frames, size = job
    for t, (image, label_ids, flow, valid) in enumerate(render_sequence(seed, index, frames, size)):
        cityscapes.write_image(cityscapes.image_path(out, split, CITY, index, t), image)
        cityscapes.write_label_ids(cityscapes.label_path(out, split, CITY, index, t), label_ids)
        flow_io.write_flow_png(cityscapes.flow_path(out, split, CITY, index, t), flow, valid)
    return frames


def generate(out, split: str = "train", sequences: int = 10, frames: int = 30,
             size: tuple[int, int] = (256, 512), seed: int = 0, workers: int | None = None,
             progress: bool = True) -> dict:
    """Write `sequences` x `frames` frames; returns the parameters (also saved as generator.json)."""
    if sequences <= 0 or frames <= 0:
        raise ValueError("sequences and frames must be positive")
    if size[0] < 32 or size[1] < 32:
        raise ValueError(f"image size must be at least 32x32, got {size[0]}x{size[1]}")
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"bad split name {split!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(len(os.sched_getaffinity(0)), sequences)
    jobs = [(str(out), split, seed, i, frames, tuple(size)) for i in range(sequences)]
    from tqdm import tqdm

    bar = tqdm(total=sequences * frames, unit="frame", desc=f"make-sequences {split}", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                bar.update(_write_sequence(job))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for n in pool.map(_write_sequence, jobs):
                    bar.update(n)
    finally:
        bar.close()
    params = {"generator": "mpvss_ros.data.generator", "split": split, "sequences": sequences,
              "frames": frames, "size": list(size), "seed": seed, "city": CITY,
              "flow_format": "KITTI 16-bit PNG, backward flow to the previous frame (see docs/DATA.md)"}
    meta = out / "generator.json"
    existing = json.loads(meta.read_text()) if meta.is_file() else {}
    existing[split] = params
    meta.write_text(json.dumps(existing, indent=2) + "\n")
    return params
