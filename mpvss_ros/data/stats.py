"""Statistics of a Cityscapes-style split (used for docs/DATA.md).

  python -m mpvss_ros.data.stats --data DIR --split train [--max-sequences N] [--out stats.json]
Reports class pixel frequencies, mean ground-truth motion (px/frame over valid pixels), the
fraction of pixels per frame without a valid flow (occluded / disoccluded / leaving the view),
and the fraction of pixels whose label differs from the previous frame.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from mpvss_ros.data.cityscapes import CityscapesSequences
from mpvss_ros.data.labels import IGNORE, NUM_CLASSES, TRAIN_CLASS_NAMES


def split_statistics(root, split: str, max_sequences: int | None = None) -> dict:
    data = CityscapesSequences(root, split)
    seqs = data.sequences[:max_sequences] if max_sequences else data.sequences
    counts = np.zeros(NUM_CLASSES + 1, np.int64)  # last: ignore
    motion, invalid, changed = [], [], []
    frames = 0
    for seq in seqs:
        prev = None
        for i, f in enumerate(seq.frames):
            frames += 1
            labels = data.load_train_ids(f)
            if labels is not None:
                counts += np.bincount(np.where(labels == IGNORE, NUM_CLASSES, labels).ravel(),
                                      minlength=NUM_CLASSES + 1)
                if prev is not None:
                    changed.append(float((labels != prev).mean()))
            prev = labels
            flow = data.load_flow(f) if i > 0 else None
            if flow is not None:
                vectors, valid = flow
                invalid.append(float(1.0 - valid.mean()))
                if valid.any():
                    motion.append(float(np.linalg.norm(vectors[valid], axis=1).mean()))
    total = counts.sum()
    return {
        "root": str(root), "split": split, "sequences": len(seqs), "frames": frames,
        "class_pixel_fraction": {n: float(c / total) for n, c in zip(TRAIN_CLASS_NAMES + ("ignore",), counts)},
        "classes_present": int((counts[:NUM_CLASSES] > 0).sum()),
        "mean_motion_px_per_frame": float(np.mean(motion)) if motion else None,
        "p90_frame_motion_px": float(np.percentile(motion, 90)) if motion else None,
        "invalid_flow_fraction_per_frame": float(np.mean(invalid)) if invalid else None,
        "label_change_fraction_per_frame": float(np.mean(changed)) if changed else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--max-sequences", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the statistics as JSON")
    args = p.parse_args(argv)
    stats = split_statistics(args.data, args.split, args.max_sequences)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(stats, fh, indent=2)
    print(f"{stats['sequences']} sequences, {stats['frames']} frames, {stats['classes_present']} classes present")
    print("| class | pixel fraction |\n|---|---|")
    for name, frac in sorted(stats["class_pixel_fraction"].items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * frac:.2f} % |")
    for key in ("mean_motion_px_per_frame", "p90_frame_motion_px", "invalid_flow_fraction_per_frame",
                "label_change_fraction_per_frame"):
        v = stats[key]
        print(f"{key}: {'n/a' if v is None else f'{v:.4f}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
