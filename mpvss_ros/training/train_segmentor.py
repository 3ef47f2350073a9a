"""`mpvss train segmentor`: a small Mask2Former (Swin backbone from scratch, transformers) trained
with its own Hungarian loss on labelled frames. The output directory is a full MPVSS checkpoint
(the query-flow module still at its initialisation) that `mpvss train flow --segmentor` starts from.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from mpvss_ros.model.config import MPVSSConfig, read_json_object
from mpvss_ros.model.mpvss import CONFIG_NAME, MPVSS

from .batches import SegmentorBatches
from .loop import Phase, Trainer
from .objectives import SegmentorObjective
from .options import CommonOptions, configure_loss, load_caches, resume, run_info, start
from .validation import segmentor_miou, spread


@dataclass
class SegmentorOptions(CommonOptions):
    steps: int = 8000
    model_config: MPVSSConfig | None = None  # None: the default MPVSSConfig
    init: str | None = None  # MPVSS checkpoint or transformers Mask2Former dir that starts this run
    flip: bool = True


def train_segmentor(opts: SegmentorOptions) -> dict:
    """Train (or continue training) the key-frame segmentor; returns the last logged values."""
    if opts.steps <= 0:
        raise ValueError(f"--steps must be positive, got {opts.steps}")
    init_config = None
    transformers_init = False
    if opts.init:
        if opts.model_config is not None:
            raise ValueError("--init and --model-config exclude each other: --init brings its own configuration")
        init_config = Path(opts.init) / CONFIG_NAME
        if not init_config.is_file():
            raise FileNotFoundError(f"--init {opts.init}: not an MPVSS checkpoint or transformers Mask2Former "
                                    f"directory (no {CONFIG_NAME})")
        # a user's Mask2Former: fine-tuned as it is (classes checked and ordered on load)
        transformers_init = read_json_object(init_config).get("model_type") == "mask2former"
    ctx = start(opts)
    try:
        train, val = load_caches(opts, with_flow=False, rank=ctx.rank)
        if transformers_init:
            cfg = MPVSSConfig(segmentor_path=str(Path(opts.init).resolve()))
        else:
            cfg = MPVSSConfig.load(init_config) if opts.init else (opts.model_config or MPVSSConfig())
        cfg = dataclasses.replace(cfg, image_size=train.size)  # graphs are built for the data's frame size
        info = run_info(opts, ctx, "train segmentor", {"steps": opts.steps, "model_config": cfg.to_dict(),
                                                        "init": opts.init})
        resumed = resume(opts, ctx, info, fixed_extra=("init", "model_config"))
        if resumed is None and transformers_init:
            torch.manual_seed(opts.seed)  # the query-flow module's initial weights
            model, state, optimizer_state = MPVSS(cfg).train(), None, None
        elif resumed is None and opts.init:
            model, state, optimizer_state = MPVSS.load(opts.init).train(), None, None
            model.config = cfg
        elif resumed is None:
            torch.manual_seed(opts.seed)  # the initial weights
            model, state, optimizer_state = MPVSS(cfg), None, None
        else:
            model, state, optimizer_state = resumed
        model.to(ctx.device)
        configure_loss(opts, model, train.size)
        val_frames = spread(val.labelled_frames(), opts.val_frames) if val is not None else None

        def validate() -> float:
            return segmentor_miou(model, val, val_frames, ctx.device)

        phase = Phase(
            name="segmentor", steps=opts.steps, objective=SegmentorObjective(model),
            params=lambda: list(model.segmentor.parameters()),
            make_batches=lambda first, end: SegmentorBatches(train, opts.batch_size, opts.seed, first, end, opts.crop,
                                                             opts.flip, ctx.rank, ctx.world_size),
            lr=opts.lr, warmup=opts.warmup, validate=validate if val is not None else None)
        trainer = Trainer(model, opts.out, ctx, opts.loop_options(info), state, optimizer_state)
        return trainer.run([phase])
    finally:
        ctx.close()
