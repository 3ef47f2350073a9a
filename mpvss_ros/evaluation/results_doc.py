"""Render an `mpvss evaluate` report (and optionally a bench.json) as docs/RESULTS.md + a plot.

    python -m mpvss_ros.evaluation.results_doc report.json --out docs/RESULTS.md \
        --plot docs/images/ablation_miou.png [--bench bench.json] [--notes notes.md] [--command "..."]

The targets table states each goal of the ablation with the measured numbers and whether it is
met, so a reader never has to trust a summary sentence.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METHOD_ORDER = ("per-frame", "copy", "optical-flow", "query-flow")
UNRESOLVED = "the split cannot tell the two apart"


def _fmt(v, digits=3):
    return "—" if v is None else f"{v:.{digits}f}"


def _index(report: dict) -> dict:
    return {(r["method"], r["interval"]): r for r in report["results"]}


def _interval(ci, scale=1.0, digits=3, sign=""):
    return "—" if not ci else f"[{scale * ci[0]:{sign}.{digits}f}, {scale * ci[1]:{sign}.{digits}f}]"


def _comparison(report: dict, a: str, b: str, k: int) -> dict | None:
    for c in report.get("comparisons") or []:
        if (c["a"], c["b"], c["interval"]) == (a, b, k):
            return c
    return None


def _verdict(ok: bool, measured: str) -> str:
    if ok and UNRESOLVED in measured:
        return "yes by the point estimate; not resolved by this split"
    return "yes" if ok else "no"


def comparison_rows(report: dict) -> list[str]:
    """Markdown table of the paired comparisons (mIoU points, 95 % interval, drives)."""
    rows = [c for c in report.get("comparisons") or [] if c["interval"] > 1]
    if not rows:
        return []
    lines = ["| comparison | k | difference (mIoU points) | 95 % interval | drives where it is higher / lower |",
             "|---|---|---|---|---|"]
    for c in sorted(rows, key=lambda c: (c["a"], c["interval"])):
        lines.append(f"| {c['a']} − {c['b']} | {c['interval']} | {100 * c['miou_diff']:+.2f} | "
                     f"{_interval(c['ci95'], 100, 2, '+')} | {c['drives_higher']} / {c['drives_lower']} "
                     f"of {c['drives']} |")
    return lines


def plot_miou(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = _index(report)
    intervals = sorted({k for (_, k) in idx})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method in METHOD_ORDER:
        if method == "per-frame":
            if ("per-frame", 1) in idx:
                ax.axhline(100 * idx[("per-frame", 1)]["miou"], color="k", ls="--", label="per-frame")
            continue
        pts = [(k, idx[(method, k)]["miou"]) for k in intervals if (method, k) in idx]
        if pts:
            ax.plot([k for k, _ in pts], [100 * m for _, m in pts], marker="o", label=method)
    ax.set_xlabel("key-frame interval k")
    ax.set_ylabel("mIoU (%)")
    ax.set_xticks(intervals)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("mIoU vs key-frame interval (held-out split)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def targets(report: dict, bench: dict | None) -> list[tuple[str, str, bool | None]]:
    idx = _index(report)
    rows = []
    pf = idx.get(("per-frame", 1), {}).get("miou")
    if pf is not None:
        rows.append(("per-frame mIoU ≥ 0.85", f"{pf:.4f}", pf >= 0.85))

    def m(method, k):
        return idx.get((method, k), {}).get("miou")

    qf5 = m("query-flow", 5)
    if pf and qf5 is not None:
        rows.append(("query flow k=5 keeps ≥ 98% of per-frame mIoU", f"{100 * qf5 / pf:.1f}%", qf5 >= 0.98 * pf))
    for k in (5, 10):
        q, o, c = m("query-flow", k), m("optical-flow", k), m("copy", k)
        if None not in (q, o, c):
            paired = _comparison(report, "query-flow", "optical-flow", k)
            detail = "" if paired is None else \
                f" (query − optical {100 * paired['miou_diff']:+.2f} points, 95 % {_interval(paired['ci95'], 100, 2, '+')}"
            if paired is not None and paired["ci95"] and paired["ci95"][0] < 0 < paired["ci95"][1]:
                detail += ": " + UNRESOLVED
            detail += ")" if paired is not None else ""
            rows.append((f"k={k}: query flow > optical flow > copy", f"{q:.4f} / {o:.4f} / {c:.4f}{detail}", q > o > c))
    q10, o10 = m("query-flow", 10), m("optical-flow", 10)
    if None not in (q10, o10):
        rows.append(("k=10: query flow ≥ optical flow + 1 mIoU point", f"{100 * (q10 - o10):+.2f} points",
                     q10 - o10 >= 0.01))
    g = (report.get("model") or {}).get("gflops") or {}
    if g.get("key") and g.get("nonkey"):
        rows.append(("non-key ≤ 1/6 of key in GFLOPs", f"{g['key'] / g['nonkey']:.2f}×", g["key"] / g["nonkey"] >= 6))
    if bench and bench.get("key_graph_ms") and bench.get("nonkey_graph_ms"):
        r = bench["key_graph_ms"] / bench["nonkey_graph_ms"]
        rows.append(("non-key ≤ 1/6 of key in ORT CPU time (the graphs as the runner runs them)", f"{r:.2f}× ({bench['key_graph_ms']:.1f} / "
                     f"{bench['nonkey_graph_ms']:.1f} ms)", r >= 6))
    if bench:
        r = bench["key_ms"] / bench["nonkey_ms"]
        rows.append(("non-key ≤ 1/6 of key per frame end to end (graphs + host pre/post-processing)",
                     f"{r:.2f}× ({bench['key_ms']:.1f} / {bench['nonkey_ms']:.1f} ms)", r >= 6))
    return rows


def render(report: dict, plot_rel: str, bench: dict | None = None, notes: str = "", command: str = "") -> str:
    idx = _index(report)
    data = report.get("data", {})
    model = report.get("model", {})
    lines = ["# Results", ""]
    if command:
        lines += ["Produced by one command:", "", "```bash", command, "```", ""]
    lines += [f"Data: split `{data.get('split')}` of `{data.get('root')}` — {data.get('sequences')} sequences, "
              f"{data.get('frames')} frames ({data.get('annotated_frames')} annotated), image size "
              f"{data.get('image_size')}. Model: `{model.get('path', model.get('name', ''))}`, input "
              f"{model.get('input_size')}, backend {model.get('backend')} {model.get('providers')}.", ""]
    lines += [f"![mIoU vs interval]({plot_rel})", "",
              "| method | k | mIoU | mIoU 95 % interval | fwIoU | VC8 | VC16 | ms/frame | GFLOPs/frame |",
              "|---|---|---|---|---|---|---|---|---|"]
    for method in METHOD_ORDER:
        for (m, k), r in sorted(idx.items(), key=lambda x: x[0][1]):
            if m == method:
                lines.append(f"| {m} | {k} | {_fmt(r['miou'], 4)} | {_interval(r.get('miou_ci95'))} | "
                             f"{_fmt(r['fwiou'], 4)} | {_fmt(r['vc8'])} | "
                             f"{_fmt(r['vc16'])} | {_fmt(r['ms_per_frame'], 1)} | {_fmt(r['gflops_per_frame'])} |")
    lines += ["", "GFLOPs are multiply-accumulates (the papers' \"FLOPs\") from model.json; the DIS optical-flow "
              "baseline's own cost is not counted in FLOPs (its ms/frame includes it).", ""]
    paired = comparison_rows(report)
    if paired:
        lines += ["## How sure these numbers are", "",
                  "Intervals: bootstrap over the split's drives (one `(city, seq)`: a generated sequence, or "
                  "a real Cityscapes drive with all its snippets; frames of one drive are not independent), "
                  "BCa, 2000 resamples; differences are paired, with both methods on the same resampled "
                  "drives (`evaluation/uncertainty.py`). They describe "
                  "these scenes only.", ""] + paired + [""]
    rows = targets(report, bench)
    if rows:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {v} | {_verdict(ok, v)} |" for t, v, ok in rows]
        lines.append("")
    pf = idx.get(("per-frame", 1))
    if pf:
        lines += ["## Per-class IoU, per-frame", "", "| class | IoU |", "|---|---|"]
        lines += [f"| {c} | {_fmt(v)} |" for c, v in pf["per_class_iou"].items() if v is not None]
        lines.append("")
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report")
    p.add_argument("--out", required=True)
    p.add_argument("--plot", required=True)
    p.add_argument("--bench")
    p.add_argument("--notes")
    p.add_argument("--command", default="")
    a = p.parse_args(argv)
    report = json.loads(Path(a.report).read_text())
    bench = json.loads(Path(a.bench).read_text()) if a.bench else None
    notes = Path(a.notes).read_text() if a.notes else ""
    out = Path(a.out)
    plot = plot_miou(report, Path(a.plot))
    try:
        rel = str(plot.resolve().relative_to(out.resolve().parent))
    except ValueError:
        rel = str(plot)
    out.write_text(render(report, rel, bench, notes, a.command))
    print(f"wrote {out} and {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
