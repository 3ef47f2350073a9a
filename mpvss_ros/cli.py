"""The `mpvss` command: one entry point, a sub-command per job.

Each sub-command lives in ``mpvss_ros/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, rclpy) happen inside ``run`` so ``mpvss --help``
stays fast. Bad input raises ``CommandError`` (or ValueError/FileNotFoundError) and is
reported as one line on stderr with a non-zero exit status.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (sub-command, module under mpvss_ros.commands, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("make-sequences", "make_sequences", "generate Cityscapes-style street sequences with ground truth"),
    ("train", "train", "train the key-frame segmentor or the query-flow module"),
    ("export", "export", "export a checkpoint to ONNX graphs + model.json"),
    ("recover-weights", "recover_weights", "rebuild the torch checkpoint of a model directory from its ONNX graphs"),
    ("evaluate", "evaluate", "score per-frame / copy / optical-flow / query-flow methods on a split"),
    ("bench", "bench", "measure key / non-key latency, pipeline FPS and ROS overhead"),
    ("bag", "bag", "convert sequences to a rosbag2 (MCAP) and evaluate the node on a bag"),
    ("node", "node", "run the lifecycle segmentation node and take it to Active"),
    ("demo", "demo", "the main job end to end: sequences -> bag -> node -> report"),
]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpvss",
        description="MPVSS video semantic segmentation for ROS 2: key frames through Mask2Former, "
        "query-based mask propagation in between.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(f"mpvss_ros.commands.{module}")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `mpvss node ... --ros-args ...`: everything from --ros-args on belongs to rclpy.
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.ros_args = ros_args
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("mpvss: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as exc:  # OSError: missing, unreadable, unwritable paths
        print(f"mpvss {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional part (ROS 2, a GPU provider) not installed here
        print(f"mpvss {args.command}: error: {exc.name or exc} is not installed in this environment", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run through the importable module so that `CommandError` raised by sub-commands (imported
    # from mpvss_ros.cli) is the class caught here, not a __main__ copy of it.
    from mpvss_ros.cli import main as _main

    sys.exit(_main())
