"""Reading and writing Cityscapes-style video sequences.

Layout (root = a Cityscapes directory or the output of `mpvss make-sequences`):
  leftImg8bit_sequence/<split>/<city>/<city>_<seq:06>_<frame:06>_leftImg8bit.png   every frame
  gtFine/<split>/<city>/<city>_<seq:06>_<frame:06>_gtFine_labelIds.png             some or all frames
  flow/<split>/<city>/<city>_<seq:06>_<frame:06>_flow.png                          optional (generated data)
A sequence is a maximal run of consecutive frame numbers of one (city, seq): real Cityscapes keeps
many 30-frame snippets under one sequence number, separated by gaps in the frame numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mpvss_ros.data import flow_io
from mpvss_ros.data.labels import check_label_ids, label_ids_to_train_ids, train_ids_to_label_ids

_IMAGE_RE = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")


def frame_stem(city: str, seq: int, frame: int) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def image_path(root, split: str, city: str, seq: int, frame: int) -> Path:
    return Path(root) / "leftImg8bit_sequence" / split / city / f"{frame_stem(city, seq, frame)}_leftImg8bit.png"


def label_path(root, split: str, city: str, seq: int, frame: int) -> Path:
    return Path(root) / "gtFine" / split / city / f"{frame_stem(city, seq, frame)}_gtFine_labelIds.png"


def flow_path(root, split: str, city: str, seq: int, frame: int) -> Path:
    return Path(root) / "flow" / split / city / f"{frame_stem(city, seq, frame)}_flow.png"


@dataclass(frozen=True)
class Frame:
    city: str
    seq: int
    frame: int
    image_path: Path
    label_path: Path | None  # None: no ground truth for this frame
    flow_path: Path | None  # None: no ground-truth flow

    @property
    def stem(self) -> str:
        return frame_stem(self.city, self.seq, self.frame)


@dataclass(frozen=True)
class Sequence:
    city: str
    seq: int
    frames: tuple[Frame, ...]

    @property
    def name(self) -> str:
        return f"{self.city}_{self.seq:06d}_{self.frames[0].frame:06d}"

    def __len__(self) -> int:
        return len(self.frames)


def read_image(path) -> np.ndarray:
    """-> (H, W, 3) uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label_ids(path) -> np.ndarray:
    """(H, W) uint8 Cityscapes labelIds; ValueError for values outside 0..33 or colour images."""
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise FileNotFoundError(f"cannot read label image {path}")
    if ids.ndim != 2:
        ids = _palette_indices(path, ids.shape)
    return check_label_ids(ids, path)


def _palette_indices(path, shape) -> np.ndarray:
    """Indices of a palette-mode PNG (OpenCV expands the palette to colours; PIL, like
    cityscapesScripts, reads the indices)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode != "P":
            raise ValueError(f"{path}: label image must be single-channel, got {shape[2]} channels ({im.mode})")
        return np.asarray(im)


def write_image(path, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Compression level 1: several times faster than the default, files ~20% larger.
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def write_label_ids(path, label_ids: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(label_ids, dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def write_frame(root, split: str, city: str, seq: int, frame: int, image: np.ndarray,
                train_ids: np.ndarray | None = None, flow: np.ndarray | None = None,
                valid: np.ndarray | None = None) -> None:
    """Write one frame: image, optional ground truth (given as train ids, stored as labelIds), flow."""
    write_image(image_path(root, split, city, seq, frame), image)
    if train_ids is not None:
        write_label_ids(label_path(root, split, city, seq, frame), train_ids_to_label_ids(train_ids))
    if flow is not None:
        flow_io.write_flow_png(flow_path(root, split, city, seq, frame), flow, valid)


def unmatched_warning(split: str, count: int, fate: str) -> str:
    """What a command prints about `count` ground-truth files without a frame image."""
    return (f"warning: {count} ground-truth file(s) under gtFine/{split} have no frame image under "
            f"leftImg8bit_sequence/{split}; {fate}")


class CityscapesSequences:
    """The sequences of one split, in (city, seq, frame) order."""

    def __init__(self, root, split: str):
        self.root = Path(root)
        self.split = split
        img_dir = self.root / "leftImg8bit_sequence" / split
        if not img_dir.is_dir():
            raise FileNotFoundError(f"no image folder {img_dir}")
        found: dict[tuple[str, int], list[int]] = {}
        for p in img_dir.glob("*/*_leftImg8bit.png"):
            m = _IMAGE_RE.match(p.name)
            if m and m.group("city") == p.parent.name:
                found.setdefault((m.group("city"), int(m.group("seq"))), []).append(int(m.group("frame")))
        if not found:
            raise FileNotFoundError(f"no <city>_<seq>_<frame>_leftImg8bit.png images under {img_dir}")
        self.sequences: list[Sequence] = []
        for (city, seq), numbers in sorted(found.items()):
            numbers.sort()
            run: list[int] = [numbers[0]]
            for n in numbers[1:]:
                if n != run[-1] + 1:
                    self.sequences.append(self._sequence(city, seq, run))
                    run = []
                run.append(n)
            self.sequences.append(self._sequence(city, seq, run))
        # Ground truth whose frame image is missing cannot be scored: listed so callers can say so.
        matched = {f.label_path for f in self.frames() if f.label_path is not None}
        self.unmatched_labels: list[Path] = sorted(
            p for p in (self.root / "gtFine" / split).glob("*/*_gtFine_labelIds.png") if p not in matched)

    def _sequence(self, city: str, seq: int, numbers: list[int]) -> Sequence:
        frames = []
        for n in numbers:
            lp = label_path(self.root, self.split, city, seq, n)
            fp = flow_path(self.root, self.split, city, seq, n)
            frames.append(Frame(city, seq, n, image_path(self.root, self.split, city, seq, n),
                                lp if lp.is_file() else None, fp if fp.is_file() else None))
        return Sequence(city, seq, tuple(frames))

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self):
        return iter(self.sequences)

    def __getitem__(self, i: int) -> Sequence:
        return self.sequences[i]

    def frames(self):
        for s in self.sequences:
            yield from s.frames

    @staticmethod
    def load_image(frame: Frame) -> np.ndarray:
        return read_image(frame.image_path)

    @staticmethod
    def load_train_ids(frame: Frame) -> np.ndarray | None:
        """(H, W) uint8 train ids (255 = ignore), or None where the frame has no ground truth."""
        if frame.label_path is None:
            return None
        return label_ids_to_train_ids(read_label_ids(frame.label_path))

    @staticmethod
    def load_flow(frame: Frame) -> tuple[np.ndarray, np.ndarray] | None:
        """Backward flow to the previous frame (H, W, 2) and valid mask, or None where absent."""
        if frame.flow_path is None:
            return None
        return flow_io.read_flow_png(frame.flow_path)
