"""Training data path: toy sequences with exact flow, the frame cache, deterministic batches and
flow composition. `make_toy_sequences` is shared by the other test_train*.py files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mpvss_ros.data.cityscapes import write_frame

ROAD, SKY, PERSON, CAR = 0, 10, 11, 13


def make_toy_sequences(root, split: str, sequences: int = 2, frames: int = 6, size=(64, 128), seed: int = 0) -> None:
    """Textured boxes moving with constant velocity over a static textured scene: labels and the
    exact backward flow (invalid where the background was covered one frame earlier)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for s in range(sequences):
        noise = rng.integers(0, 60, (h, w, 3))
        background = np.where(np.arange(h)[:, None, None] < h // 2, [90, 140, 220], [110, 100, 105]) + noise
        background_ids = np.where(np.arange(h)[:, None] < h // 2, SKY, ROAD).repeat(w, 1)
        boxes = []
        for cls, colour in ((CAR, (200, 30, 30)), (PERSON, (30, 200, 60))):
            bh, bw = int(rng.integers(h // 5, h // 3)), int(rng.integers(w // 8, w // 5))
            tex = np.clip(np.array(colour) + rng.integers(-40, 40, (bh, bw, 3)), 0, 255)
            y, x = int(rng.integers(h // 4, h - bh - 4)), int(rng.integers(4, w // 2))
            v = (int(rng.choice([-1, 1]) * rng.integers(2, 4)), int(rng.integers(-1, 2)))  # (vx, vy) px/frame
            boxes.append((cls, tex, y, x, v))
        prev_cover = None
        for t in range(frames):
            image = background.copy()
            ids = background_ids.copy()
            flow = np.zeros((h, w, 2), np.float32)
            cover = np.zeros((h, w), bool)
            for cls, tex, y, x, (vx, vy) in boxes:
                yy, xx = y + vy * t, x + vx * t
                y0, y1, x0, x1 = max(yy, 0), min(yy + tex.shape[0], h), max(xx, 0), min(xx + tex.shape[1], w)
                if y1 <= y0 or x1 <= x0:
                    continue
                image[y0:y1, x0:x1] = tex[y0 - yy:y1 - yy, x0 - xx:x1 - xx]
                ids[y0:y1, x0:x1] = cls
                flow[y0:y1, x0:x1] = (-vx, -vy)
                cover[y0:y1, x0:x1] = True
            valid = np.ones((h, w), bool) if t > 0 else np.zeros((h, w), bool)
            if prev_cover is not None:
                valid &= cover | ~prev_cover  # background uncovered since the last frame: no source
            prev_cover = cover
            write_frame(root, split, "toy", s, t, np.clip(image, 0, 255).astype(np.uint8), ids.astype(np.uint8),
                        flow if t > 0 else None, valid if t > 0 else None)


def label_only_frame(root, split: str, index: int) -> None:
    """Real Cityscapes: ground truth on one frame per sequence (its 20th), no flow files."""
    import shutil

    shutil.rmtree(root / "flow" / split, ignore_errors=True)
    for p in (root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"):
        if int(p.name.split("_")[2]) != index:
            p.unlink()


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_sequences(root, "train", sequences=2, frames=6)
    make_toy_sequences(root, "val", sequences=1, frames=6, seed=1)
    return root


def test_cache_holds_every_frame(toy_root):
    from mpvss_ros.training.frame_cache import load_split

    cache = load_split(toy_root, "train", with_flow=True)
    assert cache.images.shape == (12, 64, 128, 3) and cache.images.dtype == np.uint8
    assert cache.has_labels.all()
    assert set(np.unique(cache.train_ids)) <= {ROAD, SKY, PERSON, CAR}
    assert [cache.position(i) for i in range(6)] == [0, 1, 2, 3, 4, 5]
    assert cache.position(7) == 1
    assert len(cache.propagation_targets(1)) == 10  # first frame of each sequence has no key
    assert not cache.flow_valid[0].any() and cache.flow_valid[1].mean() > 0.8


def test_cache_keeps_only_frames_training_can_use(toy_root, tmp_path):
    """With ground truth on one frame in 8, only it and the `context` frames before it are
    decoded (each kept run its own sequence); fully labelled data keeps every frame."""
    from mpvss_ros.training.frame_cache import load_split

    make_toy_sequences(tmp_path, "train", sequences=2, frames=8)
    label_only_frame(tmp_path, "train", 5)
    cache = load_split(tmp_path, "train", context=3)
    assert len(cache) == 8 and cache.has_labels.tolist() == [False, False, False, True] * 2
    assert [cache.position(i) for i in range(8)] == [0, 1, 2, 3] * 2
    assert cache.propagation_targets(3).tolist() == [3, 7]
    full = load_split(tmp_path, "train")
    assert np.array_equal(cache.images[:4], full.images[2:6])
    assert len(load_split(tmp_path, "train", context=0)) == 2
    assert len(load_split(toy_root, "train", context=3)) == 12


def test_cache_in_memory_mapped_files_equals_the_one_in_memory(toy_root, tmp_path):
    from mpvss_ros.training.frame_cache import load_split

    held = load_split(toy_root, "train", with_flow=True)
    mapped = load_split(toy_root, "train", with_flow=True, cache_dir=tmp_path / "c", cache_name="train.rank0")
    assert isinstance(mapped.images, np.memmap) and isinstance(mapped.flows, np.memmap)
    assert not any((tmp_path / "c").iterdir())  # unlinked once mapped: nothing left behind
    for name in ("images", "train_ids", "has_labels", "seq_start", "flows", "flow_valid"):
        assert np.array_equal(getattr(held, name), getattr(mapped, name)), name
    assert mapped.propagation_targets(1).tolist() == held.propagation_targets(1).tolist()


def test_runs_sharing_a_cache_dir_keep_their_own_frames(tmp_path):
    """A second run given the same --cache-dir (here train segmentor while train flow runs) must
    not truncate the first one's mapped files: that killed it with SIGBUS."""
    make_toy_sequences(tmp_path / "data", "train", sequences=2, frames=8)
    label_only_frame(tmp_path / "data", "train", 5)
    script = f"""
import subprocess, sys
import numpy as np
from mpvss_ros.training.frame_cache import load_split
flow = load_split({str(tmp_path / 'data')!r}, "train", context=3, cache_dir={str(tmp_path / 'c')!r},
                  cache_name="train.rank0")
before = np.array(flow.images)
subprocess.run([sys.executable, "-c", "from mpvss_ros.training.frame_cache import load_split; "
                "load_split({str(tmp_path / 'data')!r}, 'train', context=0, cache_dir={str(tmp_path / 'c')!r}, "
                "cache_name='train.rank0')"], check=True)
assert np.array_equal(before, np.array(flow.images))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])


def test_a_split_larger_than_half_the_memory_needs_a_cache_dir(toy_root, tmp_path, monkeypatch):
    """Refused up front with its size (not killed for memory half-way); with --cache-dir it loads."""
    from mpvss_ros.training import frame_cache

    need = 12 * frame_cache.frame_bytes((64, 128), with_flow=False)
    monkeypatch.setattr(frame_cache, "physical_memory_bytes", lambda: 2 * need - 2)
    with pytest.raises(ValueError, match=r"12 frames of 128x64 take 0\.0 GB decoded.*pass --cache-dir"):
        frame_cache.load_split(toy_root, "train")
    assert len(frame_cache.load_split(toy_root, "train", cache_dir=tmp_path)) == 12
    monkeypatch.setattr(frame_cache, "physical_memory_bytes", lambda: 2 * need)
    assert not isinstance(frame_cache.load_split(toy_root, "train").images, np.memmap)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes on this host: two copies
    with pytest.raises(ValueError, match=r"12 frames of 128x64 × 2 processes take"):
        frame_cache.load_split(toy_root, "train")


def test_composed_flow_maps_current_pixels_onto_key_pixels(toy_root):
    """Chained flow over 3 frames: the current frame's labels, pulled from the key frame along the
    flow, agree with the key frame's labels where the flow is valid."""
    from mpvss_ros.data.flow_io import warp_nearest
    from mpvss_ros.training.batches import composed_flow

    from mpvss_ros.training.frame_cache import load_split

    cache = load_split(toy_root, "train", with_flow=True)
    cur, gap = 4, 3
    flow, valid = composed_flow(cache, cur, gap, 0, 0, (64, 128))
    assert valid.mean() > 0.7
    moving = cache.train_ids[cur] >= PERSON
    assert np.abs(flow[moving & valid]).max() >= 2 * gap  # boxes moved at least 2 px per frame
    pulled = warp_nearest(cache.train_ids[cur - gap], flow)
    assert (pulled[valid] == cache.train_ids[cur][valid]).mean() > 0.99


def test_batches_are_a_function_of_seed_and_step(toy_root):
    from mpvss_ros.training.batches import PairBatches, SegmentorBatches, StepSampler
    from mpvss_ros.training.frame_cache import load_split

    cache = load_split(toy_root, "train", with_flow=True)
    a = SegmentorBatches(cache, 4, seed=3, start_step=0, end_step=10, crop=(32, 64))
    b = SegmentorBatches(cache, 4, seed=3, start_step=5, end_step=10, crop=(32, 64))
    assert a[7]["image"].shape == (4, 3, 32, 64)
    assert np.array_equal(a[7]["image"].numpy(), b[2]["image"].numpy())
    assert not np.array_equal(a[7]["image"].numpy(), a[8]["image"].numpy())
    # two ranks split each step's global batch without overlap; an epoch visits every item once
    r0, r1 = StepSampler(12, 3, 0, 0, 2), StepSampler(12, 3, 0, 1, 2)
    seen = np.concatenate([np.concatenate([r0.indices(s), r1.indices(s)]) for s in range(2)])
    assert sorted(seen.tolist()) == list(range(12))
    pairs = PairBatches(cache, 4, seed=0, start_step=0, end_step=3, max_gap=3, crop=(32, 64), with_flow=True)
    batch = pairs[1]
    assert batch["flow"].shape == (4, 2, 32, 64) and batch["valid"].dtype.is_floating_point is False
    assert 1 <= int(batch["gap"].min()) and int(batch["gap"].max()) <= 3


def test_bad_crop_is_rejected(toy_root):
    from mpvss_ros.training.batches import check_crop

    with pytest.raises(ValueError, match="multiple of 32"):
        check_crop((40, 64), (64, 128))
    with pytest.raises(ValueError, match="larger"):
        check_crop((128, 128), (64, 128))


def test_dataloader_workers_fork_cleanly_after_opencv_has_run_threads():
    """OpenCV's pool, once used by several threads (the frame cache decodes that way), is copied
    into a forked worker in a state whose first reconfiguration deadlocks; the trainer quiesces
    it before forking. Without that, three of these four children hang in a typical run."""
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from mpvss_ros.training.loop import _worker_init, quiesce_cv2_before_fork

    image = np.random.default_rng(0).integers(0, 255, (512, 1024, 3), dtype=np.uint8)
    threads_before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: int(cv2.resize(image, (700, 350)).sum()), range(24)))
        quiesce_cv2_before_fork()
        hung = 0
        for _ in range(4):
            pid = os.fork()
            if pid == 0:  # a DataLoader worker's start: its init, then some OpenCV work
                try:
                    _worker_init(0)
                    cv2.resize(image, (64, 32))
                finally:
                    os._exit(0)
            deadline, exited = time.monotonic() + 20, False
            while not exited and time.monotonic() < deadline:
                exited = os.waitpid(pid, os.WNOHANG) != (0, 0)
                time.sleep(0.02)
            if not exited:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        assert hung == 0
    finally:
        cv2.setNumThreads(threads_before)


def _all_true_worker(rank, port, flags, results):
    import torch.distributed as dist

    from mpvss_ros.training.distributed import DistContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=len(flags))
    try:
        results[rank] = DistContext(rank=rank, world_size=len(flags)).all_true(flags[rank])
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("flags, expected", [((True, True), True), ((True, False), False)])
def test_ranks_agree_whether_to_step(flags, expected):
    """One rank's non-finite loss makes every rank skip the update (DDP averages the gradients)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_all_true_worker, args=(port, flags, results), nprocs=len(flags), join=True)
    assert dict(results) == {0: expected, 1: expected}


def test_a_validation_split_keeps_only_the_frames_it_scores(tmp_path):
    """`scored`: the frames validation picks from the whole split, each with its context, and
    nothing else decoded; the picks and their pixels are the same as from the whole split."""
    from mpvss_ros.training.frame_cache import load_split
    from mpvss_ros.training.validation import spread, validation_currents

    make_toy_sequences(tmp_path, "val", sequences=3, frames=8, seed=4)
    full = load_split(tmp_path, "val", context=2)
    small = load_split(tmp_path, "val", context=2, scored=4)
    picked, kept = validation_currents(full, 2, 4), validation_currents(small, 2, 4)
    assert len(picked) == len(kept) == 4 and len(small) <= 4 * 3 < len(full)
    assert small.has_labels.sum() == 4  # labels of the context frames are not decoded
    for a, b in ((picked, kept), (picked - 2, kept - 2)):
        assert np.array_equal(full.images[a], small.images[b])
    assert np.array_equal(full.train_ids[picked], small.train_ids[kept])
    # the segmentor's validation (no context): the same frames as spreading over the whole split
    seg_full, seg_small = load_split(tmp_path, "val", context=0), load_split(tmp_path, "val", context=0, scored=5)
    assert len(seg_small) == 5
    assert np.array_equal(seg_full.images[spread(seg_full.labelled_frames(), 5)], seg_small.images)
    with pytest.raises(ValueError, match="no labelled frame has 9 earlier frames"):
        load_split(tmp_path, "val", context=9, scored=4)
