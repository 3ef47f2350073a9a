"""Model configuration: `MPVSSConfig` (JSON round-trip) and small offline Mask2Former configs.

The segmentor is a transformers `Mask2FormerForUniversalSegmentation`. It comes either from a
local transformers directory (`segmentor_path`), from a full transformers config dict stored in
a checkpoint (`segmentor_hf_config`), or from the small-config fields in `SegmentorConfig`
(random init, Swin backbone, no download).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


def cityscapes_train_classes() -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and colours of the 19 Cityscapes train classes (trainId 0..18), from cityscapesScripts."""
    from cityscapesscripts.helpers.labels import labels

    by_train_id = {lab.trainId: lab for lab in labels if 0 <= lab.trainId < 255 and not lab.ignoreInEval}
    ids = sorted(by_train_id)
    if ids != list(range(19)):
        raise RuntimeError(f"unexpected Cityscapes train ids from cityscapesscripts: {ids}")
    return [by_train_id[i].name for i in ids], [tuple(by_train_id[i].color) for i in ids]


@dataclass
class SegmentorConfig:
    """Small-config fields of a Swin + Mask2Former segmentor.

    Defaults are the calibrated 1.77 M-parameter model (Swin embed 32, depths 1-1-2-1, window 8,
    hidden/feature/mask dims 64, 1 encoder layer, 4 decoder layers, 16 queries).
    """

    embed_dim: int = 32
    depths: tuple[int, ...] = (1, 1, 2, 1)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 8
    patch_size: int = 4
    hidden_dim: int = 64
    feature_size: int = 64
    mask_feature_size: int = 64
    encoder_layers: int = 1
    decoder_layers: int = 4
    num_queries: int = 16
    attention_heads: int = 4
    feedforward_dim: int = 256
    train_num_points: int = 12544


@dataclass
class QueryFlowConfig:
    """The query-flow module (motion encoder, motion decoder, flow head).

    Channels are kept small so a non-key frame costs a fraction of a key frame.
    """

    encoder_channels: tuple[int, ...] = (16, 24, 32, 48, 64, 64)  # 6 FlowNetS-like stages
    pair_scale: float = 0.5  # the frame pair is downscaled before the motion encoder
    hidden_dim: int = 64  # flow-query / motion-token width
    num_heads: int = 4
    decoder_layers: int = 3  # cycles the 1/32, 1/16, 1/8 motion scales coarse -> fine
    ffn_dim: int = 128
    flow_embed_dim: int = 32  # width of the per-query (x, y) flow embeddings


@dataclass
class MPVSSConfig:
    image_size: tuple[int, int] = (256, 512)  # (H, W) the graphs are built for
    num_classes: int = 19
    segmentor_path: str | None = None  # local transformers Mask2Former directory
    segmentor_hf_config: dict | None = None  # full transformers config (checkpoints store it)
    segmentor: SegmentorConfig = field(default_factory=SegmentorConfig)
    flow: QueryFlowConfig = field(default_factory=QueryFlowConfig)
    default_interval: int = 5

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MPVSSConfig":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown MPVSSConfig fields: {sorted(unknown)}")
        seg = _tuples(SegmentorConfig, data.pop("segmentor", {}) or {})
        flow = _tuples(QueryFlowConfig, data.pop("flow", {}) or {})
        if "image_size" in data:
            data["image_size"] = tuple(int(v) for v in data["image_size"])
        return cls(segmentor=SegmentorConfig(**seg), flow=QueryFlowConfig(**flow), **data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "MPVSSConfig":
        data = read_json_object(path)
        if data.get("model_type") == "mask2former":
            raise ValueError(f"{path} belongs to a transformers Mask2Former directory, not an MPVSS model: "
                             "train the query-flow module on it (`mpvss train flow --segmentor DIR`), then "
                             "`mpvss export` the result")
        return cls.from_dict(data)


def is_mask2former_dir(directory: str | Path) -> bool:
    """True for a transformers Mask2Former directory (its config.json says model_type mask2former).
    Torch-free: the ONNX runner's path asks it too."""
    config = Path(directory) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "mask2former"


def read_json_object(path: str | Path) -> dict:
    """A config.json's object; ValueError naming the file when it is not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def first_line(exc: BaseException) -> str:
    """An exception from a third-party loader as one line (its first), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tuples(cls, data: dict) -> dict:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def tiny_segmentor_config(seg: SegmentorConfig | None = None, num_classes: int = 19):
    """A transformers `Mask2FormerConfig` with a Swin backbone, built offline (random init)."""
    from transformers import Mask2FormerConfig, SwinConfig

    seg = seg or SegmentorConfig()
    names, _ = cityscapes_train_classes()
    if num_classes != len(names):
        names = [f"class_{i}" for i in range(num_classes)]
    stages = [f"stage{i + 1}" for i in range(len(seg.depths))]
    swin = SwinConfig(
        embed_dim=seg.embed_dim,
        depths=list(seg.depths),
        num_heads=list(seg.num_heads),
        window_size=seg.window_size,
        patch_size=seg.patch_size,
        out_features=stages,
    )
    stride = seg.patch_size
    return Mask2FormerConfig(
        backbone_config=swin,
        feature_size=seg.feature_size,
        mask_feature_size=seg.mask_feature_size,
        hidden_dim=seg.hidden_dim,
        encoder_layers=seg.encoder_layers,
        decoder_layers=seg.decoder_layers,
        num_queries=seg.num_queries,
        num_attention_heads=seg.attention_heads,
        encoder_feedforward_dim=seg.feedforward_dim,
        dim_feedforward=seg.feedforward_dim,
        feature_strides=[stride * 2**i for i in range(len(seg.depths))],
        common_stride=stride,
        train_num_points=seg.train_num_points,
        num_labels=num_classes,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def small_config(image_size: tuple[int, int] = (64, 128)) -> MPVSSConfig:
    """A smaller configuration for unit tests (fast on 2 CPU cores)."""
    return MPVSSConfig(
        image_size=image_size,
        segmentor=SegmentorConfig(
            embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
            hidden_dim=32, feature_size=32, mask_feature_size=32, encoder_layers=1,
            decoder_layers=2, num_queries=8, attention_heads=2, feedforward_dim=64,
            train_num_points=1024,
        ),
        flow=QueryFlowConfig(
            encoder_channels=(8, 12, 16, 16, 24, 24), hidden_dim=32, num_heads=2,
            decoder_layers=2, ffn_dim=64, flow_embed_dim=16,
        ),
    )
