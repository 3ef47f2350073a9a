"""Score saved predictions with cityscapesScripts' own evaluator, the reference `mpvss evaluate`
is checked against.

    python -m mpvss_ros.evaluation.cityscapes_reference --data DIR --split val --predictions PRED_DIR/query-flow_k5

`mpvss evaluate --save-predictions PRED_DIR` writes one folder per method and interval; point
`--predictions` at one of them (the evaluator refuses a folder holding two predictions for a
frame). Every `gtFine/<split>/*/*_gtFine_labelIds.png` needs a prediction, as in the official
evaluation.

Instance-level scoring is switched off, as the class IoU that `mpvss evaluate` reports does not
use it: it needs `_gtFine_instanceIds.png` files, which generated data does not have, and
cityscapesScripts 2.3 calls `np.in1d` there, which NumPy 2.4 removed. Its command-line tool
(`csEvalPixelLevelSemanticLabeling`) has it on and so fails in this environment.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path


def reference_scores(data, split: str, predictions) -> dict:
    """-> {"miou", "per_class_iou", "frames"} from `evalPixelLevelSemanticLabeling.evaluateImgLists`.

    mIoU is cityscapesScripts' `averageScoreClasses` (the mean over classes whose IoU is defined,
    the same rule as `ConfusionMatrix.miou`)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    data, predictions = Path(data), Path(predictions)
    if not predictions.is_dir():
        raise FileNotFoundError(f"no predictions folder {predictions}")
    search = str(data / "gtFine" / split / "*" / "*_gtFine_labelIds.png")
    gt_files = sorted(glob.glob(search))
    if not gt_files:
        raise FileNotFoundError(f"no ground truth matches {search}")
    args = cs_eval.args  # the module's settings object, as its own main() uses it
    for name, value in {"predictionPath": str(predictions), "predictionWalk": None, "evalInstLevelScore": False,
                        "JSONOutput": False, "quiet": True, "cityscapesPath": str(data),
                        "groundTruthSearch": search}.items():
        setattr(args, name, value)
    try:
        found = [cs_eval.getPrediction(args, g) for g in gt_files]
        result = cs_eval.evaluateImgLists(found, gt_files, args)
    except SystemExit:  # its printError exits after printing the reason
        raise ValueError("cityscapesScripts' evaluator stopped (its reason is printed above)") from None
    nan = result["averageScoreClasses"] != result["averageScoreClasses"]
    per_class = {k: (None if v != v else float(v)) for k, v in result["classScores"].items()}
    return {"miou": None if nan else float(result["averageScoreClasses"]), "per_class_iou": per_class,
            "frames": len(gt_files)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset root (Cityscapes layout)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--predictions", required=True, help="one <method>_k<interval> folder of saved predictions")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("CITYSCAPES_DATASET", args.data)
    try:
        scores = reference_scores(args.data, args.split, args.predictions)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"cityscapes_reference: error: {exc}\n")
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=2) + "\n")
    miou = "n/a" if scores["miou"] is None else f"{scores['miou']:.4f}"
    print(f"cityscapesScripts mIoU {miou} over {scores['frames']} annotated frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
