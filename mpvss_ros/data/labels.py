"""Cityscapes label tables, built from `cityscapesscripts.helpers.labels` (the reference definition).

Train ids are 0..18 for the 19 evaluated classes and 255 (`IGNORE`) for everything else.
"""
from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

IGNORE = 255
NUM_CLASSES = 19

_train = sorted((l for l in _CS_LABELS if 0 <= l.trainId < IGNORE), key=lambda l: l.trainId)
if [l.trainId for l in _train] != list(range(NUM_CLASSES)):  # guards against a changed upstream table
    raise RuntimeError("cityscapesscripts label table does not have train ids 0..18")

TRAIN_CLASS_NAMES: tuple[str, ...] = tuple(l.name for l in _train)
# labelId of each train id (index = train id)
TRAIN_ID_TO_LABEL_ID_LIST: tuple[int, ...] = tuple(l.id for l in _train)
# palette[train_id] = (r, g, b)
PALETTE = np.array([l.color for l in _train], dtype=np.uint8)
TRAIN_ID_BY_NAME: dict[str, int] = {n: i for i, n in enumerate(TRAIN_CLASS_NAMES)}
LABEL_ID_BY_NAME: dict[str, int] = {l.name: l.id for l in _CS_LABELS if l.id >= 0}
# Ground-truth labelIds files hold 0..33 only: cityscapesScripts' json2labelImg never writes the
# licence plate's -1, and its evaluator refuses any other value.
MAX_LABEL_ID = max(l.id for l in _CS_LABELS)


def _label_to_train_lut() -> np.ndarray:
    lut = np.full(256, IGNORE, np.uint8)
    for l in _CS_LABELS:
        if 0 <= l.id < 256 and 0 <= l.trainId < IGNORE:
            lut[l.id] = l.trainId
    return lut


def _train_to_label_lut() -> np.ndarray:
    # Ignore (and any id outside 0..18) maps to labelId 0 "unlabeled", which the evaluator skips.
    lut = np.zeros(256, np.uint8)
    lut[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID_LIST
    return lut


LABEL_ID_TO_TRAIN_ID: np.ndarray = _label_to_train_lut()  # (256,) uint8
TRAIN_ID_TO_LABEL_ID: np.ndarray = _train_to_label_lut()  # (256,) uint8
# Full 256-entry colour table for train ids (ignore = black).
_PALETTE_256 = np.zeros((256, 3), np.uint8)
_PALETTE_256[:NUM_CLASSES] = PALETTE


def check_label_ids(label_ids: np.ndarray, source) -> np.ndarray:
    """Cityscapes labelIds as uint8, or ValueError naming `source` and the first value outside
    0..33: a trainIds or instanceIds image saved as labelIds, or 16-bit values that uint8 would
    wrap into real classes, would otherwise be scored silently wrong."""
    ids = np.asarray(label_ids)
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi > MAX_LABEL_ID:
            raise ValueError(f"{source}: label id {hi if hi > MAX_LABEL_ID else lo} is not a Cityscapes "
                             f"labelId (0..{MAX_LABEL_ID}); trainIds or instanceIds saved as labelIds?")
    return ids.astype(np.uint8, copy=False)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return LABEL_ID_TO_TRAIN_ID[np.asarray(label_ids, dtype=np.uint8)]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    return TRAIN_ID_TO_LABEL_ID[np.asarray(train_ids, dtype=np.uint8)]


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) train ids -> (H, W, 3) uint8 RGB in the Cityscapes palette (ignore = black)."""
    return _PALETTE_256[np.asarray(train_ids, dtype=np.uint8)]
