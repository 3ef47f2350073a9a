"""`mpvss evaluate` (not implemented yet)."""
from __future__ import annotations

from mpvss_ros.cli import CommandError


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise CommandError("not implemented yet")
