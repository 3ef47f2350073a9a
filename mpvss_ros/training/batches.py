"""Deterministic training batches: what step s sees depends only on (seed, s, rank).

That makes resuming exact without saving any sampler state, and shards the data like
DistributedSampler: each step draws `batch_size * world_size` items from an epoch-wise
permutation and rank r takes its own slice. One Dataset item is one whole batch, so a
DataLoader with `batch_size=None` and optional workers prefetches steps in order.

Augmentation keeps the scale of the data: a random crop (same window for a key/current pair)
and a horizontal flip (the x flow changes sign).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .frame_cache import FrameCache


def step_rng(seed: int, step: int, rank: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream), int(step), int(rank)])


class StepSampler:
    """Item indices for (step, rank): epoch permutations of `n_items`, sharded over ranks."""

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n_items <= 0:
            raise ValueError("no training items")
        self.n, self.batch, self.seed, self.rank, self.world = n_items, batch_size, seed, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([int(self.seed), 1, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        start = step * self.batch * self.world + self.rank * self.batch
        pos = start + np.arange(self.batch)
        return np.array([self._perm(int(p // self.n))[int(p % self.n)] for p in pos], dtype=np.int64)


def check_crop(crop: tuple[int, int] | None, size: tuple[int, int]) -> tuple[int, int]:
    """The crop (H, W) to use: the full frame when None; must fit and be a multiple of 32."""
    if crop is None:
        crop = size
    ch, cw = crop
    if ch > size[0] or cw > size[1]:
        raise ValueError(f"crop {ch}x{cw} is larger than the frames ({size[0]}x{size[1]})")
    if ch % 32 or cw % 32:
        raise ValueError(f"crop {ch}x{cw} must be a multiple of 32 in both sides (the backbone's stride)")
    return int(ch), int(cw)


def _window(rng: np.random.Generator, size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    return int(rng.integers(0, size[0] - crop[0] + 1)), int(rng.integers(0, size[1] - crop[1] + 1))


def composed_flow(cache: FrameCache, current: int, gap: int, y0: int, x0: int, crop: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow from frame `current` to `current - gap` on the crop window, by chaining the
    per-frame flows (bilinear). Valid where every link is valid and the end point lies inside the
    same window of the key frame (the network never sees anything else)."""
    h, w = cache.size
    ch, cw = crop
    xs, ys = np.meshgrid(np.arange(x0, x0 + cw, dtype=np.float32), np.arange(y0, y0 + ch, dtype=np.float32))
    px, py = xs.copy(), ys.copy()
    ok = np.ones((ch, cw), bool)
    for k in range(gap):
        frame = current - k
        flow = cache.flows[frame].astype(np.float32)
        f = cv2.remap(flow, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        v = cv2.remap(cache.flow_valid[frame].astype(np.float32), px, py, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        ok &= v > 0.999  # all bilinear neighbours valid: no smearing across occlusion edges
        px, py = px + f[..., 0], py + f[..., 1]
        ok &= (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    ok &= (px >= x0) & (px <= x0 + cw - 1) & (py >= y0) & (py <= y0 + ch - 1)
    flow = np.stack([px - xs, py - ys], axis=-1)
    flow[~ok] = 0.0
    return flow, ok


def _chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


class SegmentorBatches(Dataset):
    """Item i = the batch of step `start_step + i`: labelled frames, cropped and flipped."""

    def __init__(self, cache: FrameCache, batch_size: int, seed: int, start_step: int, end_step: int,
                 crop: tuple[int, int] | None = None, flip: bool = True, rank: int = 0, world_size: int = 1):
        self.cache, self.seed, self.rank, self.flip = cache, seed, rank, flip
        self.start, self.end = start_step, end_step
        self.crop = check_crop(crop, cache.size)
        self.items = cache.labelled_frames()
        self.sampler = StepSampler(len(self.items), batch_size, seed, rank, world_size)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        step = self.start + i
        rng = step_rng(self.seed, step, self.rank)
        ch, cw = self.crop
        images, labels = [], []
        for idx in self.items[self.sampler.indices(step)]:
            y0, x0 = _window(rng, self.cache.size, self.crop)
            img = self.cache.images[idx, y0:y0 + ch, x0:x0 + cw]
            lab = self.cache.train_ids[idx, y0:y0 + ch, x0:x0 + cw]
            if self.flip and rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            images.append(img)
            labels.append(lab)
        return {"image": _chw(np.stack(images)), "train_ids": torch.from_numpy(np.stack(labels))}


class PairBatches(Dataset):
    """Item i = the batch of step `start_step + i`: (key, current) pairs `1..max_gap` frames apart,
    the current frame labelled; with `with_flow`, the composed ground-truth backward flow too."""

    def __init__(self, cache: FrameCache, batch_size: int, seed: int, start_step: int, end_step: int,
                 max_gap: int, crop: tuple[int, int] | None = None, flip: bool = True, with_flow: bool = False,
                 rank: int = 0, world_size: int = 1):
        if max_gap < 1:
            raise ValueError(f"max key-frame gap must be >= 1, got {max_gap}")
        if with_flow and cache.flows is None:
            raise ValueError("flow batches need a cache loaded with flow")
        self.cache, self.seed, self.rank, self.flip, self.with_flow = cache, seed, rank, flip, with_flow
        self.start, self.end, self.max_gap = start_step, end_step, max_gap
        self.crop = check_crop(crop, cache.size)
        self.items = cache.propagation_targets(1)
        if len(self.items) == 0:
            raise ValueError("no labelled frame has an earlier frame in its sequence to serve as key frame")
        self.sampler = StepSampler(len(self.items), batch_size, seed, rank, world_size)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        step = self.start + i
        rng = step_rng(self.seed, step, self.rank)
        ch, cw = self.crop
        keys, images, labels, flows, valids, gaps = [], [], [], [], [], []
        for cur in self.items[self.sampler.indices(step)]:
            gap = int(rng.integers(1, min(self.max_gap, self.cache.position(cur)) + 1))
            y0, x0 = _window(rng, self.cache.size, self.crop)
            win = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            key, img, lab = self.cache.images[cur - gap][win], self.cache.images[cur][win], self.cache.train_ids[cur][win]
            flow = valid = None
            if self.with_flow:
                flow, valid = composed_flow(self.cache, int(cur), gap, y0, x0, self.crop)
            if self.flip and rng.random() < 0.5:
                key, img, lab = key[:, ::-1], img[:, ::-1], lab[:, ::-1]
                if flow is not None:
                    flow, valid = flow[:, ::-1] * np.array([-1.0, 1.0], np.float32), valid[:, ::-1]
            keys.append(key)
            images.append(img)
            labels.append(lab)
            gaps.append(gap)
            if flow is not None:
                flows.append(flow)
                valids.append(valid)
        batch = {"key_image": _chw(np.stack(keys)), "image": _chw(np.stack(images)),
                 "train_ids": torch.from_numpy(np.stack(labels)), "gap": torch.tensor(gaps)}
        if self.with_flow:
            batch["flow"] = torch.from_numpy(np.ascontiguousarray(np.stack(flows).transpose(0, 3, 1, 2)))
            batch["valid"] = torch.from_numpy(np.stack(valids))
        return batch

