"""The training loop shared by every phase: AdamW, warmup + poly learning rate, optional bf16
autocast on CUDA, gradient clipping, DDP, tqdm progress, learning curve and resumable checkpoints.

Steps are counted globally over the phases of one command (e.g. flow pre-training steps
0..P-1, then query-flow steps P..P+S-1), so one step number names a point of the run. Every
random draw of step s comes from (seed, s, rank): the batch (see batches.py) and the torch RNG
(re-seeded per step; the Mask2Former loss samples points with it), so a resumed run repeats an
uninterrupted one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import checkpoint
from .curve import LearningCurve
from .distributed import DistContext, unwrap, wrap_ddp


@dataclass
class Phase:
    name: str
    steps: int  # steps of this phase
    objective: nn.Module  # forward(batch on device) -> (loss, {column: float})
    params: Callable[[], list[nn.Parameter]]  # the parameters this phase trains (others frozen)
    make_batches: Callable[[int, int], Dataset]  # (first global step, end global step) -> batches
    lr: float = 2e-4
    warmup: int = 100
    validate: Callable[[], float] | None = None


@dataclass
class LoopOptions:
    seed: int = 0
    weight_decay: float = 0.05
    clip_norm: float = 1.0  # 0 = no clipping
    amp: bool = False  # bf16 autocast (CUDA only)
    workers: int = 0
    log_every: int = 20
    val_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: bool = False  # every periodic save also under checkpoints/stepNNNNNN/
    progress: bool = True
    info: dict = field(default_factory=dict)  # stored in state.json (options of the run)


def learning_rate(step_in_phase: int, steps: int, base: float, warmup: int) -> float:
    """Linear warmup, then poly(0.9) decay to zero at the end of the phase (Mask2Former's schedule)."""
    if warmup > 0 and step_in_phase < warmup:
        return base * (step_in_phase + 1) / warmup
    span = max(1, steps - warmup)
    return base * max(0.0, 1.0 - (step_in_phase - warmup) / span) ** 0.9


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (CPU and CUDA): the per-parameter Python loop of the default
    implementation costs as much as a small model's backward pass on a CPU."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=False)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63 - 1)


def _to_device(batch: dict, device: torch.device) -> dict:
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        out[k] = v.float() if k in ("image", "key_image") else v
    return out


def quiesce_cv2_before_fork() -> None:
    """Shrink OpenCV's thread pool to one thread in this process before DataLoader workers fork.

    A pool that has run (the frame cache decodes with it) is copied into a forked child with
    condition variables that still count the parent's waiting threads; the child's first
    reconfiguration of the pool then waits on them forever (seen as a training run stalled at
    step 0 with `--workers 1`). Reconfigured here, in the parent, the threads really exist.
    The parent keeps one OpenCV thread for the rest of the run (workers fork lazily, so it cannot
    be restored safely); the parent's own OpenCV work is small once workers make the batches."""
    import cv2

    cv2.setNumThreads(1)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class Trainer:
    """Runs phases in order on `model` (an MPVSS), continuing from the state found in `out_dir`."""

    def __init__(self, model: nn.Module, out_dir, ctx: DistContext, options: LoopOptions,
                 resumed: dict | None = None, optimizer_state: dict | None = None):
        self.model, self.out_dir, self.ctx, self.opt = model, out_dir, ctx, options
        self.step = int(resumed["step"]) if resumed else 0
        self.resumed_phase = resumed.get("phase") if resumed else None
        self.elapsed_before = float(resumed.get("elapsed_s", 0.0)) if resumed else 0.0
        self.optimizer_state = optimizer_state
        self.curve = LearningCurve(out_dir, self.step, enabled=ctx.is_main)
        self.started = time.monotonic()
        self.last = {}

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def run(self, phases: list[Phase]) -> dict:
        first = 0
        for phase in phases:
            end = first + phase.steps
            if self.step < end:
                self._run_phase(phase, first, end)
            first = end
        if not self.last and self.ctx.is_main:  # finished before: the top-level copy may predate a kill
            checkpoint.sync_top_level(self.out_dir)
        return self.last

    def _save(self, optimizer, phase: Phase) -> None:
        if self.ctx.is_main:
            checkpoint.save_state(self.out_dir, self.model, optimizer, self.step, phase.name,
                                  {**self.opt.info, "elapsed_s": round(self.elapsed(), 1)},
                                  keep=self.opt.keep_checkpoints)
        self.ctx.barrier()

    def _run_phase(self, phase: Phase, first: int, end: int) -> None:
        ctx, opt = self.ctx, self.opt
        for p in self.model.parameters():
            p.requires_grad_(False)
        params = phase.params()
        for p in params:
            p.requires_grad_(True)
        optimizer = make_optimizer(params, phase.lr, opt.weight_decay)
        if self.optimizer_state is not None and self.resumed_phase == phase.name:
            optimizer.load_state_dict(self.optimizer_state)
        self.optimizer_state = None  # a later phase starts its own optimizer
        module = wrap_ddp(phase.objective, ctx)
        module.train()
        batches = phase.make_batches(self.step, end)
        if opt.workers:
            quiesce_cv2_before_fork()
        loader = DataLoader(batches, batch_size=None, shuffle=False, num_workers=opt.workers,
                            pin_memory=ctx.device.type == "cuda", worker_init_fn=_worker_init if opt.workers else None,
                            prefetch_factor=4 if opt.workers else None)
        bar = tqdm(total=end, initial=self.step, desc=phase.name, disable=not (opt.progress and ctx.is_main),
                   dynamic_ncols=True, unit="it")
        sums: dict[str, float] = {}
        count = 0
        autocast = opt.amp and ctx.device.type == "cuda"
        for batch in loader:
            lr = learning_rate(self.step - first, end - first, phase.lr, phase.warmup)
            for g in optimizer.param_groups:
                g["lr"] = lr
            torch.manual_seed(step_seed(opt.seed, self.step, ctx.rank))
            batch = _to_device(batch, ctx.device)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, terms = module(batch)
            optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss.detach()))
            loss.backward()  # on every rank, also when the step is skipped: DDP's reducer stays in step
            # DDP averages the ranks' gradients: one rank's non-finite loss poisons all of them, so
            # every rank skips together (a diverging batch shows up in the curve, not the weights)
            if ctx.all_true(finite):
                if opt.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, opt.clip_norm)
                optimizer.step()
            else:
                bar.write(f"step {self.step}: non-finite loss{'' if not finite else ' on another rank'}, "
                          "update skipped")
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            self.step += 1
            bar.update(1)
            done = self.step == end
            if self.step % opt.log_every == 0 or done:
                means = ctx.all_reduce_mean({k: v / count for k, v in sums.items()})
                sums, count = {}, 0
                means["lr"] = lr
                if phase.validate is not None and (self.step % opt.val_every == 0 or done):
                    means["val_miou"] = self._validate(phase, module)
                means["seconds"] = round(self.elapsed(), 1)
                self.curve.write(self.step, phase.name, means)
                self.last = {"step": self.step, "phase": phase.name, **means}
                bar.set_postfix(loss=f"{means['loss']:.3f}", **({"miou": f"{means['val_miou']:.3f}"}
                                                                 if "val_miou" in means else {}))
            if self.step % opt.checkpoint_every == 0 or done:
                self._save(optimizer, phase)
        bar.close()

    def _validate(self, phase: Phase, module: nn.Module) -> float:
        value = float("nan")
        if self.ctx.is_main:
            self.model.eval()
            value = phase.validate()
            unwrap(module).train()
        self.ctx.barrier()
        return value
