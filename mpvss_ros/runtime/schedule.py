"""Key-frame schedule: decides, frame by frame, whether the full segmentor must run.

Modes (a key frame can also be requested at any time, in every mode):
- ``interval``: every k-th frame (frames 0, k, 2k, ... of a stream).
- ``timer``: a key frame once at least ``period_s`` seconds of *message* time have passed, so
  it follows bag time and ``/clock`` rather than the wall clock.
- ``motion``: a key frame when the motion score against the key frame reaches
  ``motion_threshold``, but never before ``min_interval`` frames and always by ``max_interval``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

MODES = ("interval", "timer", "motion")


@dataclass(frozen=True)
class ScheduleSettings:
    mode: str = "interval"
    interval: int = 5
    period_s: float = 0.5
    motion_threshold: float = 0.08
    min_interval: int = 1
    max_interval: int = 30

    def validated(self) -> "ScheduleSettings":
        """Return self, or raise ValueError naming the first out-of-range setting."""
        if self.mode not in MODES:
            raise ValueError(f"schedule mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 1 <= int(self.interval) <= 10_000:
            raise ValueError(f"schedule interval must be in 1..10000, got {self.interval}")
        if not 0.0 < float(self.period_s) <= 3600.0:
            raise ValueError(f"schedule period_s must be in (0, 3600], got {self.period_s}")
        if not 0.0 < float(self.motion_threshold) <= 1.0:
            raise ValueError(f"schedule motion_threshold must be in (0, 1], got {self.motion_threshold}")
        if not 1 <= int(self.min_interval) <= int(self.max_interval) <= 10_000:
            raise ValueError(
                "schedule needs 1 <= min_interval <= max_interval <= 10000, got "
                f"min_interval={self.min_interval} max_interval={self.max_interval}")
        return self


@dataclass
class KeyFrameSchedule:
    settings: ScheduleSettings = field(default_factory=ScheduleSettings)
    _frames_since_key: int | None = None  # None: no key frame yet in this stream
    _last_key_stamp: float | None = None
    _requested: bool = False

    def __post_init__(self) -> None:
        self.settings.validated()

    @classmethod
    def create(cls, **settings) -> "KeyFrameSchedule":
        return cls(ScheduleSettings(**settings))

    @property
    def needs_motion_score(self) -> bool:
        return self.settings.mode == "motion"

    @property
    def frames_since_key(self) -> int:
        return 0 if self._frames_since_key is None else self._frames_since_key

    def update(self, **changes) -> None:
        """Change settings at run time; raises ValueError (and changes nothing) if invalid."""
        known = {f.name for f in fields(ScheduleSettings)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown schedule setting(s): {', '.join(sorted(unknown))}")
        self.settings = replace(self.settings, **changes).validated()

    def request(self) -> None:
        """Make the next frame a key frame."""
        self._requested = True

    def reset(self) -> None:
        """Forget the stream: the next frame is a key frame."""
        self._frames_since_key = None
        self._last_key_stamp = None

    def decide(self, stamp_s: float, motion_score: float | None = None) -> bool:
        """Whether the frame with this message time is a key frame; advances the schedule."""
        s = self.settings
        if self._frames_since_key is None or self._requested:
            key = True
        else:
            since = self._frames_since_key + 1  # this frame's distance from the key frame
            if s.mode == "interval":
                key = since >= s.interval
            elif s.mode == "timer":
                key = stamp_s - self._last_key_stamp >= s.period_s
            else:
                if since >= s.max_interval:
                    key = True
                elif since < s.min_interval or motion_score is None:
                    key = False
                else:
                    key = motion_score >= s.motion_threshold
        if key:
            self._frames_since_key = 0
            self._last_key_stamp = stamp_s
            self._requested = False
        else:
            self._frames_since_key += 1
        return key
