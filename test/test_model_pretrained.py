"""A user's transformers Mask2Former directory: classes mapped by name, nothing silently wrong."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mpvss_ros.model.config import MPVSSConfig, cityscapes_train_classes, small_config, tiny_segmentor_config
from mpvss_ros.model.mpvss import MPVSS
from mpvss_ros.model.segmentor import KeyFrameSegmentor

H, W = 64, 128
NAMES = cityscapes_train_classes()[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A saved checkpoint in Cityscapes order and the same network with its classes in another
    order (a cyclic shift: not its own inverse, so an inverted mapping would show)."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    seg = KeyFrameSegmentor.from_config(tiny_segmentor_config(small_config((H, W)).segmentor))
    seg.save_pretrained(root / "cs")
    seg.save_pretrained(root / "shifted")
    weights = load_file(root / "shifted" / "model.safetensors")
    shift = [(j + 3) % 19 for j in range(19)]  # the checkpoint's class j is Cityscapes class shift[j]
    rows = torch.tensor(shift + [19])  # "no object" stays last
    for name in ("class_predictor.weight", "class_predictor.bias"):
        weights[name] = weights[name][rows].contiguous()
    save_file(weights, root / "shifted" / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((root / "shifted" / "config.json").read_text())
    cfg["id2label"] = {str(j): NAMES[t].replace(" ", "_").upper() for j, t in enumerate(shift)}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    (root / "shifted" / "config.json").write_text(json.dumps(cfg))
    return root, seg


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_classes_in_another_order_are_mapped_by_name(source):
    root, seg = source
    loaded = KeyFrameSegmentor.from_pretrained(root / "shifted")
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        a, b = seg(x), loaded(x)
    assert torch.allclose(a.class_logits, b.class_logits, atol=1e-6)  # same logits, train-id order
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-6)
    assert [loaded.config.id2label[i] for i in range(19)] == NAMES
    cfg = small_config((H, W))
    cfg.segmentor_path = str(root / "shifted")
    assert MPVSS(cfg).class_names == NAMES


def test_other_label_sets_are_refused(source, tmp_path):
    root, _ = source
    d = _copy(root / "cs", tmp_path / "ade")
    cfg = json.loads((d / "config.json").read_text())
    cfg["id2label"] = {str(i): n for i, n in enumerate(["wall", "building", "sky", "floor", "tree"] + NAMES[5:])}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"19 classes \(wall, building, sky, floor, \.\.\.\) are not the 19 Cityscapes"):
        KeyFrameSegmentor.from_pretrained(d)


def test_weights_that_do_not_fit_are_refused(source, tmp_path):
    root, _ = source
    d = _copy(root / "cs", tmp_path / "prefixed")
    weights = load_file(d / "model.safetensors")
    save_file({f"sem_seg_head.{k}": v for k, v in weights.items()}, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="weights lack .* of the model's parameters .*refusing to leave them at random"):
        KeyFrameSegmentor.from_pretrained(d)
    d = _copy(root / "cs", tmp_path / "wider")
    weights = load_file(d / "model.safetensors")
    for name in ("class_predictor.weight", "class_predictor.bias"):  # 151 classes in the file
        weights[name] = torch.zeros((152,) + tuple(weights[name].shape[1:]))
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"2 weights have other shapes .*class_predictor\.(weight|bias) \(\(152"):
        KeyFrameSegmentor.from_pretrained(d)
    d = _copy(root / "cs", tmp_path / "truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cannot load it as a Mask2Former checkpoint"):
        KeyFrameSegmentor.from_pretrained(d)


def test_buffers_the_model_rebuilds_may_be_extra_or_absent(source, tmp_path):
    """transformers 4.x saved Swin's relative_position_index; 5.x neither saves nor expects it."""
    root, seg = source
    d = _copy(root / "cs", tmp_path / "old_format")
    weights = load_file(d / "model.safetensors")
    tables = [k for k in weights if k.endswith("attention.self.relative_position_bias_table")]
    assert tables
    for k in tables:
        weights[k.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(16, 16, dtype=torch.int64)
    weights.pop("criterion.empty_weight", None)
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    loaded = KeyFrameSegmentor.from_pretrained(d)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        assert torch.allclose(seg(x).mask_logits, loaded(x).mask_logits, atol=1e-6)


@pytest.mark.parametrize("processor, ok", [
    ({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, False),
    ({"do_rescale": False, "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375]}, True),
    ({"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "rescale_factor": 1 / 255}, True),
    ({"do_normalize": False}, False),
    ({"image_mean": None, "image_std": None}, True),  # null: the processor's ImageNet defaults
    ({"image_mean": 0.5, "image_std": 0.5}, False),  # one value for every channel
])
def test_image_processor_must_normalise_like_imagenet(source, tmp_path, processor, ok):
    root, _ = source
    d = _copy(root / "cs", tmp_path / "proc")
    (d / "preprocessor_config.json").write_text(json.dumps(processor))
    if ok:
        assert KeyFrameSegmentor.from_pretrained(d).num_classes == 19
    else:
        with pytest.raises(ValueError, match="ImageNet statistics on 0..255 input"):
            KeyFrameSegmentor.from_pretrained(d)


@pytest.mark.parametrize("processor", [{"rescale_factor": 0}, {"image_mean": [0.5, 0.5]}, {"image_std": "wide"}])
def test_unreadable_image_processor_is_a_one_line_error(source, tmp_path, processor):
    root, _ = source
    d = _copy(root / "cs", tmp_path / "proc")
    (d / "preprocessor_config.json").write_text(json.dumps(processor))
    with pytest.raises(ValueError, match="not an image processor configuration this package can read"):
        KeyFrameSegmentor.from_pretrained(d)


def test_transformers_directory_given_as_an_mpvss_model_says_what_to_do(source):
    root, _ = source
    with pytest.raises(ValueError, match=r"not an MPVSS model: train the query-flow module on it"):
        MPVSS.load(root / "cs")
    with pytest.raises(ValueError, match="not an MPVSS model"):
        MPVSSConfig.load(root / "cs" / "config.json")


def test_a_transformers_directory_is_evaluated_as_it_is_without_query_flow(source, tmp_path, capsys):
    """`mpvss evaluate --model <transformers dir>`: per-frame, copy and optical flow of the user's
    Mask2Former at the data's size, scored the same as the MPVSS model built on it; query flow,
    which needs training first, is refused in one line."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_data import make_toy_sequences

    from mpvss_ros.cli import main
    from mpvss_ros.training.train_flow import load_segmentor_source

    root, _ = source
    data = tmp_path / "data"
    make_toy_sequences(data, "val", sequences=2, frames=4, size=(H, W), seed=3)
    common = ["evaluate", "--data", str(data), "--split", "val", "--intervals", "2"]
    assert main(common + ["--model", str(root / "shifted"), "--out", str(tmp_path / "hf.json")]) == 0
    report = json.loads((tmp_path / "hf.json").read_text())
    assert [(r["method"], r["interval"]) for r in report["results"]] == \
        [("per-frame", 1), ("copy", 2), ("optical-flow", 2)]
    assert report["model"]["input_size"] == [H, W] and report["model"]["query_flow"] is False
    # the same segmentor as an MPVSS checkpoint (what `train flow --segmentor` starts from)
    torch.manual_seed(0)
    load_segmentor_source(str(root / "cs"), (H, W)).save(tmp_path / "ckpt")
    assert main(common + ["--model", str(tmp_path / "ckpt"), "--backend", "torch", "--methods", "per-frame,copy",
                          "--out", str(tmp_path / "ckpt.json")]) == 0
    ours = {(r["method"], r["interval"]): r["miou"] for r in report["results"]}
    theirs = {(r["method"], r["interval"]): r["miou"]
              for r in json.loads((tmp_path / "ckpt.json").read_text())["results"]}
    assert ours[("per-frame", 1)] == theirs[("per-frame", 1)] and ours[("copy", 2)] == theirs[("copy", 2)]
    capsys.readouterr()
    assert main(common + ["--model", str(root / "cs"), "--methods", "per-frame,query-flow",
                          "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "without a query-flow module" in err and len(err.splitlines()) == 1
    assert main(common + ["--model", str(tmp_path / "ckpt"), "--size", "64x128", "--out", str(tmp_path / "y.json")]) == 2
    assert "--size applies to a transformers Mask2Former directory only" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "auto"])
def test_a_transformers_directory_given_to_the_node_or_bench_says_what_to_do(source, backend):
    from mpvss_ros.runtime.runners import create_runner

    root, _ = source
    with pytest.raises(ValueError, match=r"not an exported model: train the query-flow module on it .*"
                                         r"`mpvss evaluate --model DIR` scores it per frame"):
        create_runner(root / "cs", backend)
