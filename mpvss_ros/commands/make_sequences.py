"""`mpvss make-sequences`: procedural Cityscapes-style street sequences with ground truth and flow."""
from __future__ import annotations

from mpvss_ros.cli import CommandError
from mpvss_ros.commands import parse_size


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="dataset root to write (Cityscapes layout)")
    parser.add_argument("--sequences", type=int, default=10, help="number of sequences (default 10)")
    parser.add_argument("--frames", type=int, default=30, help="frames per sequence (default 30)")
    parser.add_argument("--size", default="256x512", help="image size HxW (default 256x512)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files (default 0)")
    parser.add_argument("--split", default="train", help="split name (default train)")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")


def run(args) -> int:
    from mpvss_ros.data.generator import generate

    if args.sequences <= 0 or args.frames <= 0:
        raise CommandError("--sequences and --frames must be positive")
    if args.workers < 0:
        raise CommandError("--workers must be >= 0")
    size = parse_size(args.size)
    generate(args.out, args.split, args.sequences, args.frames, size, args.seed, workers=args.workers or None)
    print(f"wrote {args.sequences} x {args.frames} frames ({size[0]}x{size[1]}) to {args.out} split {args.split}")
    return 0
