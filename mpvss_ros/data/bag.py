"""Cityscapes-style sequences <-> rosbag2 (MCAP storage), through rosbags only (no rclpy).

Layout of a bag written here (every message of one frame shares one log time = header stamp):
- ``/camera/image_raw``      sensor_msgs/msg/Image, ``rgb8``, frame_id ``camera``; or, with
  ``image_format`` png / jpeg, ``/camera/image_raw/compressed`` sensor_msgs/msg/CompressedImage
  (the topic and format field compressed_image_transport uses)
- ``/camera/camera_info``    sensor_msgs/msg/CameraInfo (nominal pinhole: the generated and
  Cityscapes sequence images carry no calibration we could use)
- ``/ground_truth/labels``   sensor_msgs/msg/Image, ``mono8`` Cityscapes labelIds; only for
  frames that have ground truth
- ``/camera/sequence``       std_msgs/msg/String, the frame's Cityscapes name
  ``<city>_<seq:06>_<frame:06>``. As in `CityscapesSequences`, a sequence is a run of
  consecutive frame numbers of one (city, seq); it is named after its first frame.

Why a separate sequence topic rather than encoding it in ``frame_id``: ``frame_id`` names a TF
frame that RViz and TF consumers resolve, so it stays the real camera frame; a side topic keeps
the image topics exactly what a camera driver publishes, and replay tools that ignore it lose
nothing. Sequences are concatenated in time with a gap (``SEQUENCE_GAP_S``) so message time
always moves forward.

Format version: rosbag2 metadata version 9, which is what ROS 2 Jazzy's rosbag2 (0.26) itself
writes (``BagMetadata::version = 9`` since the QoS profiles became a YAML list); Kilted reads
it as well, and version 9 is the newest rosbags writes. ``custom_data`` is always filled in:
Jazzy's metadata parser requires it to be a map (rosbags writes ``null`` when it is empty).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mpvss_ros.data.bag_messages import (  # noqa: F401 (the message helpers are part of this module's API)
    CAMERA_INFO_TYPE, COMPRESSED_TYPE, FRAME_ID, IMAGE_FORMATS, IMAGE_TYPE, IMAGE_TYPES, STRING_TYPE,
    camera_info_message, cdr_header_stamp_ns, compressed_message, decode_compressed, decode_image,
    decode_mono8, header, image_message, typestore)

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_SUFFIX = "/compressed"  # image_transport's name for the compressed twin of an image topic
CAMERA_INFO_TOPIC = "/camera/camera_info"
GROUND_TRUTH_TOPIC = "/ground_truth/labels"
SEQUENCE_TOPIC = "/camera/sequence"
ROSBAG2_VERSION = 9
DEFAULT_RATE_HZ = 17.0  # the Cityscapes sequence frame rate
SEQUENCE_GAP_S = 1.0
# Fixed start time: the same sequences always give the same bag (message time is sim time).
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


@dataclass
class BagFrame:
    """One frame to write: RGB image, optional labelIds ground truth, its Cityscapes name."""

    name: str                      # <city>_<seq:06>_<frame:06>
    image: np.ndarray              # (H, W, 3) uint8 RGB
    label_ids: np.ndarray | None   # (H, W) uint8 Cityscapes labelIds, None without ground truth


def continues_sequence(previous: str | None, name: str) -> bool:
    """Whether frame ``name`` directly follows frame ``previous`` in one sequence."""
    if previous is None:
        return False
    a, b = previous.rsplit("_", 1), name.rsplit("_", 1)
    if len(a) == len(b) == 2 and a[1].isdigit() and b[1].isdigit():
        return a[0] == b[0] and int(b[1]) == int(a[1]) + 1
    return False


@dataclass
class BagSummary:
    path: Path
    frames: int = 0
    ground_truth_frames: int = 0
    sequences: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None
    rate_hz: float = DEFAULT_RATE_HZ
    duration_s: float = 0.0
    unmatched_ground_truth: int = 0  # gtFine files without a frame image (not in the bag)


def write_bag(frames: Iterable[BagFrame], out: str | Path, rate_hz: float = DEFAULT_RATE_HZ,
              start_ns: int = DEFAULT_START_NS, total: int | None = None,
              progress: bool = True, image_format: str = "raw") -> BagSummary:
    """Write frames (grouped by sequence, in order) to a new rosbag2 MCAP bag directory.

    image_format "raw": rgb8 Images on IMAGE_TOPIC; "png" / "jpeg": CompressedImages on
    IMAGE_TOPIC + "/compressed" (ground truth stays a lossless mono8 Image)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if not rate_hz > 0:
        raise ValueError(f"rate must be positive, got {rate_hz}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    compressed = image_format != "raw"
    image_topic, image_type = (IMAGE_TOPIC + COMPRESSED_SUFFIX, COMPRESSED_TYPE) if compressed else \
        (IMAGE_TOPIC, IMAGE_TYPE)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already; choose a new bag path")
    ts = typestore()
    period_ns = int(round(1e9 / rate_hz))
    gap_ns = int(SEQUENCE_GAP_S * 1e9)
    summary = BagSummary(path=out, rate_hz=rate_hz)
    bar = _progress(total, "bag convert", progress)
    writer = Writer(out, version=ROSBAG2_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=ts)
            for topic, msgtype in ((SEQUENCE_TOPIC, STRING_TYPE), (CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE),
                                   (GROUND_TRUTH_TOPIC, IMAGE_TYPE), (image_topic, image_type))
        }
        ns = start_ns
        previous = None
        for frame in frames:
            image = np.asarray(frame.image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"{frame.name}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            if summary.size is None:
                summary.size = image.shape[:2]
            same = continues_sequence(previous, frame.name)
            if previous is not None:
                ns += period_ns if same else gap_ns
            if not same:
                summary.sequences.append(frame.name)
            previous = frame.name
            h, w = image.shape[:2]
            # Ground truth and sequence name go first so a reader has them when the image comes.
            writer.write(conns[SEQUENCE_TOPIC], ns,
                         ts.serialize_cdr(ts.types[STRING_TYPE](data=frame.name), STRING_TYPE))
            writer.write(conns[CAMERA_INFO_TOPIC], ns,
                         ts.serialize_cdr(camera_info_message(ts, ns, h, w), CAMERA_INFO_TYPE))
            if frame.label_ids is not None:
                labels = np.asarray(frame.label_ids)
                if labels.shape != (h, w):
                    raise ValueError(f"{frame.name}: ground truth {labels.shape} does not match image {(h, w)}")
                writer.write(conns[GROUND_TRUTH_TOPIC], ns,
                             ts.serialize_cdr(image_message(ts, ns, labels, "mono8"), IMAGE_TYPE))
                summary.ground_truth_frames += 1
            message = compressed_message(ts, ns, image, image_format) if compressed else \
                image_message(ts, ns, image, "rgb8")
            writer.write(conns[image_topic], ns, ts.serialize_cdr(message, image_type))
            summary.frames += 1
            bar.update(1)
        if summary.frames == 0:
            raise ValueError("no frames to write")
        summary.duration_s = (ns - start_ns) / 1e9
        writer.set_custom_data("mpvss.sequences", json.dumps(summary.sequences))
        writer.set_custom_data("mpvss.rate_hz", repr(float(rate_hz)))
        writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)  # ours (it did not exist): no half-written bag
        raise
    finally:
        bar.close()
    return summary


def convert_sequences(root: str | Path, split: str, out: str | Path, rate_hz: float = DEFAULT_RATE_HZ,
                      progress: bool = True, image_format: str = "raw") -> BagSummary:
    """`mpvss bag convert`: a Cityscapes-style folder's split -> rosbag2 MCAP bag."""
    from mpvss_ros.data.cityscapes import CityscapesSequences, read_image, read_label_ids

    dataset = CityscapesSequences(root, split)
    frames = list(dataset.frames())

    def bag_frames() -> Iterator[BagFrame]:
        for frame in frames:
            labels = read_label_ids(frame.label_path) if frame.label_path is not None else None
            yield BagFrame(name=frame.stem, image=read_image(frame.image_path), label_ids=labels)

    summary = write_bag(bag_frames(), out, rate_hz=rate_hz, total=len(frames), progress=progress,
                        image_format=image_format)
    summary.unmatched_ground_truth = len(dataset.unmatched_labels)
    return summary


# ---------------------------------------------------------------------------------- reading

@dataclass
class BagRecord:
    """One camera frame read back from a bag, with its raw CDR (for replay without decoding)."""

    stamp_ns: int            # header stamp of the image (= log time for bags written here)
    log_ns: int
    image_cdr: bytes
    camera_info_cdr: bytes | None
    name: str | None         # Cityscapes frame name from /camera/sequence, if the bag has it
    label_ids: np.ndarray | None
    sequence: str = ""       # name of the sequence's first frame ("" for a camera bag)
    new_sequence: bool = False
    _ts: object = None
    msgtype: str = IMAGE_TYPE  # or COMPRESSED_TYPE

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED_TYPE

    def image(self) -> np.ndarray:
        """Decode the image to (H, W, 3) uint8 RGB (the encodings of `data/encodings.py`, and
        8UC1 / 8UC3 as grey / RGB; JPEG / PNG for a CompressedImage)."""
        msg = self._ts.deserialize_cdr(self.image_cdr, self.msgtype)
        return decode_compressed(msg) if self.compressed else decode_image(msg)


@dataclass
class BagInfo:
    path: Path
    frames: int
    ground_truth_frames: int
    topics: dict[str, str]
    duration_s: float
    image_topic: str = IMAGE_TOPIC
    image_type: str = IMAGE_TYPE

    @property
    def compressed(self) -> bool:
        return self.image_type == COMPRESSED_TYPE

    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth_frames > 0


def bag_info(path: str | Path, image_topic: str | None = None) -> BagInfo:
    """Counts and topics of a bag. image_topic None: /camera/image_raw, or its /compressed twin
    when the bag has only that."""
    from rosbags.rosbag2 import Reader

    path = _existing_bag(path)
    with Reader(path) as reader:
        image_topic, image_type = _check_image_topic(path, reader.connections, image_topic)
        counts = {c.topic: 0 for c in reader.connections}
        for c in reader.connections:
            counts[c.topic] += c.msgcount
        topics = {c.topic: c.msgtype for c in reader.connections}
        return BagInfo(path=path, frames=counts.get(image_topic, 0),
                       ground_truth_frames=counts.get(GROUND_TRUTH_TOPIC, 0), topics=topics,
                       duration_s=reader.duration / 1e9, image_topic=image_topic, image_type=image_type)


def read_records(path: str | Path, image_topic: str | None = None) -> Iterator[BagRecord]:
    """Yield the bag's camera frames (Image or CompressedImage) in log-time order; image_topic
    as for `bag_info`.

    Ground truth, sequence name and camera info are attached to the image they share a log time
    with (how `write_bag` writes them); in a bag from a real camera they are simply absent.
    """
    from rosbags.rosbag2 import Reader

    path = _existing_bag(path)
    ts = typestore()
    with Reader(path) as reader:
        image_topic, image_type = _check_image_topic(path, reader.connections, image_topic)
        info_topic = camera_info_topic(image_topic)
        wanted = [c for c in reader.connections if c.topic in (image_topic, GROUND_TRUTH_TOPIC, SEQUENCE_TOPIC)
                  or (c.topic == info_topic and c.msgtype == CAMERA_INFO_TYPE)]
        group: list[tuple[str, int, bytes]] = []
        camera_info: list[bytes | None] = [None]  # the latest, for bags with fewer infos than images
        previous: BagRecord | None = None
        for conn, log_ns, raw in reader.messages(connections=wanted):
            if group and log_ns != group[0][1]:
                for record in _group_records(ts, group, image_topic, image_type, info_topic, camera_info):
                    _link(previous, record)
                    previous = record
                    yield record
                group = []
            group.append((conn.topic, log_ns, bytes(raw)))
        for record in _group_records(ts, group, image_topic, image_type, info_topic, camera_info):
            _link(previous, record)
            previous = record
            yield record


def _link(previous: BagRecord | None, record: BagRecord) -> None:
    """Name the record's sequence; a bag without names is one sequence."""
    if previous is None:
        record.new_sequence = True
        record.sequence = record.name or ""
    elif record.name and not continues_sequence(previous.name, record.name):
        record.new_sequence = True
        record.sequence = record.name
    else:
        record.sequence = previous.sequence


def camera_info_topic(image_topic: str) -> str:
    """The camera_info beside an image topic: /cam/color/image_raw -> /cam/color/camera_info,
    and the same for its compressed twin /cam/color/image_raw/compressed."""
    if image_topic.endswith(COMPRESSED_SUFFIX):
        image_topic = image_topic[: -len(COMPRESSED_SUFFIX)]
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


def _check_image_topic(path, connections, image_topic: str | None) -> tuple[str, str]:
    """(topic, message type) of the bag's camera images; ValueError naming what the bag has."""
    types = {c.topic: c.msgtype for c in connections}
    if image_topic is None:
        twin = IMAGE_TOPIC + COMPRESSED_SUFFIX
        image_topic = twin if IMAGE_TOPIC not in types and types.get(twin) == COMPRESSED_TYPE else IMAGE_TOPIC
    if image_topic not in types:
        raise ValueError(f"{path} has no {image_topic} topic (topics: {', '.join(sorted(types))})")
    if types[image_topic] not in IMAGE_TYPES:
        raise ValueError(f"{image_topic} in {path} is {types[image_topic]}, not {IMAGE_TYPE} or {COMPRESSED_TYPE}")
    return image_topic, types[image_topic]


def _group_records(ts, group, image_topic: str, image_type: str, info_topic: str,
                   camera_info: list) -> Iterator[BagRecord]:
    """Records for the images among messages that share one log time (any order within it)."""
    side: dict[str, object] = {}
    for topic, _, raw in group:
        if topic == info_topic:
            camera_info[0] = side["info"] = raw
        elif topic == GROUND_TRUTH_TOPIC:
            side["labels"] = decode_mono8(ts.deserialize_cdr(raw, IMAGE_TYPE))
        elif topic == SEQUENCE_TOPIC:
            side["name"] = ts.deserialize_cdr(raw, STRING_TYPE).data
    for topic, log_ns, raw in group:
        if topic == image_topic:
            yield BagRecord(stamp_ns=cdr_header_stamp_ns(raw), log_ns=log_ns, image_cdr=raw,
                            camera_info_cdr=side.get("info", camera_info[0]), name=side.get("name"),
                            label_ids=side.get("labels"), _ts=ts, msgtype=image_type)


def _existing_bag(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        raise ValueError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    return path


def _progress(total: int | None, desc: str, enabled: bool):
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True)

    class _Quiet:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    return _Quiet()
