"""`mpvss train flow`: the query-flow module on top of a trained segmentor, in two phases.

(a) `pretrain` (--pretrain-steps): the motion encoder's coarse-to-fine pixel flow learns the
    generated ground-truth backward flow with a multi-scale EPE (the paper starts from FlowNet
    weights trained on Flying Chairs; the flow head starts out passing this pixel flow through).
(b) `flow` (--steps): the MPVSS objective. A key frame 1..max_gap frames before the current one
    goes through the frozen segmentor; its N mask logits are warped by the predicted per-query
    flow and scored against the current frame's labels with the Hungarian-matched Mask2Former
    loss. The query-flow module and the segmentor's class/mask embedding heads train.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from mpvss_ros.model.config import MPVSSConfig, read_json_object
from mpvss_ros.model.mpvss import CONFIG_NAME, MPVSS

from .batches import PairBatches
from .loop import Phase, Trainer
from .objectives import PixelFlowObjective, PropagationObjective
from .options import CommonOptions, configure_loss, load_caches, resume, run_info, start
from .validation import propagation_miou, validation_currents


@dataclass
class FlowOptions(CommonOptions):
    segmentor: str | None = None  # MPVSS checkpoint (train segmentor's --out) or transformers Mask2Former dir
    flow_init: str | None = None  # MPVSS checkpoint whose query-flow module starts this run
    pretrain_steps: int = 2000
    steps: int = 3000
    pretrain_lr: float = 2e-4
    max_gap: int = 5
    val_gap: int = 5
    flip: bool = True


def load_segmentor_source(path: str, image_size: tuple[int, int]) -> MPVSS:
    """An MPVSS checkpoint directory, or a local transformers Mask2Former directory (the query-flow
    module is then freshly initialised with the default flow configuration)."""
    directory = Path(path)
    cfg_file = directory / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"--segmentor {path}: no {CONFIG_NAME} (expected an MPVSS checkpoint or a "
                                "transformers Mask2Former directory)")
    raw = read_json_object(cfg_file)
    if raw.get("model_type") == "mask2former":  # classes checked and put in train-id order on load
        return MPVSS(MPVSSConfig(image_size=image_size, segmentor_path=str(directory)))
    model = MPVSS.load(directory)
    model.config = dataclasses.replace(model.config, image_size=image_size)
    return model


def init_query_flow(model: MPVSS, path: str) -> None:
    """Start `model`'s query-flow module from another MPVSS checkpoint's (e.g. one trained on an
    earlier segmentor); ValueError if the two flow configurations differ."""
    source = MPVSS.load(Path(path))
    if dataclasses.asdict(source.config.flow) != dataclasses.asdict(model.config.flow) or \
            source.segmentor.num_queries != model.segmentor.num_queries or \
            source.segmentor.hidden_dim != model.segmentor.hidden_dim:
        raise ValueError(f"--flow-init {path}: its query-flow configuration differs from the segmentor's model")
    model.query_flow.load_state_dict(source.query_flow.state_dict())


def train_flow(opts: FlowOptions) -> dict:
    """Train (or continue training) the query-flow module; returns the last logged values."""
    if opts.steps < 0 or opts.pretrain_steps < 0 or opts.steps + opts.pretrain_steps == 0:
        raise ValueError("--steps and --pretrain-steps must be >= 0 and not both 0")
    if opts.max_gap < 1 or opts.val_gap < 1:
        raise ValueError("--max-gap and --val-gap must be >= 1")
    if not (math.isfinite(opts.pretrain_lr) and opts.pretrain_lr > 0):
        raise ValueError(f"--pretrain-lr must be a positive number, got {opts.pretrain_lr}")
    ctx = start(opts)
    try:
        train, val = load_caches(opts, with_flow=opts.pretrain_steps > 0, context=opts.max_gap,
                                 val_context=opts.val_gap, rank=ctx.rank)
        info = run_info(opts, ctx, "train flow", {"steps": opts.steps, "pretrain_steps": opts.pretrain_steps,
                                                  "max_gap": opts.max_gap})
        resumed = resume(opts, ctx, info, fixed_extra=("max_gap", "pretrain_steps", "segmentor", "flow_init"))
        if resumed is None:
            if not opts.segmentor:
                raise ValueError("--segmentor is required to start flow training (none to resume in --out)")
            torch.manual_seed(opts.seed)  # the flow module's initial weights (transformers-dir case)
            model, state, optimizer_state = load_segmentor_source(opts.segmentor, train.size), None, None
            if opts.flow_init:
                init_query_flow(model, opts.flow_init)
        else:
            model, state, optimizer_state = resumed
            model.config = dataclasses.replace(model.config, image_size=train.size)  # the graphs' size, as above
        model.to(ctx.device)
        configure_loss(opts, model, train.size)
        validate = None
        if val is not None:
            currents = validation_currents(val, opts.val_gap, opts.val_frames)  # not empty: load_split checks

            def validate() -> float:
                return propagation_miou(model, val, currents, opts.val_gap, ctx.device)

        def pairs(with_flow: bool):
            return lambda first, end: PairBatches(train, opts.batch_size, opts.seed, first, end, opts.max_gap,
                                                  opts.crop, opts.flip, with_flow, ctx.rank, ctx.world_size)

        phases = [
            Phase(name="pretrain", steps=opts.pretrain_steps, objective=PixelFlowObjective(model),
                  params=lambda: list(model.query_flow.encoder.parameters()), make_batches=pairs(True),
                  lr=opts.pretrain_lr, warmup=opts.warmup, validate=validate),
            Phase(name="flow", steps=opts.steps, objective=PropagationObjective(model),
                  params=lambda: list(model.query_flow.parameters()) + model.segmentor.head_parameters(),
                  make_batches=pairs(False), lr=opts.lr, warmup=opts.warmup, validate=validate),
        ]
        trainer = Trainer(model, opts.out, ctx, opts.loop_options(info), state, optimizer_state)
        return trainer.run(phases)
    finally:
        ctx.close()
