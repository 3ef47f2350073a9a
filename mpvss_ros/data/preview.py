"""A picture strip of a sequence: image | labels (Cityscapes palette) | ground-truth flow.

  python -m mpvss_ros.data.preview --data DIR --split train --sequence 0 --frames 0,10,20 --out strip.png
Flow is drawn in the usual colour wheel (hue = direction, brightness = magnitude); pixels without
a valid flow (occluded, or frame 0) are black.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.labels import colorize


def flow_to_rgb(flow: np.ndarray, valid: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    mag, ang = cv2.cartToPolar(flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32))
    top = max_magnitude or max(float(np.percentile(mag[valid], 99)) if valid.any() else 1.0, 1e-3)
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (ang * 90 / np.pi).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / top * 255, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb[~valid] = 0
    return rgb


def strip(root, split: str, sequence: int, frames: list[int]) -> np.ndarray:
    data = CityscapesSequences(root, split)
    seq = data[sequence]
    rows = []
    for t in frames:
        f = seq.frames[t]
        image = data.load_image(f)
        labels = data.load_train_ids(f)
        cols = [image, colorize(labels) if labels is not None else np.zeros_like(image)]
        flow = data.load_flow(f)
        if flow is not None:
            cols.append(flow_to_rgb(*flow))
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cols], 1))
    return np.concatenate(rows, 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--sequence", type=int, default=0)
    p.add_argument("--frames", default="0,10,20")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    picture = strip(args.data, args.split, args.sequence, [int(v) for v in args.frames.split(",")])
    cv2.imwrite(args.out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
