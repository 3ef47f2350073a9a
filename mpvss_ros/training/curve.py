"""The learning curve: `learning_curve.csv` in the checkpoint directory, one row per logged step.

Columns are the same for every phase (empty where a term does not apply) so the curves of
`train segmentor` and `train flow` can be read by one script. On resume, rows past the resumed
step are dropped first: those steps are trained again.
"""
from __future__ import annotations

import csv
from pathlib import Path

FILENAME = "learning_curve.csv"
COLUMNS = ["step", "phase", "loss", "loss_class", "loss_mask", "loss_dice", "loss_epe", "lr", "val_miou",
           "seconds"]


class LearningCurve:
    def __init__(self, out_dir: str | Path, resume_step: int = 0, enabled: bool = True):
        self.path = Path(out_dir) / FILENAME
        self.enabled = enabled
        if not enabled:
            return
        rows = []
        if resume_step > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in COLUMNS})

    def write(self, step: int, phase: str, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, "phase": phase}
        for k in COLUMNS[2:]:
            v = values.get(k)
            row[k] = "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)


def read_curve(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
