"""Loading a user's transformers Mask2Former directory, checked so that it cannot be wrong silently.

Everything downstream (the losses on Cityscapes train ids, evaluation, the node's labels, palette
and labelIds) takes class index c to be Cityscapes train id c. A checkpoint is therefore taken
only when its `id2label` names are the 19 Cityscapes train classes (cityscapesScripts' names,
which the hub's Cityscapes checkpoints use); in another order its class head is permuted into
train-id order. Weights that do not fit the config are refused rather than left at random
initialisation, and so is an image processor that normalises differently from the ImageNet
statistics the segmentor graph and the training apply.
"""
from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import cityscapes_train_classes, first_line

IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)
IMAGENET_STD_01 = (0.229, 0.224, 0.225)


def _name(label) -> str:
    return re.sub(r"[\s_\-]+", " ", str(label)).strip().lower()


@contextmanager
def _quiet_transformers():
    """transformers prints a long load report before raising; our one-line error says it instead."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def load_mask2former(directory: Path):
    """-> `Mask2FormerForUniversalSegmentation` (eval) with classes in Cityscapes train-id order;
    ValueError with the reason in one line otherwise."""
    from transformers import Mask2FormerForUniversalSegmentation

    check_image_processor(directory)
    try:
        with _quiet_transformers():
            # mismatched shapes are loaded as "mismatched_keys" (reported below with the shapes)
            # rather than raised as an error that points at the load report we keep quiet
            model, info = Mask2FormerForUniversalSegmentation.from_pretrained(
                str(directory), local_files_only=True, use_safetensors=True, output_loading_info=True,
                ignore_mismatched_sizes=True)
    except Exception as exc:  # a user's files: truncated weights, bad JSON, an unknown architecture
        raise ValueError(f"{directory}: cannot load it as a Mask2Former checkpoint: {first_line(exc)}") from None
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        key, *shapes = mismatched[0] if isinstance(mismatched[0], (tuple, list)) else (mismatched[0],)
        detail = f" ({' in the file, '.join(str(tuple(x)) for x in shapes)} in the model)" if len(shapes) == 2 else ""
        raise ValueError(f"{directory}: {len(mismatched)} weights have other shapes than its config.json "
                         f"gives, e.g. {key}{detail}")
    # Only parameters matter: buffers the model rebuilds (Swin's relative_position_index, saved by
    # transformers 4.x and not by 5.x; the criterion's empty_weight) may be absent or extra.
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(str(k) for k in (info.get("missing_keys") or []) if str(k) in params)
    if missing:
        raise ValueError(f"{directory}: its weights lack {len(missing)} of the model's parameters (e.g. "
                         f"{missing[0]}); refusing to leave them at random values")
    order = cityscapes_order(model.config.id2label, directory)
    if order is not None:
        permute_classes(model, order)
    return model.eval()


def cityscapes_order(id2label: dict, directory) -> list[int] | None:
    """Index in the checkpoint of each Cityscapes train class (None: already in that order)."""
    names = [_name(id2label[i]) for i in sorted(id2label)]
    target = [_name(n) for n in cityscapes_train_classes()[0]]
    if names == target:
        return None
    if sorted(names) == sorted(target):
        return [names.index(t) for t in target]
    if len(names) == len(target) and all(re.fullmatch(r"label \d+", n) for n in names):
        warnings.warn(f"{directory}: classes are unnamed (LABEL_0..LABEL_18); taking them as Cityscapes train "
                      "ids 0..18 in that order", stacklevel=3)
        return None
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise ValueError(f"{directory}: its {len(names)} classes ({shown}) are not the 19 Cityscapes train classes, "
                     "which this package trains, scores and publishes (id2label names as in cityscapesScripts)")


def permute_classes(model, order: list[int]) -> None:
    """Reorder the class head's rows (the last, "no object", stays last) and the label maps."""
    head = model.class_predictor
    rows = torch.tensor(list(order) + [len(order)])
    with torch.no_grad():
        head.weight.copy_(head.weight[rows].clone())
        head.bias.copy_(head.bias[rows].clone())
    names = cityscapes_train_classes()[0]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}


def check_image_processor(directory: Path) -> None:
    """ValueError unless `preprocessor_config.json` (when there is one) normalises like ImageNet
    on 0..255 input, which is what the graphs and the training feed the segmentor."""
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return
    try:
        cfg = json.loads(path.read_text())
        # null means the processor's default (ImageNet), a number one value for all channels
        scale = float(_value(cfg, "rescale_factor", 1 / 255)) if _value(cfg, "do_rescale", True) else 1.0
        if _value(cfg, "do_normalize", True):
            mean = _channels(_value(cfg, "image_mean", IMAGENET_MEAN_01))
            std = _channels(_value(cfg, "image_std", IMAGENET_STD_01))
        else:
            mean, std = [0.0] * 3, [1.0] * 3
        if not scale > 0 or not all(s > 0 for s in std):
            raise ValueError("rescale_factor and image_std must be positive")
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not an image processor configuration this package can read ({exc})") from None
    # as applied to 0..255 pixels: (x * scale - mean) / std
    ours = [(m * 255, s * 255) for m, s in zip(IMAGENET_MEAN_01, IMAGENET_STD_01)]
    theirs = [(m / scale, s / scale) for m, s in zip(mean, std)]
    if any(abs(a - b) > 1e-3 * max(abs(b), 1.0) or abs(c - d) > 1e-3 * d
           for (b, d), (a, c) in zip(ours, theirs)):
        raise ValueError(f"{path}: normalises with mean {list(mean)}, std {list(std)} (rescale {scale:g}); "
                         "this package feeds the segmentor ImageNet statistics on 0..255 input, so its "
                         "outputs would be wrong")


def _value(cfg: dict, key: str, default):
    value = cfg.get(key)
    return default if value is None else value


def _channels(value) -> list[float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {len(values)}")
    return values
