"""`mpvss recover-weights`: the torch weights of a model directory exported without weights are
rebuilt from its ONNX graphs, element for element, and a wrong configuration is refused."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mpvss_ros.model.config import small_config


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A tiny model with weights unlike any initialisation, exported without weights."""
    from mpvss_ros.model.export import export_model
    from mpvss_ros.model.mpvss import MPVSS

    torch.manual_seed(3)
    model = MPVSS(dataclasses.replace(small_config(), image_size=(64, 128)))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    out = tmp_path_factory.mktemp("recover") / "model"
    export_model(model.eval(), out, size=(64, 128), write_weights=False, verify=False)
    return model, out


def test_weights_come_back_from_the_graphs(trained_like, tmp_path, capsys):
    from mpvss_ros.cli import main
    from mpvss_ros.model.mpvss import MPVSS

    model, model_dir = trained_like
    assert "config" in json.loads((model_dir / "model.json").read_text())
    assert not (model_dir / "weights.safetensors").exists()
    assert main(["recover-weights", "--model", str(model_dir), "--out", str(tmp_path / "ckpt")]) == 0
    printed = capsys.readouterr().out
    assert "segmentor_label_agreement=1," in printed and "flow_label_agreement=1" in printed
    # the small decoder never reads some level-embedding rows: said, not hidden
    assert "level_embed" in printed and "never read by the graphs" in printed
    rebuilt = MPVSS.load(tmp_path / "ckpt").eval()
    original = dict(model.named_parameters())
    same = [n for n, p in rebuilt.named_parameters() if torch.allclose(p, original[n], atol=2e-5)]
    # all but the few tensors (or rows) inference never reads come back
    assert len(same) > 0.9 * len(original), sorted(set(original) - set(same))
    assert "segmentor.model.class_predictor.weight" in same and "query_flow.head.fuse.weight" in same
    # and what the graphs compute follows from the rebuilt weights: key frame and propagation
    g = torch.Generator().manual_seed(5)
    key, image = torch.rand(1, 3, 64, 128, generator=g) * 255, torch.rand(1, 3, 64, 128, generator=g) * 255
    with torch.no_grad():
        outs = []
        for m in (model.eval(), rebuilt):
            k = m.key_frame(key)
            outs.append((k.mask_logits, k.class_logits, m.propagate(key, image, k.queries, k.mask_logits).mask_logits))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_wrong_configuration_is_refused(trained_like, tmp_path):
    from mpvss_ros.model.recover import recover_model

    _, model_dir = trained_like
    other = dataclasses.replace(small_config(), image_size=(64, 128), num_classes=7)
    with pytest.raises(ValueError, match="do not match this configuration"):
        recover_model(model_dir, config=other, progress=lambda _: None)


def test_command_line_errors(tmp_path, capsys):
    from mpvss_ros.cli import main

    assert main(["recover-weights", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mpvss recover-weights: error:") and "no model.json" in err and "\n" not in err
