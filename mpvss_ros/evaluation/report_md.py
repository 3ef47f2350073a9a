"""Markdown summary of an evaluation report (the dict written as report.json).

Works for `mpvss evaluate` reports (a table of methods and intervals) and for
`mpvss bag evaluate` reports, which add latency, dropped frames, key fraction and stability;
without ground truth the accuracy columns read "n/a".
"""
from __future__ import annotations

import os
from pathlib import Path


def _fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if percent else f"{value:.{digits}f}"
    return str(value)


def _results_table(results: list[dict]) -> list[str]:
    lines = ["| method | interval | mIoU % | fwIoU % | VC8 % | VC16 % | ms/frame | GFLOPs/frame |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.get('method')} | {_fmt(r.get('interval'))} | {_fmt(r.get('miou'), percent=True)} | "
            f"{_fmt(r.get('fwiou'), percent=True)} | {_fmt(r.get('vc8'), percent=True)} | "
            f"{_fmt(r.get('vc16'), percent=True)} | {_fmt(r.get('ms_per_frame'), 1)} | "
            f"{_fmt(r.get('gflops_per_frame'), 2)} |")
    return lines


def _per_class_table(results: list[dict]) -> list[str]:
    with_classes = [r for r in results if r.get("per_class_iou")]
    if not with_classes:
        return []
    names = list(with_classes[0]["per_class_iou"])
    header = "| class | " + " | ".join(f"{r['method']} k={r.get('interval')}" for r in with_classes) + " |"
    lines = ["", "## IoU per class (%)", "", header, "|---|" + "---|" * len(with_classes)]
    for name in names:
        cells = " | ".join(_fmt(r["per_class_iou"].get(name), percent=True) for r in with_classes)
        lines.append(f"| {name} | {cells} |")
    return lines


def _replay_section(report: dict) -> list[str]:
    if "latency_ms" not in report:
        return []
    lat = report.get("latency_ms") or {}
    stab = report.get("stability") or {}
    replay = report.get("replay") or {}
    rows = [
        ("frames sent", report.get("frames")),
        ("frames answered", report.get("answered")),
        ("dropped (no output)", report.get("dropped")),
        ("flow-control timeouts", report.get("timeouts")),
        ("key-frame fraction", _fmt(report.get("key_fraction"), 3)),
        ("latency p50 / p95 / p99 (ms)",
         f"{_fmt(lat.get('p50'), 1)} / {_fmt(lat.get('p95'), 1)} / {_fmt(lat.get('p99'), 1)}"),
        ("node inference p50 (ms)", _fmt((report.get("inference_ms") or {}).get("p50"), 1)),
        ("throughput (frames/s)", _fmt(replay.get("fps"), 1)),
        ("pixels changing label between frames", _fmt(stab.get("changed_pixel_fraction"), 4)),
        ("ground-truth frames", report.get("ground_truth_frames")),
        ("ground-truth frames without prediction", report.get("ground_truth_frames_without_prediction")),
        ("pacing", replay.get("pacing")),
    ]
    lines = ["", "## Replay through the node", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows if v is not None]
    return lines


def render(report: dict, images: dict[str, str | Path] | None = None, base: str | Path | None = None,
           title: str = "MPVSS evaluation") -> str:
    """Markdown text; ``images`` (caption -> PNG path) are linked relative to ``base``."""
    lines = [f"# {title}", ""]
    data = report.get("data")
    if isinstance(data, dict):  # bag evaluate: {"bag", ...}; evaluate: {"root", "split", ...}
        data = data.get("bag") or " ".join(str(data.get(k)) for k in ("root", "split") if data.get(k))
    lines.append(f"- data: `{data}`")
    model = report.get("model")
    if isinstance(model, dict):
        model = model.get("path") or model.get("name") or model
    lines.append(f"- model: `{model}`")
    if report.get("ground_truth_frames") == 0:
        lines.append("- no ground truth in the data: speed, latency, key fraction and stability only")
    lines += ["", "## Results", ""] + _results_table(report.get("results", []))
    lines += _replay_section(report)
    lines += _per_class_table(report.get("results", []))
    if images:
        lines += ["", "## Figures", ""]
        for caption, path in images.items():
            rel = os.path.relpath(path, base) if base is not None else str(path)
            lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(report: dict, path, images: dict[str, str | Path] | None = None,
                   title: str = "MPVSS evaluation") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report, images, base=path.parent, title=title))
    return path
