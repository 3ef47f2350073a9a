"""The node's parameters: one table with defaults, descriptions and range checks.

config/segment.yaml mirrors this table key for key (a test holds them together). Parameters
marked ``live`` take effect at once when changed through the parameter services; the others
are read on the next configure transition (the model, backend and QoS cannot change under a
running subscription without a cleanup/configure cycle).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mpvss_ros.runtime.schedule import MODES, ScheduleSettings

BACKENDS = ("onnxruntime", "torch")
RELIABILITIES = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
LABEL_FORMATS = ("trainid", "labelid")
OUTPUT_RESOLUTIONS = ("input", "inference")
_DEFAULT_SCHEDULE = ScheduleSettings()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None]  # None when valid, else the reason
    live: bool = False

    @property
    def constraints(self) -> str:
        """What `ros2 param describe` and rqt show as the descriptor's additional constraints.

        Ranges are not put into the descriptor itself: rclpy would then refuse an out-of-range
        value from a parameter file while declaring it (the process dies at start-up) instead
        of configure failing with the reason."""
        when = "takes effect at once" if self.live else "takes effect at the next configure"
        return f"{self.check.constraint}; {when}"


def _described(constraint: str):
    """Decorator: attach the human-readable constraint to a check function."""
    def attach(check):
        check.constraint = constraint
        return check
    return attach


def _one_of(choices):
    @_described(f"one of: {', '.join(choices)}")
    def check(v):
        if isinstance(v, str) and v in choices:
            return None
        return f"must be one of {', '.join(choices)}, got {v!r}"
    return check


def _int_range(lo, hi):
    @_described(f"integer in {lo}..{hi}")
    def check(v):
        if not isinstance(v, int) or isinstance(v, bool):
            return f"must be an integer, got {v!r}"
        return None if lo <= v <= hi else f"must be in {lo}..{hi}, got {v}"
    return check


def _float_range(lo, hi, lo_open=False):
    @_described(f"number in {'(' if lo_open else '['}{lo}, {hi}]")
    def check(v):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return f"must be a number, got {v!r}"
        ok = (lo < v if lo_open else lo <= v) and v <= hi
        return None if ok else f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}"
    return check


@_described("string")
def _string(v):
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


@_described("list of strings")
def _string_list(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return f"must be a list of strings, got {v!r}"
    return None


@_described("['auto'] or ONNX Runtime provider names, in order of preference")
def _providers(v):
    if _string_list(v) or not v or any(not p.strip() for p in v):
        return "must be ['auto'] or a non-empty list of ONNX Runtime provider names"
    return None


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "model directory (model.json + ONNX graphs); empty = the embedded "
              "default model (models/default)", _string),
    ParamSpec("backend", "onnxruntime", "inference backend: onnxruntime | torch", _one_of(BACKENDS)),
    ParamSpec("providers", ["auto"], "ONNX Runtime providers in order of preference, or ['auto'] "
              "(TensorRT -> CUDA -> CPU, whichever is available)", _providers),
    ParamSpec("device", "cpu", "torch backend device: cpu | cuda | cuda:N", _string),
    ParamSpec("threads", 0, "intra-op CPU threads for the backend; 0 = backend default",
              _int_range(0, 256)),
    ParamSpec("input_transport", "raw", "raw: sensor_msgs/Image on `image` | compressed: "
              "sensor_msgs/CompressedImage (JPEG / PNG) on `image`/compressed, as image_transport "
              "names it (the base name is resolved first, so `image:=/camera/image_raw` applies)",
              _one_of(TRANSPORTS)),
    ParamSpec("input_reliability", "best_effort", "QoS reliability of the image subscription: "
              "best_effort (SensorDataQoS) | reliable", _one_of(RELIABILITIES)),
    ParamSpec("input_depth", 5, "QoS history depth of the image subscription (frames beyond the "
              "newest are dropped by the node anyway)", _int_range(1, 1000)),
    ParamSpec("max_image_pixels", 4096 * 4096, "larger input images are rejected as bad frames",
              _int_range(1, 1 << 30), live=True),
    ParamSpec("output_resolution", "input", "size of published maps: input (camera resolution) | "
              "inference (the model's input size)", _one_of(OUTPUT_RESOLUTIONS)),
    ParamSpec("label_format", "trainid", "~/labels encoding: trainid (0..18, 255 void) | labelid "
              "(regular Cityscapes labelIds)", _one_of(LABEL_FORMATS), live=True),
    ParamSpec("overlay_alpha", 0.5, "weight of the class colours in ~/overlay",
              _float_range(0.0, 1.0), live=True),
    ParamSpec("confidence_classes", ["person", "car"], "classes that get a "
              "~/class_confidence/<class> probability map ('traffic light' -> traffic_light); "
              "[''] = none", _string_list),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics messages (wall time)",
              _float_range(0.0, 3600.0, lo_open=True)),
    ParamSpec("schedule.mode", _DEFAULT_SCHEDULE.mode, "key-frame schedule: interval | timer | "
              "motion (~/request_key_frame works in every mode)", _one_of(MODES), live=True),
    ParamSpec("schedule.interval", _DEFAULT_SCHEDULE.interval, "interval mode: a key frame "
              "every k-th frame", _int_range(1, 10_000), live=True),
    ParamSpec("schedule.period_s", _DEFAULT_SCHEDULE.period_s, "timer mode: a key frame once this "
              "much message time has passed (follows /clock and bag time)",
              _float_range(0.0, 3600.0, lo_open=True), live=True),
    ParamSpec("schedule.motion_threshold", _DEFAULT_SCHEDULE.motion_threshold, "motion mode: key "
              "frame when the motion score (mean abs. grey difference, 0..1) reaches this",
              _float_range(0.0, 1.0, lo_open=True), live=True),
    ParamSpec("schedule.min_interval", _DEFAULT_SCHEDULE.min_interval, "motion mode: frames at "
              "least between key frames", _int_range(1, 10_000), live=True),
    ParamSpec("schedule.max_interval", _DEFAULT_SCHEDULE.max_interval, "motion mode: frames at "
              "most between key frames", _int_range(1, 10_000), live=True),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
SCHEDULE_PREFIX = "schedule."


def check_value(name: str, value: Any) -> str | None:
    """Reason why ``value`` is invalid for parameter ``name``, or None."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None  # not ours (use_sim_time, ...)
    return spec.check(value)


def coerce(name: str, value: Any) -> Any:
    """A checked value in the type of its default (an integer given for a float, lists)."""
    default = SPEC_BY_NAME[name].default
    if isinstance(default, float):
        return float(value)
    if isinstance(default, list):
        return list(value)
    return value


def schedule_settings(values: dict[str, Any]) -> ScheduleSettings:
    """ScheduleSettings from parameter values (keys with the ``schedule.`` prefix); raises ValueError."""
    kwargs = {k[len(SCHEDULE_PREFIX):]: v for k, v in values.items() if k.startswith(SCHEDULE_PREFIX)}
    return ScheduleSettings(**kwargs).validated()


def normalise_class_name(name: str) -> str:
    """'Traffic Light' / 'traffic_light' -> 'traffic_light' (also the topic suffix)."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


def resolve_confidence_classes(requested: list[str], class_names: list[str]) -> list[tuple[int, str]]:
    """[(train_id, topic suffix)] for the requested classes; ValueError names an unknown one."""
    index = {normalise_class_name(n): i for i, n in enumerate(class_names)}
    out: list[tuple[int, str]] = []
    for name in requested:
        if not name.strip():
            continue
        key = normalise_class_name(name)
        if key not in index:
            raise ValueError(f"confidence_classes: unknown class {name!r}; known: "
                             f"{', '.join(normalise_class_name(n) for n in class_names)}")
        if (index[key], key) not in out:
            out.append((index[key], key))
    return out


def default_model_candidates() -> list[Path]:
    """Where the embedded default model may be, in order: ``<repo>/models/default`` in a source
    tree, the colcon-installed ``share/mpvss_ros/models/default`` (through the ament index, when
    available), the ``share/mpvss_ros/models/default`` an installed wheel lists, and the one
    under ``sys.prefix``, where a wheel puts it in a venv."""
    root = Path(__file__).resolve().parents[2]
    found = [root / "models" / "default"] if (root / "package.xml").is_file() else []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            found.append(Path(get_package_share_directory("mpvss_ros")) / "models" / "default")
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (ROS not sourced)
            pass
    except ImportError:
        pass
    for wheel_share in (_installed_model_dir(), Path(sys.prefix) / "share" / "mpvss_ros" / "models" / "default"):
        if wheel_share is not None and wheel_share not in found:
            found.append(wheel_share)
    return found


def _installed_model_dir() -> Path | None:
    """The model directory a wheel installed, wherever pip put it (a venv, --user, --prefix):
    read from the installed distribution's file list, None for a source tree or editable install."""
    from importlib.metadata import PackageNotFoundError, distribution
    try:
        dist = distribution("mpvss_ros")
    except PackageNotFoundError:
        return None
    for member in dist.files or ():
        if member.as_posix().endswith("share/mpvss_ros/models/default/model.json"):
            return Path(os.path.normpath(dist.locate_file(member))).parent
    return None


def default_model_dir() -> Path:
    """The first existing default model directory; FileNotFoundError naming where it looked."""
    candidates = default_model_candidates()
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"embedded default model not found (looked in {', '.join(map(str, candidates))}; "
                            "it ships in the repository's models/, the colcon install and the wheel); "
                            "give a model directory (the model parameter, or --model)")


def resolve_model_dir(param: str) -> Path:
    """Model directory from the ``model`` parameter, symlinks and ``..`` resolved (the log shows
    the real path); FileNotFoundError / NotADirectoryError with the reason. Whether it holds a
    usable model (model.json, graph files inside it) is the runner's check."""
    if not param:
        return default_model_dir()
    if "\0" in param:
        raise ValueError("model path contains a NUL character")
    path = Path(os.path.expanduser(param))
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):  # RuntimeError: a symlink loop
        raise FileNotFoundError(f"model directory not found: {path}") from None
    if not real.is_dir():
        raise NotADirectoryError(f"model path is not a directory: {path}"
                                 + (f" (-> {real})" if real != path else ""))
    return real


def input_qos(reliability: str, depth: int):
    """The image subscription's QoS: the sensor-data profile (best effort), or reliable, at `depth`."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    base = qos_profile_sensor_data if reliability == "best_effort" else QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE)
    return QoSProfile(history=base.history, depth=depth, reliability=base.reliability, durability=base.durability)
