"""Options of `mpvss train segmentor` / `mpvss train flow`, and what both do before training:
device and process group, threads, data caches, resume-or-start."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mpvss_ros.model.export import MODEL_JSON, WEIGHTS
from mpvss_ros.model.mpvss import CONFIG_NAME, WEIGHTS_NAME

from . import checkpoint
from .distributed import DistContext, setup
from .frame_cache import FrameCache, load_split
from .loop import LoopOptions


@dataclass
class CommonOptions:
    data: str
    out: str
    split: str = "train"
    val_split: str | None = "val"  # None: no validation
    val_frames: int = 16
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    batch_size: int = 8
    crop: tuple[int, int] | None = None  # None: full frames
    workers: int = 0
    amp: bool = False
    lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.05
    clip_norm: float = 1.0
    log_every: int = 20
    val_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: bool = False
    num_points: int = 0  # points per mask in the Hungarian loss; 0: one per mask pixel of the crop
    progress: bool = True
    cache_dir: str | None = None  # decoded frames in memory-mapped files there instead of in memory

    # options a resumed run must share with the run it continues (others may change); weight
    # decay lives in the optimizer state a resume restores, so a new value would not apply
    FIXED = ("seed", "batch_size", "crop", "split", "world_size", "weight_decay")

    def loop_options(self, info: dict) -> LoopOptions:
        return LoopOptions(seed=self.seed, weight_decay=self.weight_decay, clip_norm=self.clip_norm,
                           amp=self.amp, workers=self.workers, log_every=max(1, self.log_every),
                           val_every=max(1, self.val_every), checkpoint_every=max(1, self.checkpoint_every),
                           keep_checkpoints=self.keep_checkpoints, progress=self.progress, info=info)


def check_common(opts: CommonOptions) -> None:
    for name in ("batch_size", "val_frames", "log_every", "val_every", "checkpoint_every"):
        if getattr(opts, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(opts, name)}")
    if not (math.isfinite(opts.lr) and opts.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {opts.lr}")
    if opts.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {opts.warmup}")
    if opts.amp and opts.device != "cuda":
        raise ValueError("--amp (bf16 autocast) is for --device cuda only")
    if not Path(opts.data).is_dir():
        raise FileNotFoundError(f"--data {opts.data} is not a directory")


def start(opts: CommonOptions) -> DistContext:
    check_common(opts)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    ctx = setup(opts.device)
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    return ctx


def load_caches(opts: CommonOptions, with_flow: bool, context: int = 0, val_context: int = 0,
                rank: int = 0) -> tuple[FrameCache, FrameCache | None]:
    """Train and val frames; `context` / `val_context`: the frames kept before each labelled one
    (the largest key-frame gap used; 0 for the segmentor). With --cache-dir each process of a
    torchrun job writes its own files (rank in the name)."""
    threads = max(1, opts.threads or torch.get_num_threads())
    train = load_split(opts.data, opts.split, with_flow=with_flow, threads=threads, context=context,
                       cache_dir=opts.cache_dir, cache_name=f"train.rank{rank}")
    val = None
    if opts.val_split:
        val = load_split(opts.data, opts.val_split, threads=threads, context=val_context,
                         cache_dir=opts.cache_dir, cache_name=f"val.rank{rank}", scored=opts.val_frames)
    return train, val


def configure_loss(opts: CommonOptions, model, frame_size: tuple[int, int]) -> int:
    from .objectives import default_loss_points, set_loss_points

    crop = opts.crop or frame_size
    n = opts.num_points or default_loss_points(crop, model.segmentor.config.train_num_points)
    return set_loss_points(model.segmentor, n)


def run_info(opts: CommonOptions, ctx: DistContext, command: str, extra: dict) -> dict:
    values = {k: v for k, v in asdict(opts).items() if k not in ("progress",)}
    values["crop"] = list(opts.crop) if opts.crop else None
    values["world_size"] = ctx.world_size
    return {"command": command, "options": {**values, **extra}}


def _first_difference(name: str, a, b) -> tuple[str, object, object]:
    """The first differing entry of two option values (nested dicts, e.g. a model configuration)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if json.dumps(a.get(k)) != json.dumps(b.get(k)):
                return _first_difference(f"{name}.{k}", a.get(k), b.get(k))
    return name, a, b


def resume(opts: CommonOptions, ctx: DistContext, info: dict, fixed_extra: tuple[str, ...] = ()):
    """-> (model, state.json content, optimizer state) from `opts.out`, or None for a fresh start.

    Refuses to continue a run whose fixed options (seed, batch, crop, ...) differ: the step ->
    data mapping would change under it."""
    state_dir = checkpoint.find_state(opts.out)
    if state_dir is None:
        held = [n for n in (CONFIG_NAME, WEIGHTS_NAME, WEIGHTS, MODEL_JSON) if (Path(opts.out) / n).is_file()]
        if held:  # a model, but not a run this command could continue: never overwrite it
            raise ValueError(f"--out {opts.out} holds {held[0]} but no training state (train_state/); "
                             "choose a new --out (or give the model as --init / --segmentor)")
        return None
    stored = checkpoint.read_state_info(state_dir)
    if stored.get("command") != info["command"]:
        raise ValueError(f"--out {opts.out} holds a `{stored.get('command')}` run, not `{info['command']}`; "
                         "use another --out")
    old, new = stored.get("options", {}), info["options"]
    for key in CommonOptions.FIXED + tuple(fixed_extra):
        if json.dumps(old.get(key)) != json.dumps(new.get(key)):
            name, was, asked = _first_difference(key, old.get(key), new.get(key))
            raise ValueError(f"--out {opts.out} holds a run with {name}={was!r}, this call asks "
                             f"{name}={asked!r}; use the same options to resume or another --out")
    return checkpoint.load_state(state_dir, ctx.device)
