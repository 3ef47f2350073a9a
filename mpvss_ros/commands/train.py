"""`mpvss train {segmentor|flow}`: train the key-frame segmentor or the query-flow module.

Both are seeded and resumable: re-running with the same --out continues from the last
checkpoint (model, optimizer, step, RNG). Run under `torchrun --nproc_per_node=N -m
mpvss_ros.cli train ...` for data-parallel training; rank 0 writes.
"""
from __future__ import annotations

import json
import math
import sys

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import parse_size


def _common(p) -> None:
    p.add_argument("--data", required=True, help="Cityscapes-style root (e.g. from `mpvss make-sequences`)")
    p.add_argument("--out", required=True, help="checkpoint directory; re-running with it resumes")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="split for the periodic val mIoU ('none' to skip)")
    p.add_argument("--val-frames", type=int, default=16, help="frames of the val split scored (spread evenly)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--crop", default=None, help="random crops HxW (same scale as the data); default full frames")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0: load in the main one)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (cuda only)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps, then poly decay")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--clip-norm", type=float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--log-every", type=int, default=20, help="learning-curve row every N steps")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="also keep the model of every periodic checkpoint in OUT/checkpoints/stepNNNNNN/ "
                        "(exportable; the top level always holds the latest)")
    p.add_argument("--num-points", type=int, default=0,
                   help="points per mask in the Hungarian loss (0: one per mask pixel of the crop)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cache-dir", default=None,
                   help="keep the decoded frames in memory-mapped files in this directory instead of in "
                        "memory (splits larger than half the RAM, e.g. real Cityscapes at full size)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="{segmentor,flow}")
    sub.required = True
    seg = sub.add_parser("segmentor", help="train the key-frame Mask2Former from scratch")
    _common(seg)
    seg.add_argument("--steps", type=int, default=8000)
    seg.add_argument("--model-config", default=None,
                     help="MPVSSConfig JSON to build the model from (default: the built-in default config)")
    seg.add_argument("--init", default=None,
                     help="MPVSS checkpoint or transformers Mask2Former directory to start from instead of "
                          "random weights (e.g. to fine-tune a segmentor on new data with a fresh schedule)")
    flow = sub.add_parser("flow", help="train the query-flow module on a trained segmentor")
    _common(flow)
    flow.add_argument("--segmentor", default=None,
                      help="`train segmentor` output (MPVSS checkpoint) or a transformers Mask2Former directory")
    flow.add_argument("--flow-init", default=None,
                      help="MPVSS checkpoint whose query-flow module this run starts from (e.g. a flow run "
                           "on an earlier segmentor); default: freshly initialised")
    flow.add_argument("--pretrain-steps", type=int, default=2000,
                      help="phase (a): pixel-flow EPE pre-training steps (0 to skip)")
    flow.add_argument("--steps", type=int, default=3000, help="phase (b): query-flow steps with the mask loss")
    flow.add_argument("--pretrain-lr", type=float, default=2e-4)
    flow.add_argument("--max-gap", type=int, default=5, help="key frame 1..N frames before the current one")
    flow.add_argument("--val-gap", type=int, default=5, help="key-frame distance of the val mIoU")


def _common_values(args) -> dict:
    val_split = None if str(args.val_split).lower() in ("", "none") else args.val_split
    return dict(data=args.data, out=args.out, split=args.split, val_split=val_split, val_frames=args.val_frames,
                seed=args.seed, device=args.device, threads=args.threads, batch_size=args.batch_size,
                crop=parse_size(args.crop) if args.crop else None, workers=args.workers, amp=args.amp,
                lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, clip_norm=args.clip_norm,
                num_points=args.num_points, log_every=args.log_every, val_every=args.val_every, checkpoint_every=args.checkpoint_every,
                keep_checkpoints=args.keep_checkpoints, flip=not args.no_flip, progress=not args.no_progress,
                cache_dir=args.cache_dir)


def run(args) -> int:
    import os

    if args.workers < 0 or args.threads < 0:
        raise CommandError("--workers and --threads must be >= 0")
    if args.what == "segmentor":
        from mpvss_ros.model.config import MPVSSConfig
        from mpvss_ros.training.train_segmentor import SegmentorOptions, train_segmentor

        cfg = MPVSSConfig.load(args.model_config) if args.model_config else None
        result = train_segmentor(SegmentorOptions(**_common_values(args), steps=args.steps, model_config=cfg,
                                                  init=args.init))
    else:
        from mpvss_ros.training.train_flow import FlowOptions, train_flow

        result = train_flow(FlowOptions(**_common_values(args), segmentor=args.segmentor, flow_init=args.flow_init,
                                        pretrain_steps=args.pretrain_steps, steps=args.steps,
                                        pretrain_lr=args.pretrain_lr, max_gap=args.max_gap, val_gap=args.val_gap))
    if int(os.environ.get("RANK", "0")) == 0:
        if result:
            shown = {k: (float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in result.items()}
            print(json.dumps({"out": args.out, **shown}), file=sys.stdout)
        else:
            print(json.dumps({"out": args.out, "note": "already trained to the requested steps"}))
    return 0
