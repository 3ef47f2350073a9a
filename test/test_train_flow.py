"""`train flow`: EPE pre-training then the warped-mask loss; the segmentor body stays frozen while
its class/mask heads and the flow module learn; DDP with world size 1 (gloo) runs."""
from __future__ import annotations

import dataclasses
import socket

import pytest
import torch
from safetensors.torch import load_file

from mpvss_ros.model.config import small_config
from test_train_data import label_only_frame, make_toy_sequences


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy sequences and a segmentor checkpoint (a few steps: only its weights' identity matters)."""
    from mpvss_ros.training.train_segmentor import SegmentorOptions, train_segmentor

    root = tmp_path_factory.mktemp("toyflow")
    make_toy_sequences(root, "train", sequences=2, frames=5)
    make_toy_sequences(root, "val", sequences=1, frames=5, seed=1)
    seg = root / "seg"
    train_segmentor(SegmentorOptions(data=str(root), out=str(seg), steps=2, batch_size=2, crop=(32, 64), threads=2,
                                     val_split=None, progress=False, num_points=256, warmup=1,
                                     model_config=dataclasses.replace(small_config(), image_size=(64, 128))))
    return root, seg


def _opts(root, seg, out, **kw):
    from mpvss_ros.training.train_flow import FlowOptions

    base = dict(data=str(root), out=str(out), segmentor=str(seg) if seg else None, batch_size=2, crop=(64, 128), threads=2,
                warmup=1, lr=1e-3, pretrain_lr=1e-3, pretrain_steps=4, steps=4, max_gap=3, val_gap=2,
                log_every=2, val_every=4, checkpoint_every=4, val_frames=2, progress=False, num_points=256)
    base.update(kw)
    return FlowOptions(**base)


def _heads(keys):
    return [k for k in keys if k.startswith("segmentor.model.class_predictor.")
            or ".mask_predictor.mask_embedder." in k]


def test_flow_training_moves_only_flow_module_and_heads(toy, tmp_path):
    from mpvss_ros.training.curve import read_curve
    from mpvss_ros.training.train_flow import train_flow

    root, seg = toy
    result = train_flow(_opts(root, seg, tmp_path / "flow"))
    assert result["step"] == 8 and result["phase"] == "flow"
    before = load_file(str(seg / "model.safetensors"))
    after = load_file(str(tmp_path / "flow" / "model.safetensors"))
    assert before.keys() == after.keys()
    heads = _heads(after)
    assert heads, "class/mask head parameters not found"
    frozen = [k for k in after if k.startswith("segmentor.") and k not in heads]
    assert len(frozen) > 100
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"frozen segmentor weight changed: {k}"
    assert any(not torch.equal(before[k], after[k]) for k in heads)
    flow_keys = [k for k in after if k.startswith("query_flow.")]
    encoder = [k for k in flow_keys if k.startswith("query_flow.encoder.")]
    decoder = [k for k in flow_keys if k.startswith("query_flow.decoder.")]
    assert sum(not torch.equal(before[k], after[k]) for k in encoder) > len(encoder) // 2
    assert sum(not torch.equal(before[k], after[k]) for k in decoder) > len(decoder) // 2

    rows = read_curve(tmp_path / "flow" / "learning_curve.csv")
    assert [(int(r["step"]), r["phase"]) for r in rows] == [(2, "pretrain"), (4, "pretrain"), (6, "flow"), (8, "flow")]
    assert all(float(r["loss_epe"]) > 0 and r["loss_class"] == "" for r in rows[:2])
    assert all(float(r["loss_class"]) > 0 and float(r["loss_dice"]) > 0 and r["loss_epe"] == "" for r in rows[2:])
    assert 0.0 <= float(rows[-1]["val_miou"]) <= 1.0


def test_pixel_flow_pretraining_lowers_epe(toy, tmp_path):
    """EPE pre-training on the toy flow (boxes moving 2-3 px/frame): the finest-level EPE of the
    last steps is below that of the first ones."""
    from mpvss_ros.training.curve import read_curve
    from mpvss_ros.training.train_flow import train_flow

    root, seg = toy
    train_flow(_opts(root, seg, tmp_path / "pre", pretrain_steps=30, steps=0, val_split=None, log_every=5,
                     checkpoint_every=30, lr=3e-3, pretrain_lr=3e-3, crop=(64, 128), batch_size=4))
    epe = [float(r["loss_epe"]) for r in read_curve(tmp_path / "pre" / "learning_curve.csv")]
    assert len(epe) == 6
    assert epe[-1] < 0.8 * epe[0], epe


def test_ddp_world_size_one(toy, tmp_path, monkeypatch):
    """The torchrun path: WORLD_SIZE set -> gloo process group, DDP-wrapped objective, rank-0 writes."""
    import torch.distributed as dist

    from mpvss_ros.training.train_flow import train_flow

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    root, seg = toy
    result = train_flow(_opts(root, seg, tmp_path / "ddp", pretrain_steps=2, steps=2, log_every=1, val_every=4))
    assert not dist.is_initialized()  # the group we created was torn down
    assert result["step"] == 4 and result["loss"] > 0
    assert (tmp_path / "ddp" / "train_state" / "optimizer.pt").is_file()
    state = (tmp_path / "ddp" / "train_state" / "state.json").read_text()
    assert '"world_size": 1' in state


def test_flow_needs_a_segmentor(toy, tmp_path):
    from mpvss_ros.training.train_flow import train_flow

    root, _ = toy
    with pytest.raises(ValueError, match="--segmentor is required"):
        train_flow(_opts(root, None, tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        train_flow(_opts(root, tmp_path, tmp_path / "bad"))


def test_flow_init_starts_the_flow_module_from_another_run(toy, tmp_path):
    """--flow-init: the segmentor (body and heads) comes from --segmentor, the query-flow module
    from the other checkpoint; a checkpoint with another flow configuration is refused."""
    from mpvss_ros.model.mpvss import MPVSS
    from mpvss_ros.training.train_flow import init_query_flow, load_segmentor_source, train_flow

    root, seg = toy
    train_flow(_opts(root, seg, tmp_path / "first", pretrain_steps=2, steps=2))
    first = load_file(str(tmp_path / "first" / "model.safetensors"))
    model = load_segmentor_source(str(seg), (64, 128))
    init_query_flow(model, str(tmp_path / "first"))
    started = model.state_dict()
    segmentor = load_file(str(seg / "model.safetensors"))
    flow_keys = [k for k in first if k.startswith("query_flow.")]
    assert flow_keys and all(torch.equal(started[k], first[k]) for k in flow_keys)
    assert any(not torch.equal(segmentor[k], first[k]) for k in flow_keys)  # the flow run did move them
    assert all(torch.equal(started[k], segmentor[k]) for k in segmentor if k.startswith("segmentor."))
    # the command path: a run with --flow-init and no pre-training trains on from those weights
    result = train_flow(_opts(root, seg, tmp_path / "second", flow_init=str(tmp_path / "first"),
                              pretrain_steps=0, steps=2))
    assert result["step"] == 2 and result["phase"] == "flow"
    other = MPVSS(dataclasses.replace(small_config((64, 128)), flow=dataclasses.replace(
        small_config().flow, hidden_dim=small_config().flow.hidden_dim * 2)))
    other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="query-flow configuration differs"):
        init_query_flow(load_segmentor_source(str(seg), (64, 128)), str(tmp_path / "other"))


def test_ground_truth_on_one_frame_per_sequence_and_no_flow(toy, tmp_path):
    """Real Cityscapes layout: pre-training without flow files is refused naming the way out,
    and the mask-loss phase trains on the labelled frames with their earlier frames as keys."""
    from mpvss_ros.training.train_flow import train_flow

    _, seg = toy
    for split, seed in (("train", 0), ("val", 1)):
        make_toy_sequences(tmp_path / "cs", split, sequences=2, frames=6, seed=seed)
        label_only_frame(tmp_path / "cs", split, 4)
    with pytest.raises(ValueError, match="no ground-truth flow .* pass --pretrain-steps 0"):
        train_flow(_opts(tmp_path / "cs", seg, tmp_path / "pre"))
    result = train_flow(_opts(tmp_path / "cs", seg, tmp_path / "flow", pretrain_steps=0, steps=2))
    assert result["step"] == 2 and result["phase"] == "flow" and result["val_miou"] >= 0
