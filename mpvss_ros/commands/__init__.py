"""Sub-commands of `mpvss`; each module has add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import re

from mpvss_ros.cli import CommandError


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
