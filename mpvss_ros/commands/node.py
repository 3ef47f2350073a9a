"""`mpvss node [--params FILE] [--ros-args ...]`: run the segmentation node and take it to Active.

What `ros2 launch mpvss_ros segment.launch.py` does, for machines without `ros2 launch`:
the node configures and activates itself. Everything from `--ros-args` on goes to rclpy
(remaps, `-p name:=value`, `--params-file`, `-r __ns:=/robot`, ...).
"""
from __future__ import annotations

from pathlib import Path

from mpvss_ros.commands import require_ros


def add_arguments(parser) -> None:
    parser.add_argument("--params", metavar="FILE",
                        help="ROS 2 parameter file (e.g. config/segment.yaml); same as "
                        "--ros-args --params-file FILE")
    parser.add_argument("--no-activate", action="store_true",
                        help="only spin the lifecycle node (transitions come from outside)")
    parser.epilog = "ROS arguments: add them after --ros-args, e.g. --ros-args -r image:=/camera/image_raw"


def run(args) -> int:
    ros_args = list(getattr(args, "ros_args", []) or [])
    if args.params:
        path = Path(args.params)
        if not path.is_file():
            # FileNotFoundError (not CommandError): reported the same way under `python -m mpvss_ros.cli`
            raise FileNotFoundError(f"parameter file not found: {path}")
        # right after --ros-args, so that `-p name:=value` given by the user overrides the file
        ros_args = ["--ros-args", "--params-file", str(path)] + ros_args[1:]
    require_ros("mpvss node")
    from mpvss_ros.ros.node_main import run as run_node

    return run_node(["mpvss_node"] + ros_args, autostart=not args.no_activate)
