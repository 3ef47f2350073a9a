"""`train segmentor`: the loss falls on a tiny fixed batch, a stopped and resumed run equals an
uninterrupted one, the learning curve has its columns, the command validates its input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mpvss_ros.model.config import small_config
from test_train_data import make_toy_sequences


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyseg")
    make_toy_sequences(root, "train", sequences=2, frames=4)
    make_toy_sequences(root, "val", sequences=1, frames=4, seed=1)
    return root


def _opts(root, out, **kw):
    from mpvss_ros.training.train_segmentor import SegmentorOptions

    base = dict(data=str(root), out=str(out), batch_size=2, crop=(32, 64), threads=2, warmup=2, lr=1e-3,
                log_every=2, val_every=6, checkpoint_every=3, val_frames=2, progress=False, num_points=256,
                model_config=small_config())
    base.update(kw)
    return SegmentorOptions(**base)


def test_loss_falls_when_overfitting_one_batch(toy_root):
    """30 AdamW steps on one fixed batch: the Hungarian loss must drop well below its start."""
    from mpvss_ros.model.mpvss import MPVSS
    from mpvss_ros.training.batches import SegmentorBatches
    from mpvss_ros.training.frame_cache import load_split
    from mpvss_ros.training.loop import make_optimizer
    from mpvss_ros.training.objectives import SegmentorObjective, set_loss_points

    torch.manual_seed(0)
    torch.set_num_threads(2)
    cache = load_split(toy_root, "train")
    batch = SegmentorBatches(cache, 4, seed=0, start_step=0, end_step=1, crop=(64, 128), flip=False)[0]
    batch["image"] = batch["image"].float()
    model = MPVSS(dataclasses.replace(small_config(), image_size=(64, 128)))
    set_loss_points(model.segmentor, 512)
    objective = SegmentorObjective(model).train()
    opt = make_optimizer(list(model.segmentor.parameters()), 1e-3, 0.0)
    losses = []
    for step in range(30):
        torch.manual_seed(step)
        loss, terms = objective(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(terms) == {"loss_class", "loss_mask", "loss_dice"}
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.6 * first, losses


def test_resume_equals_uninterrupted_run(toy_root, tmp_path):
    from mpvss_ros.training.curve import COLUMNS, read_curve
    from mpvss_ros.training.train_segmentor import train_segmentor

    full = train_segmentor(_opts(toy_root, tmp_path / "full", steps=6))
    # the same run, stopped after step 3 (a checkpoint), then continued by re-running the command
    train_segmentor(_opts(toy_root, tmp_path / "split", steps=3))
    resumed = train_segmentor(_opts(toy_root, tmp_path / "split", steps=6))
    assert resumed["step"] == 6 and full["step"] == 6
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "full" / "model.safetensors"))
    wb = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4), k
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-4)
    # the weights did move: not a vacuous comparison
    from mpvss_ros.model.mpvss import MPVSS

    torch.manual_seed(0)
    w0 = MPVSS(dataclasses.replace(small_config(), image_size=(64, 128))).state_dict()
    moved = [k for k in wa if k in w0 and w0[k].shape == wa[k].shape and not torch.equal(w0[k], wa[k])]
    assert len(moved) > 50
    rows = read_curve(tmp_path / "split" / "learning_curve.csv")
    assert list(rows[0].keys()) == COLUMNS
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]  # log rows + the stop at 3 (end of that call)
    assert rows[-1]["val_miou"] != "" and 0.0 <= float(rows[-1]["val_miou"]) <= 1.0
    assert all(float(r["loss"]) > 0 and r["loss_epe"] == "" for r in rows)
    # a finished run re-run with the same steps does nothing
    assert train_segmentor(_opts(toy_root, tmp_path / "split", steps=6)) == {}


def test_keep_checkpoints_keeps_each_periodic_model(toy_root, tmp_path):
    """--keep-checkpoints: every periodic save stays under checkpoints/stepNNNNNN/ as an exportable
    model; without it only the latest is kept."""
    from safetensors.torch import load_file

    from mpvss_ros.cli import build_parser
    from mpvss_ros.commands.train import _common_values
    from mpvss_ros.model.mpvss import MPVSS
    from mpvss_ros.training.train_segmentor import train_segmentor

    args = build_parser().parse_args(["train", "segmentor", "--data", str(toy_root), "--out", "o", "--keep-checkpoints"])
    assert _common_values(args)["keep_checkpoints"] is True
    train_segmentor(_opts(toy_root, tmp_path / "kept", steps=6, keep_checkpoints=True))
    kept = tmp_path / "kept" / "checkpoints"
    assert sorted(p.name for p in kept.iterdir()) == ["step000003", "step000006"]
    w3, w6 = (load_file(str(kept / s / "model.safetensors")) for s in ("step000003", "step000006"))
    latest = load_file(str(tmp_path / "kept" / "model.safetensors"))
    assert all(torch.equal(w6[k], latest[k]) for k in latest)
    assert any(not torch.equal(w3[k], w6[k]) for k in w3)  # step 3 is its own model, not a copy
    assert isinstance(MPVSS.load(kept / "step000003"), MPVSS)
    train_segmentor(_opts(toy_root, tmp_path / "plain", steps=3))
    assert not (tmp_path / "plain" / "checkpoints").exists()


def test_trainer_quiesces_opencv_only_before_worker_processes(toy_root, tmp_path, monkeypatch):
    from mpvss_ros.training import loop
    from mpvss_ros.training.train_segmentor import train_segmentor

    calls, real = [], loop.quiesce_cv2_before_fork
    monkeypatch.setattr(loop, "quiesce_cv2_before_fork", lambda: (calls.append(1), real()))
    assert train_segmentor(_opts(toy_root, tmp_path / "workers", steps=1, workers=1))["step"] == 1
    assert calls == [1]
    train_segmentor(_opts(toy_root, tmp_path / "main", steps=1))
    assert calls == [1]  # no workers, no fork: OpenCV keeps its threads


def test_resume_refuses_different_seed(toy_root, tmp_path):
    from mpvss_ros.training.train_segmentor import train_segmentor

    train_segmentor(_opts(toy_root, tmp_path / "run", steps=1))
    with pytest.raises(ValueError, match="seed"):
        train_segmentor(_opts(toy_root, tmp_path / "run", steps=2, seed=5))


def test_command_line_errors(toy_root, tmp_path, capsys):
    from mpvss_ros.cli import main

    assert main(["train", "segmentor", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["train", "segmentor", "--data", str(toy_root), "--out", str(tmp_path / "o"), "--crop", "40x64"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["train", "segmentor", "--data", str(toy_root), "--out", str(tmp_path / "o"), "--amp"]) == 2
    assert "cuda only" in capsys.readouterr().err


def test_init_starts_from_a_checkpoint(toy_root, tmp_path):
    """--init: the run starts from the checkpoint's weights (not a fresh init), with a new
    optimizer and schedule, and records where it started."""
    import json

    from safetensors.torch import load_file

    from mpvss_ros.training.train_segmentor import train_segmentor

    train_segmentor(_opts(toy_root, tmp_path / "first", steps=3))
    # a learning rate too small to move anything: the result must equal the starting checkpoint
    out = train_segmentor(_opts(toy_root, tmp_path / "cont", steps=2, lr=1e-12, warmup=0, model_config=None,
                                init=str(tmp_path / "first")))
    assert out["step"] == 2
    start = load_file(str(tmp_path / "first" / "model.safetensors"))
    cont = load_file(str(tmp_path / "cont" / "model.safetensors"))
    assert start.keys() == cont.keys()
    for k in start:
        assert torch.allclose(start[k], cont[k], atol=1e-6), k
    state = json.loads((tmp_path / "cont" / "train_state" / "state.json").read_text())
    assert state["step"] == 2 and state["options"]["init"] == str(tmp_path / "first")
    # the small test configuration came from the checkpoint, not the (larger) default
    cfg = json.loads((tmp_path / "cont" / "config.json").read_text())
    assert cfg["segmentor"] == json.loads((tmp_path / "first" / "config.json").read_text())["segmentor"]


def test_init_refuses_a_second_configuration(toy_root, tmp_path):
    from mpvss_ros.training.train_segmentor import train_segmentor

    train_segmentor(_opts(toy_root, tmp_path / "first", steps=1))
    with pytest.raises(ValueError, match="--init and --model-config"):
        train_segmentor(_opts(toy_root, tmp_path / "cont", steps=1, init=str(tmp_path / "first")))
    with pytest.raises(FileNotFoundError, match="not an MPVSS checkpoint"):
        train_segmentor(_opts(toy_root, tmp_path / "cont", steps=1, model_config=None,
                              init=str(tmp_path / "missing")))
    # a run started from --init resumes only with the same --init
    train_segmentor(_opts(toy_root, tmp_path / "cont", steps=1, model_config=None, init=str(tmp_path / "first")))
    with pytest.raises(ValueError, match="init"):
        train_segmentor(_opts(toy_root, tmp_path / "cont", steps=2))


def test_resume_guards_and_a_finished_run_repairs_its_top_level_model(toy_root, tmp_path):
    from mpvss_ros.model.mpvss import MPVSS
    from mpvss_ros.training.train_segmentor import train_segmentor

    run = tmp_path / "run"
    train_segmentor(_opts(toy_root, run, steps=3))
    # weight decay lives in the restored optimizer state: a new value would be silently ignored
    with pytest.raises(ValueError, match="weight_decay"):
        train_segmentor(_opts(toy_root, run, steps=4, weight_decay=5.0))
    other_config = small_config()
    other_config.segmentor = dataclasses.replace(other_config.segmentor, num_queries=4)
    with pytest.raises(ValueError, match=r"model_config\.segmentor\.num_queries=8, this call asks "
                                         r"model_config\.segmentor\.num_queries=4"):
        train_segmentor(_opts(toy_root, run, steps=4, model_config=other_config))
    # a kill while the top-level copy was written: the re-run of the finished run repairs it
    good = (run / "train_state" / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(good[: len(good) // 2])
    assert train_segmentor(_opts(toy_root, run, steps=3)) == {}  # already trained
    assert (run / "model.safetensors").read_bytes() == good
    MPVSS.load(run)
    # a folder holding a model but no training state is never trained over
    other = tmp_path / "model_only"
    MPVSS.load(run).save(other)
    before = (other / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="holds config.json but no training state"):
        train_segmentor(_opts(toy_root, other, steps=2))
    assert (other / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("change, message", [(dict(lr=float("inf")), "--lr must be a positive number"),
                                             (dict(lr=float("nan")), "--lr must be a positive number"),
                                             (dict(warmup=-5), "--warmup must be >= 0")])
def test_bad_schedule_values_are_refused(toy_root, tmp_path, change, message):
    from mpvss_ros.training.train_segmentor import train_segmentor

    with pytest.raises(ValueError, match=message):
        train_segmentor(_opts(toy_root, tmp_path / "o", steps=2, **change))


def test_truncated_weights_are_a_one_line_error(toy_root, tmp_path, capsys):
    from mpvss_ros.cli import main
    from mpvss_ros.training.train_segmentor import train_segmentor

    train_segmentor(_opts(toy_root, tmp_path / "run", steps=1))
    data = (tmp_path / "run" / "model.safetensors").read_bytes()
    (tmp_path / "run" / "model.safetensors").write_bytes(data[:100])
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "cannot load it into this checkpoint's model" in err and "Traceback" not in err


def test_init_takes_a_transformers_mask2former_directory(toy_root, tmp_path):
    """--init DIR with a user's transformers Mask2Former: the run fine-tunes those weights (not a
    fresh init), and the result is a self-contained MPVSS checkpoint."""
    from mpvss_ros.model.config import tiny_segmentor_config
    from mpvss_ros.model.mpvss import MPVSS
    from mpvss_ros.model.segmentor import KeyFrameSegmentor
    from mpvss_ros.training.train_segmentor import train_segmentor

    torch.manual_seed(1)
    hf = KeyFrameSegmentor.from_config(tiny_segmentor_config(small_config((64, 128)).segmentor))
    hf.save_pretrained(tmp_path / "hf")
    out = train_segmentor(_opts(toy_root, tmp_path / "tuned", steps=2, lr=1e-12, warmup=0, model_config=None,
                                init=str(tmp_path / "hf")))
    assert out["step"] == 2
    (tmp_path / "hf" / "model.safetensors").unlink()  # the checkpoint must not need the source directory
    tuned = MPVSS.load(tmp_path / "tuned")
    x = torch.rand(1, 3, 64, 128) * 255
    with torch.no_grad():
        a, b = hf.eval()(x / 255), tuned.segmentor(x / 255)
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-4)


def test_cache_dir_trains_the_same_model(toy_root, tmp_path):
    """--cache-dir: the frames come from memory-mapped files; the run is the same as in memory."""
    from safetensors.torch import load_file

    from mpvss_ros.training.train_segmentor import train_segmentor

    train_segmentor(_opts(toy_root, tmp_path / "held", steps=2))
    train_segmentor(_opts(toy_root, tmp_path / "mapped", steps=2, cache_dir=str(tmp_path / "cache")))
    assert (tmp_path / "cache").is_dir() and not any((tmp_path / "cache").iterdir())  # unlinked once mapped
    a = load_file(str(tmp_path / "held" / "model.safetensors"))
    b = load_file(str(tmp_path / "mapped" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
