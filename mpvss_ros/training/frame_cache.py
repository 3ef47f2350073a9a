"""All frames of a split decoded once into uint8 numpy arrays (no PNG decoding per step).

Images, train ids and (optionally) the per-frame ground-truth backward flow to the previous
frame are held in memory; DataLoader workers started by fork share them copy-on-write. A
256x512 frame costs 0.4 MB (image) + 0.13 MB (labels) + 0.5 MB (float16 flow), so the
default 600-frame training split fits in about 0.6 GB. A split too large for memory (real
Cityscapes at 1024x2048: 8 MB a frame) goes to memory-mapped files in a cache directory
instead, read through the page cache: the same arrays to the code that samples batches.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IGNORE = 255


@dataclass
class FrameCache:
    images: np.ndarray  # (F, H, W, 3) uint8 RGB
    train_ids: np.ndarray  # (F, H, W) uint8, 255 = ignore (also for frames without ground truth)
    has_labels: np.ndarray  # (F,) bool
    seq_start: np.ndarray  # (F,) index of the first frame of the frame's sequence
    flows: np.ndarray | None = None  # (F, H, W, 2) float16 backward flow to the previous frame
    flow_valid: np.ndarray | None = None  # (F, H, W) bool

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def position(self, index: int) -> int:
        """How many frames of the same sequence precede frame `index`."""
        return int(index - self.seq_start[index])

    def labelled_frames(self) -> np.ndarray:
        return np.flatnonzero(self.has_labels)

    def propagation_targets(self, min_gap: int = 1) -> np.ndarray:
        """Labelled frames with at least `min_gap` earlier frames in their sequence (the current
        frames of key -> current pairs; the gap itself is drawn per step)."""
        cur = [i for i in self.labelled_frames() if self.position(i) >= min_gap]
        return np.asarray(cur, dtype=np.int64)


def used_runs(frames, context: int | None) -> list[list]:
    """The runs of consecutive frames that training can use: each labelled frame and the `context`
    frames before it (None: all frames, one run)."""
    if context is None:
        return [list(frames)]
    keep = np.zeros(len(frames), bool)
    for j, f in enumerate(frames):
        if f.label_path is not None:
            keep[max(0, j - context):j + 1] = True
    runs, run = [], []
    for f, k in zip(frames, keep):
        if k:
            run.append(f)
        elif run:
            runs.append(run)
            run = []
    return runs + [run] if run else runs


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """`count` indices spread evenly over `indices` (all of them if fewer)."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def scored_windows(frames: list, starts: list[int], context: int, count: int) -> tuple[list, list[int], set]:
    """Validation keeps only what it scores: `count` labelled frames spread evenly over those with
    `context` earlier frames in their run (the same ones validation would pick from the whole
    split), each with those frames. -> (frames, run starts, indices into them of the scored ones)."""
    eligible = np.asarray([i for i, f in enumerate(frames) if f.label_path is not None
                           and i - starts[i] >= context], np.int64)
    scored = {int(c) for c in spread(eligible, count)}
    keep = sorted({j for c in scored for j in range(c - context, c + 1)})
    out, out_starts, out_scored = [], [], set()
    for n, i in enumerate(keep):
        contiguous = n > 0 and keep[n - 1] == i - 1 and starts[i] == starts[i - 1]
        out_starts.append(out_starts[-1] if contiguous else n)
        out.append(frames[i])
        if i in scored:
            out_scored.add(n)
    return out, out_starts, out_scored


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def frame_bytes(size: tuple[int, int], with_flow: bool) -> int:
    """Bytes one decoded frame takes in a FrameCache."""
    h, w = size
    return h * w * (3 + 1 + (4 + 1 if with_flow else 0))


def _arrays(n: int, size: tuple[int, int], with_flow: bool, cache_dir: Path | None, name: str) -> dict:
    """The cache's arrays, in memory or (cache_dir) as .npy files mapped into memory."""
    h, w = size
    shapes = {"images": ((n, h, w, 3), np.uint8), "train_ids": ((n, h, w), np.uint8)}
    if with_flow:
        shapes.update(flows=((n, h, w, 2), np.float16), flow_valid=((n, h, w), bool))
    if cache_dir is None:
        return {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, (shape, dtype) in shapes.items():
        # Unlinked once mapped: another run given the same directory creates its own file instead
        # of truncating this one under us (SIGBUS, or its frames in ours), and the disk space comes
        # back when this process ends, however it ends. Forked DataLoader workers inherit the map.
        path = cache_dir / f"{name}.{os.getpid()}.{k}.npy"
        arrays[k] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        path.unlink()
    return arrays


def load_split(root: str | Path, split: str, with_flow: bool = False, max_frames: int | None = None,
               threads: int = 4, context: int | None = None, cache_dir: str | Path | None = None,
               cache_name: str | None = None, scored: int | None = None) -> FrameCache:
    """Decode the frames of `root`/`split` (Cityscapes layout) into a FrameCache: all of them, or
    with `context` only each labelled frame and the `context` frames before it (real Cityscapes
    labels one frame in 30; its other frames would cost memory and never be used). Each kept run
    of frames counts as a sequence of its own.

    With `cache_dir` the arrays are memory-mapped .npy files there (`cache_name`.<pid>.images.npy,
    ..., removed from the directory as soon as they are mapped). Without it, a split that would
    take more than half of this machine's memory is refused up front with its size, rather than
    the process being killed half-way.

    With `scored` (validation), only that many labelled frames keep their labels, each with its
    `context` frames (`scored_windows`): Cityscapes val at full size would otherwise decode its
    500 labelled frames and their context, about 25 GB, to score 16."""
    from mpvss_ros.data.cityscapes import CityscapesSequences

    seqs = CityscapesSequences(root, split)
    frames, starts = [], []
    for s in seqs:
        for run in used_runs(s.frames, context):
            first = len(frames)
            for f in run:
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(f)
                starts.append(first)
    labelled = None  # indices whose labels are decoded: all labelled frames
    if scored is not None and frames:
        frames, starts, labelled = scored_windows(frames, starts, context or 0, scored)
        if not frames:
            raise ValueError(f"{root}/{split}: no labelled frame has {context or 0} earlier frames to validate "
                             "with (lower --val-gap or use longer sequences)")
    if not frames:
        raise ValueError(f"no frames in {root}/{split}")
    if not any(f.label_path is not None for f in frames):
        raise ValueError(f"no ground-truth labels (gtFine/*_labelIds.png) in {root}/{split}")
    if with_flow and not any(f.flow_path is not None for f in frames):
        # real Cityscapes has none: say how to train without it
        raise ValueError(f"no ground-truth flow (flow/*_flow.png) in {root}/{split} for the pixel-flow "
                         "pre-training; pass --pretrain-steps 0 to train with the mask loss only")

    def decode(i):
        frame = frames[i]
        image = seqs.load_image(frame)
        labels = seqs.load_train_ids(frame) if labelled is None or i in labelled else None
        flow = seqs.load_flow(frame) if with_flow else None
        return image, labels, flow

    n = len(frames)
    first = decode(0)
    h, w = first[0].shape[:2]
    # every process of a torchrun job on this host decodes its own copy
    copies = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    need, ram = copies * n * frame_bytes((h, w), with_flow), physical_memory_bytes()
    if cache_dir is None and ram is not None and need > ram // 2:
        times = f" × {copies} processes" if copies > 1 else ""
        raise ValueError(f"{root}/{split}: {n} frames of {w}x{h}{times} take {need / 2**30:.1f} GB decoded, "
                         f"more than half of this machine's {ram / 2**30:.1f} GB; pass --cache-dir DIR (a "
                         "disk with that much room: the frames go to memory-mapped files there)")
    arrays = _arrays(n, (h, w), with_flow, Path(cache_dir) if cache_dir is not None else None,
                     cache_name or split)
    arrays["train_ids"][:] = IGNORE
    has_labels = np.zeros(n, bool)
    with ThreadPoolExecutor(max(1, threads)) as pool:  # cv2 decodes without the GIL
        for i, (image, labels, flow) in enumerate(_decoded(pool, decode, first, range(1, n), 4 * max(1, threads))):
            if image.shape[:2] != (h, w):
                raise ValueError(f"frames differ in size: {frames[i].image_path} is {image.shape[:2]}, "
                                 f"expected {(h, w)}")
            arrays["images"][i] = image
            if labels is not None:
                arrays["train_ids"][i] = labels
                has_labels[i] = True
            if with_flow and flow is not None:
                arrays["flows"][i] = flow[0]
                arrays["flow_valid"][i] = flow[1]
    return FrameCache(arrays["images"], arrays["train_ids"], has_labels, np.asarray(starts, np.int64),
                      arrays.get("flows"), arrays.get("flow_valid"))


def _decoded(pool, decode, first, rest, chunk: int):
    """`first`, then decode(f) for f in `rest`, in order, a chunk at a time: the frames held
    besides the cache's arrays stay a few, whatever the split's size."""
    yield first
    for i in range(0, len(rest), chunk):
        yield from pool.map(decode, rest[i:i + chunk])
