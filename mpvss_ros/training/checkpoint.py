"""Resumable training state in a checkpoint directory.

    CKPT_DIR/config.json, model.safetensors   the latest model (an MPVSS checkpoint: export reads it)
    CKPT_DIR/checkpoints/stepNNNNNN/          with --keep-checkpoints: the model at each periodic save
                                              (config.json + model.safetensors, also exportable)
    CKPT_DIR/train_state/                     what resuming needs
        config.json, model.safetensors        the same model, consistent with the rest of this folder
        optimizer.pt                          optimizer state + torch RNG states (torch.save; loaded
                                              with torch.load(weights_only=True): no unpickling)
        state.json                            step, phase, seed, options, numpy/python RNG states

`train_state/` is written to a temporary folder and swapped in with renames, so a run killed
while saving leaves the previous state (or `train_state.old/`) usable.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from mpvss_ros.model.mpvss import CONFIG_NAME, WEIGHTS_NAME

STATE_DIR = "train_state"
_OLD = "train_state.old"
_TMP = "train_state.tmp"


def rng_state() -> tuple[dict, dict]:
    """(tensors for torch.save, JSON-able states of python and numpy's global RNGs)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    py = random.getstate()
    np_state = np.random.get_state()
    plain = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, plain


def set_rng_state(tensors: dict, plain: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        states = tensors["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "python" in plain:
        v, internal, gauss = plain["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in plain:
        name, keys, pos, has_gauss, cached = plain["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


KEPT_DIR = "checkpoints"


def kept_checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / KEPT_DIR / f"step{int(step):06d}"


def save_state(out_dir: str | Path, model, optimizer: torch.optim.Optimizer, step: int, phase: str,
               info: dict, keep: bool = False) -> Path:
    """Write the model (twice: top level for export, train_state/ for resuming) and the state;
    `keep`: also the model alone under checkpoints/stepNNNNNN/, never overwritten by later saves."""
    out = Path(out_dir)
    tmp, final, old = out / _TMP, out / STATE_DIR, out / _OLD
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save(tmp)
    tensors, plain = rng_state()
    torch.save({"optimizer": optimizer.state_dict(), "rng": tensors}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": int(step), "phase": phase, "rng": plain, **info}, indent=1))
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    sync_top_level(out)  # config.json + model.safetensors at the top: what export and `--segmentor` read
    if keep:  # val mIoU moves between neighbouring checkpoints: keep them to choose among later
        kept = kept_checkpoint_dir(out, step)
        kept.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME):  # the files just written, not a third serialisation
            shutil.copyfile(out / name, kept / name)
    return final


def sync_top_level(out_dir: str | Path) -> None:
    """Copy train_state/'s model to the top level, each file replaced atomically: a run killed
    here leaves the old file or the new one, never a half-written one (and a re-run of a finished
    run repeats the copy)."""
    out = Path(out_dir)
    state = find_state(out)
    if state is None:
        return
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        tmp = out / (name + ".tmp")
        shutil.copyfile(state / name, tmp)
        os.replace(tmp, out / name)


def find_state(out_dir: str | Path) -> Path | None:
    out = Path(out_dir)
    for name in (STATE_DIR, _OLD):
        if (out / name / "state.json").is_file():
            return out / name
    return None


def read_state_info(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


def load_state(state_dir: Path, map_location) -> tuple[object, dict, dict]:
    """-> (the MPVSS model, state.json's content, the optimizer state to hand to `restore_optimizer`).

    RNG states are restored too, although training draws its randomness from (seed, step) and
    does not depend on them."""
    from mpvss_ros.model.mpvss import MPVSS

    model = MPVSS.load(state_dir, map_location=str(map_location))
    info = read_state_info(state_dir)
    blob = torch.load(state_dir / "optimizer.pt", map_location=map_location, weights_only=True)
    rng = {k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v]) for k, v in blob.get("rng", {}).items()}
    if rng:
        set_rng_state(rng, info.get("rng", {}))
    return model, info, blob["optimizer"]
