"""docs/RESULTS.md rendering: the targets table states the right verdicts from the numbers."""
import json

from mpvss_ros.evaluation.results_doc import main, targets


def _report(pf, q5, o5, c5, q10, o10, c10):
    rows = [("per-frame", 1, pf), ("query-flow", 5, q5), ("optical-flow", 5, o5), ("copy", 5, c5),
            ("query-flow", 10, q10), ("optical-flow", 10, o10), ("copy", 10, c10)]
    return {"results": [{"method": m, "interval": k, "miou": v, "fwiou": v, "vc8": 0.9, "vc16": 0.8,
                         "ms_per_frame": 10.0, "gflops_per_frame": 1.0, "per_class_iou": {"road": v}}
                        for m, k, v in rows],
            "model": {"gflops": {"key": 7.0, "nonkey": 1.0}, "input_size": [256, 512]},
            "data": {"split": "heldout", "root": "x", "sequences": 1, "frames": 30, "annotated_frames": 30}}


def test_targets_met_and_missed():
    ok = dict((t, met) for t, _, met in targets(_report(0.9, 0.89, 0.85, 0.8, 0.87, 0.84, 0.7),
                                                 {"key_ms": 60.0, "nonkey_ms": 12.0,
                                                  "key_graph_ms": 58.0, "nonkey_graph_ms": 9.0}))
    assert ok["per-frame mIoU ≥ 0.85"] and ok["query flow k=5 keeps ≥ 98% of per-frame mIoU"]
    assert ok["k=10: query flow ≥ optical flow + 1 mIoU point"] and ok["non-key ≤ 1/6 of key in GFLOPs"]
    assert ok["non-key ≤ 1/6 of key in ORT CPU time (the graphs as the runner runs them)"] is True  # 6.4x
    assert ok["non-key ≤ 1/6 of key per frame end to end (graphs + host pre/post-processing)"] is False  # 5x
    bad = dict((t, met) for t, _, met in targets(_report(0.8, 0.7, 0.75, 0.6, 0.6, 0.65, 0.5), None))
    assert not bad["per-frame mIoU ≥ 0.85"] and not bad["k=5: query flow > optical flow > copy"]
    assert not bad["query flow k=5 keeps ≥ 98% of per-frame mIoU"]


def test_render_writes_markdown_and_plot(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(_report(0.9, 0.89, 0.85, 0.8, 0.87, 0.84, 0.7)))
    out, plot = tmp_path / "RESULTS.md", tmp_path / "img" / "plot.png"
    assert main([str(report), "--out", str(out), "--plot", str(plot), "--command", "tools/ablation.sh"]) == 0
    text = out.read_text()
    assert "](img/plot.png)" in text and "| query-flow | 5 | 0.8900 |" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_intervals_and_paired_comparisons_are_rendered(tmp_path):
    data = _report(0.9, 0.70, 0.71, 0.5, 0.6, 0.61, 0.4)
    for r in data["results"]:
        r["miou_ci95"] = [r["miou"] - 0.02, r["miou"] + 0.01]
    data["comparisons"] = [
        {"a": "query-flow", "b": "optical-flow", "interval": 5, "miou_diff": -0.0098, "ci95": [-0.0204, 0.0006],
         "drives_higher": 2, "drives_lower": 8, "drives": 10},
        {"a": "query-flow", "b": "optical-flow", "interval": 1, "miou_diff": 0.0, "ci95": [0.0, 0.0],
         "drives_higher": 0, "drives_lower": 0, "drives": 10}]
    report = tmp_path / "report.json"
    report.write_text(json.dumps(data))
    out = tmp_path / "RESULTS.md"
    assert main([str(report), "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    text = out.read_text()
    assert "| query-flow | 5 | 0.7000 | [0.680, 0.710] |" in text
    assert "| query-flow − optical-flow | 5 | -0.98 | [-2.04, +0.06] | 2 / 8 of 10 |" in text
    assert "| query-flow − optical-flow | 1 |" not in text  # k=1 compares a method with itself
    assert "0.7000 / 0.7100 / 0.5000 (query − optical -0.98 points, 95 % [-2.04, +0.06]: the split cannot " \
           "tell the two apart)" in text


def test_a_target_met_only_by_the_point_estimate_says_so(tmp_path):
    data = _report(0.9, 0.72, 0.71, 0.5, 0.6, 0.61, 0.4)
    data["comparisons"] = [{"a": "query-flow", "b": "optical-flow", "interval": 5, "miou_diff": 0.01,
                            "ci95": [-0.01, 0.03], "drives_higher": 6, "drives_lower": 4, "drives": 10}]
    report = tmp_path / "report.json"
    report.write_text(json.dumps(data))
    out = tmp_path / "RESULTS.md"
    assert main([str(report), "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| k=5: query flow >"))
    assert row.endswith("| yes by the point estimate; not resolved by this split |")
