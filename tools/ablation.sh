#!/usr/bin/env bash
# The ablation of docs/RESULTS.md in one command (the paper's Table 3a / Fig. 3c on our data):
# per-frame, copy, optical flow (DIS) and query flow at k = 1, 2, 5, 10 on a held-out generated
# split (seed 9000, 50 drives, never used in training), then the ORT CPU timing of both graphs.
#   tools/ablation.sh [MODEL_DIR]      (default models/default)
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/bootstrap"
source "$ROOT/tools/env.sh"
cd "$ROOT"
MODEL="${1:-models/default}"
WORK="${WORK:-runs/ablation}"
mpvss() { python -m mpvss_ros.cli "$@"; }
# 50 drives: with the first 10 alone (the split until the flow13 release; sequence i depends only
# on (seed, i), so they are the same files) query flow and DIS could not be told apart
HELDOUT=(--split heldout --sequences 50 --frames 30 --size 256x512 --seed 9000)
if [ "$(cat "$WORK/data/.done" 2>/dev/null)" != "${HELDOUT[*]}" ]; then
  rm -rf "$WORK/data"
  mpvss make-sequences --out "$WORK/data" "${HELDOUT[@]}"
  echo "${HELDOUT[*]}" > "$WORK/data/.done"
fi
mpvss evaluate --data "$WORK/data" --split heldout --model "$MODEL" \
  --methods per-frame,copy,optical-flow,query-flow --intervals 1,2,5,10 --out "$WORK/report.json"
# the reference for what stride-4 masks cost: the ground truth through the mask grid (DATA.md)
mpvss evaluate --data "$WORK/data" --split heldout --model oracle-grid --methods per-frame --intervals 1 \
  --out "$WORK/oracle_grid.json"
# one intra-op thread: ORT CPU time per frame, the cost measure (the small non-key graph gains
# little from a second thread, so wall time at two threads understates the key/non-key ratio),
# pinned to one core where there are two or more, as in docs/BENCHMARKS.md (a process that
# migrates between cores pays for it in the short non-key frames most)
PIN=()
if command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then PIN=(taskset -c 1); fi
"${PIN[@]}" python -m mpvss_ros.cli bench --model "$MODEL" --out "$WORK/bench.json" --no-ros --repeats 30 --threads 1
python -m mpvss_ros.evaluation.results_doc "$WORK/report.json" --bench "$WORK/bench.json" \
  --out docs/RESULTS.md --plot docs/images/ablation_miou.png --command "tools/ablation.sh $MODEL" \
  --notes "${NOTES:-docs/notes/results_notes.md}"
