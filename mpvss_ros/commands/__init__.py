"""Sub-commands of `mpvss`; each module has add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import os
import re
from pathlib import Path

from mpvss_ros.cli import CommandError


def require_ros(what: str) -> None:
    """CommandError unless rclpy imports: the node and the DDS replay need ROS 2, the rest of
    `mpvss` (data, training, export, evaluation, bench --no-ros) does not."""
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"{what} needs ROS 2 and rclpy is not importable here ({exc}); run it through "
                           "./mpvss (its environment has the ROS 2 wheels) or source a ROS 2 setup") from None


def output_file(path: str, flag: str = "--out") -> Path:
    """The report file a command writes at the end, checked before the work starts (a directory
    or an unwritable place would otherwise only fail after a long evaluation)."""
    out = Path(path)
    if out.is_dir():
        raise CommandError(f"{flag} {path} is a directory; give the file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{flag} {path}: cannot create its folder ({exc.strerror or exc})") from None
    if not out.parent.is_dir():
        raise CommandError(f"{flag} {path}: {out.parent} is not a folder")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CommandError(f"{flag} {path}: not writable")
    return out


def parse_size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512) as (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise CommandError(f"size must look like HxW (e.g. 256x512), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise CommandError(f"{name} must be positive integers, got {text!r}")
    return values
