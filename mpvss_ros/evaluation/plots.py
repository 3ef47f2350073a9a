"""PNG figures for evaluation reports: per-class IoU bars, latency histogram, mIoU over time
with key frames marked, and an overlay strip (input | labels | ground truth).

matplotlib runs on the Agg backend (no display needed); the overlay strip is plain numpy +
OpenCV so that it stays pixel-exact (colours from the Cityscapes palette in data.labels).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mpvss_ros.data.labels import colorize


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def per_class_iou_bars(per_class_iou: dict[str, float | None], path, title: str = "IoU per class") -> Path:
    """Horizontal bars, one per class; classes absent from the ground truth are marked n/a."""
    plt = _pyplot()
    names = list(per_class_iou)
    values = [per_class_iou[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y, [0.0 if v is None else v for v in values], color="#3b75af")
    for yi, v in zip(y, values):
        ax.text(0.01 if v is None else min(v, 0.9) + 0.01, yi, "n/a" if v is None else f"{v:.2f}",
                va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    return _save(fig, path)


def latency_histogram(latencies_ms: list[float], path, title: str = "Latency (input sent -> labels received)") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if latencies_ms:
        a = np.asarray(latencies_ms, np.float64)
        ax.hist(a, bins=min(40, max(5, len(a) // 3)), color="#3b75af")
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            v = float(np.percentile(a, q))
            ax.axvline(v, color="#c0392b", linestyle=style, label=f"p{q} {v:.1f} ms")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no answered frames", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("ms")
    ax.set_ylabel("frames")
    ax.set_title(title)
    return _save(fig, path)


def miou_over_time(timeline: list[dict], path, title: str = "mIoU per frame") -> Path:
    """Per-frame mIoU (ground-truth frames) against the frame index; key frames as red ticks,
    sequence starts as dotted lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for t in timeline:
        if t.get("new_sequence") and t["index"] > 0:
            ax.axvline(t["index"] - 0.5, color="#95a5a6", linestyle=":", linewidth=1)
    scored = [(t["index"], t["miou"]) for t in timeline if t.get("miou") is not None]
    if scored:
        x, y = zip(*scored)
        ax.plot(x, y, ".-", color="#3b75af", linewidth=1, markersize=3, label="frame mIoU")
    keys = [t["index"] for t in timeline if t.get("key_frame")]
    if keys:
        ax.vlines(keys, 0, 0.04, color="#c0392b", linewidth=1, label="key frame")
    missing = [t["index"] for t in timeline if not t.get("answered")]
    if missing:
        ax.vlines(missing, 0.96, 1.0, color="#7f8c8d", linewidth=1, label="no output")
    ax.set_ylim(0, 1)
    ax.set_xlabel("frame")
    ax.set_ylabel("mIoU")
    ax.set_title(title)
    if scored or keys or missing:
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _label_tile(labels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if labels is None:  # no output / no ground truth: a grey tile with a cross
        tile = np.full((*shape, 3), 64, np.uint8)
        cv2.line(tile, (0, 0), (shape[1] - 1, shape[0] - 1), (160, 160, 160), 1)
        cv2.line(tile, (0, shape[0] - 1), (shape[1] - 1, 0), (160, 160, 160), 1)
        return tile
    if labels.shape != shape:
        labels = cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return colorize(labels)  # void (255) is black


def overlay_strip(samples, path, max_width: int = 512) -> Path:
    """Rows of input | predicted labels | ground truth (train ids, Cityscapes colours).

    ``samples``: objects with ``image`` (H, W, 3) RGB, ``labels`` and ``ground_truth``
    ((H, W) train ids or None). Rows are scaled to at most ``max_width`` pixels per tile.
    """
    rows = []
    for s in samples:
        image = np.asarray(s.image, np.uint8)
        h, w = image.shape[:2]
        scale = min(1.0, max_width / w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        tiles = [cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA) if scale < 1 else image,
                 _label_tile(s.labels, (h, w)), _label_tile(s.ground_truth, (h, w))]
        tiles[1:] = [cv2.resize(t, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for t in tiles[1:]]
        gap = np.full((size[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    if not rows:
        raise ValueError("no frames for the overlay strip")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    strip = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path

