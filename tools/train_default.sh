#!/usr/bin/env bash
# Regenerate the embedded default model end to end, by the stages the shipped model went through:
#   data (nine generated sets, fixed seeds) -> segmentor on 30 scenes, continued on 150, 500,
#   1500 and 2000 new scenes, then on whole frames -> query flow (EPE pre-training + warped-mask
#   loss), pre-trained further on 100 longer sequences and fine-tuned on each new segmentor, then
#   on whole frames, then on 400, 800 and 1200 new scenes -> ONNX graphs + model.json.
# Each stage starts from the previous one's checkpoint (a copy in its own directory, or --init /
# --flow-init), because the 30-scene segmentor overfits: more scenes, not more steps, moved it
# (models/README.md). Resumable: re-running continues where it stopped (finished data is kept,
# each training command resumes from its last checkpoint, a finished one returns at once).
#
#   tools/train_default.sh                        # the shipped recipe, ~10 hours on 2 CPU cores
#   STEPS_SCALE=0.1 RUN_DIR=runs/recipe_s01 MODEL_DIR=runs/recipe_s01/model tools/train_default.sh
#                                                 # about an hour once the data exists (a much weaker
#                                                 # model: held-out per-frame 0.419 against 0.789)
#   DEVICE=cuda BATCH=16 tools/train_default.sh   # on a GPU (bf16 autocast)
#   STEPS_SCALE=0.002 SEQ_SCALE=0.02 RUN_DIR=/tmp/smoke MODEL_DIR=/tmp/smoke/model tools/train_default.sh
#                                                 # a smoke run of every stage (about 20 minutes
#                                                 # on 2 CPU cores: val and a checkpoint every step)
# To continue from the shipped model instead of re-running every stage, rebuild its checkpoint
# from the graphs: `mpvss recover-weights --model models/default --out runs/shipped`.
#
# Knobs (environment):
#   DEVICE=cpu|cuda   where to train (default cpu)
#   STEPS_SCALE=1     multiplies every step count below
#   SEQ_SCALE=1       multiplies every generated sequence count (frames per sequence stay)
#   THREADS=2         torch CPU threads
#   BATCH=8           batch size per process;   WORKERS=0  DataLoader worker processes
#   NPROC=1           processes under torchrun (data parallel, e.g. one per GPU)
#   AMP=1             bf16 autocast when DEVICE=cuda (0 to disable)
#   SEED=0            training seed (the data seeds are fixed below)
#   RUN_DIR=runs/recipe   data + checkpoints (git-ignored);   MODEL_DIR=models/default
#   PYTHON=python3
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f tools/env.sh ] && source tools/env.sh

DEVICE=${DEVICE:-cpu}
STEPS_SCALE=${STEPS_SCALE:-1}
SEQ_SCALE=${SEQ_SCALE:-1}
THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
WORKERS=${WORKERS:-0}
NPROC=${NPROC:-1}
AMP=${AMP:-1}
SEED=${SEED:-0}
RUN_DIR=${RUN_DIR:-runs/recipe}
MODEL_DIR=${MODEL_DIR:-models/default}
PYTHON=${PYTHON:-python3}

scale() {  # count factor -> max(1, round(count * factor))
  "$PYTHON" -c "import sys; print(max(1, round(int(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$2"
}
steps() { scale "$1" "$STEPS_SCALE"; }
EVERY=$(steps 500)

mpvss() { "$PYTHON" -m mpvss_ros.cli "$@"; }
train() {
  if [ "$NPROC" -gt 1 ]; then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m mpvss_ros.cli train "$@"
  else
    mpvss train "$@"
  fi
}
# A stage that continues an earlier checkpoint starts from a copy of it, so every stage's
# checkpoint stays as it was (and a re-run resumes the copy, not the original).
continue_from() {  # src dst
  if [ ! -d "$2" ]; then cp -r "$1" "$2.tmp" && mv "$2.tmp" "$2"; fi
}

# 1. Data, 256x512, fixed seeds. Every set has the same val split (4 x 20 frames, seed 2).
make_split() {  # root split sequences frames seed
  local root="$RUN_DIR/$1"
  if [ ! -f "$root/.$2.done" ]; then
    rm -rf "$root/leftImg8bit_sequence/$2" "$root/gtFine/$2" "$root/flow/$2"
    mpvss make-sequences --out "$root" --split "$2" --sequences "$(scale "$3" "$SEQ_SCALE")" \
      --frames "$4" --size 256x512 --seed "$5"
    touch "$root/.$2.done"
  fi
}
for set in data diverse flowdata scenes scenes2 scenes3 flowdata2 flowdata3 flowdata4; do make_split "$set" val 4 20 2; done
make_split data train 30 20 1        # 30 scenes x 20 frames: the first segmentor and flow
make_split diverse train 150 4 3     # 150 new scenes
make_split flowdata train 100 12 4   # 100 new scenes, long enough for key frames 5 back
make_split scenes train 500 2 5      # 500 new scenes
make_split scenes2 train 1500 2 6    # 1500 new scenes
make_split scenes3 train 2000 2 7    # 2000 new scenes
make_split flowdata2 train 400 12 10 # 400 new 12-frame scenes for the query flow
make_split flowdata3 train 800 12 11 # 800 more
make_split flowdata4 train 1200 12 12 # 1200 more

common() {  # data root [batch] [crop, "" for whole frames] -> the options every training command shares
  local opts=(--data "$RUN_DIR/$1" --device "$DEVICE" --threads "$THREADS" --batch-size "${2:-$BATCH}"
              --workers "$WORKERS" --seed "$SEED" --val-every "$EVERY" --checkpoint-every "$EVERY" --keep-checkpoints)
  local crop=${3-128x256}
  if [ -n "$crop" ]; then opts+=(--crop "$crop"); fi
  if [ "$DEVICE" = cuda ] && [ "$AMP" = 1 ]; then opts+=(--amp); fi
  echo "${opts[@]}"
}
full() {  # data root -> whole 256x512 frames at a quarter of the batch (a frame has the pixels of four crops)
  common "$1" "$(( BATCH > 3 ? BATCH / 4 : 1 ))" ""
}
# shellcheck disable=SC2046  # common's words carry no spaces (paths with spaces are not supported)
seg() {  # out data steps [src]
  [ $# -lt 4 ] || continue_from "$RUN_DIR/$4" "$RUN_DIR/$1"
  train segmentor $(common "$2") --out "$RUN_DIR/$1" --steps "$(steps "$3")"
}

# 2. Key-frame segmentor (the default MPVSSConfig: 1.77 M parameters, from scratch), then the
#    same run continued on new scenes (a larger --steps recomputes the decay for the new end).
seg seg1 data 10000
seg seg2 diverse 13000 seg1

# 3. Query flow. flow1: pixel-flow EPE pre-training, then the warped-mask Hungarian loss (key
#    frame 1..5 frames back; segmentor frozen except its class/mask heads). Each later stage
#    starts its query-flow module from the previous one (--flow-init).
# shellcheck disable=SC2046
train flow $(common data) --out "$RUN_DIR/flow1" --segmentor "$RUN_DIR/seg1" \
  --pretrain-steps "$(steps 1500)" --steps "$(steps 7000)" --max-gap 5 --val-gap 5
# shellcheck disable=SC2046
train flow $(common data) --out "$RUN_DIR/flow2" --segmentor "$RUN_DIR/seg2" --flow-init "$RUN_DIR/flow1" \
  --pretrain-steps 0 --steps "$(steps 2000)" --max-gap 5 --val-gap 5 --lr 1e-4

# 4. More scenes for the segmentor (from flow2's weights, whose heads the flow stage tuned; a
#    fresh optimizer and schedule with --init), more EPE pre-training for the motion encoder on
#    longer sequences, then the warped-mask loss on each new segmentor.
# shellcheck disable=SC2046
train segmentor --init "$RUN_DIR/flow2" $(common scenes) --out "$RUN_DIR/seg3" --steps "$(steps 4000)" --lr 1e-4
# shellcheck disable=SC2046
train flow $(common flowdata) --out "$RUN_DIR/flow3" --segmentor "$RUN_DIR/flow2" --flow-init "$RUN_DIR/flow2" \
  --pretrain-steps "$(steps 6000)" --steps 0 --max-gap 5 --val-gap 5
# shellcheck disable=SC2046
train segmentor --init "$RUN_DIR/seg3" $(common scenes2) --out "$RUN_DIR/seg4" --steps "$(steps 5000)" --lr 1e-4
# shellcheck disable=SC2046
train flow $(common flowdata) --out "$RUN_DIR/flow4" --segmentor "$RUN_DIR/seg3" --flow-init "$RUN_DIR/flow3" \
  --pretrain-steps 0 --steps "$(steps 5000)" --max-gap 5 --val-gap 5 --lr 1e-4
# shellcheck disable=SC2046
train flow $(common flowdata) --out "$RUN_DIR/flow5" --segmentor "$RUN_DIR/flow4" --flow-init "$RUN_DIR/flow4" \
  --pretrain-steps "$(steps 4000)" --steps 0 --max-gap 5 --val-gap 5
# shellcheck disable=SC2046
train flow $(common flowdata) --out "$RUN_DIR/flow6" --segmentor "$RUN_DIR/seg4" --flow-init "$RUN_DIR/flow5" \
  --pretrain-steps 0 --steps "$(steps 3000)" --max-gap 5 --val-gap 5 --lr 1e-4

# 5. Whole frames. The crops taught the segmentor positions relative to a 128x256 window
#    (Mask2Former's sine position embeddings are normalised to the feature map), and the flow
#    module only saw content enter a crop's edges; the evaluation shows whole 256x512 frames.
#    seg5: 2000 more new scenes on crops. seg6 / seg7: seg4 / seg5 fine-tuned on whole frames.
#    flow7: more EPE steps with key frames up to 9 back (k=10 uses them); flow8 / flow9: the
#    mask loss on whole frames on seg6, then on seg7.
# shellcheck disable=SC2046
train segmentor --init "$RUN_DIR/seg4" $(common scenes3) --out "$RUN_DIR/seg5" --steps "$(steps 6000)" --lr 1e-4
# shellcheck disable=SC2046
train segmentor --init "$RUN_DIR/seg4" $(full scenes2) --out "$RUN_DIR/seg6" --steps "$(steps 3000)" --lr 1e-4
# shellcheck disable=SC2046
train segmentor --init "$RUN_DIR/seg5" $(full scenes3) --out "$RUN_DIR/seg7" --steps "$(steps 3000)" --lr 1e-4
# shellcheck disable=SC2046
train flow $(common flowdata) --out "$RUN_DIR/flow7" --segmentor "$RUN_DIR/flow6" --flow-init "$RUN_DIR/flow6" \
  --pretrain-steps "$(steps 4000)" --steps 0 --max-gap 9 --val-gap 5
# shellcheck disable=SC2046
train flow $(full flowdata) --out "$RUN_DIR/flow8" --segmentor "$RUN_DIR/seg6" --flow-init "$RUN_DIR/flow7" \
  --pretrain-steps 0 --steps "$(steps 3000)" --max-gap 9 --val-gap 5 --lr 1e-4
# shellcheck disable=SC2046
train flow $(full flowdata) --out "$RUN_DIR/flow9" --segmentor "$RUN_DIR/seg7" --flow-init "$RUN_DIR/flow8" \
  --pretrain-steps 0 --steps "$(steps 4000)" --max-gap 9 --val-gap 5 --lr 1e-4

# 6. New scenes for the query flow: it had seen only flowdata's 100 scenes; more steps on them
#    no longer helped, 400 new ones did (models/README.md). flow11 / flow12 / flow13: the
#    warped-mask loss on whole frames of flowdata2, flowdata3, flowdata4, each from the previous.
# shellcheck disable=SC2046
train flow $(full flowdata2) --out "$RUN_DIR/flow11" --segmentor "$RUN_DIR/flow9" --flow-init "$RUN_DIR/flow9" \
  --pretrain-steps 0 --steps "$(steps 3000)" --max-gap 9 --val-gap 5 --lr 1e-4
# shellcheck disable=SC2046
train flow $(full flowdata3) --out "$RUN_DIR/flow12" --segmentor "$RUN_DIR/flow11" --flow-init "$RUN_DIR/flow11" \
  --pretrain-steps 0 --steps "$(steps 5000)" --max-gap 9 --val-gap 5 --lr 1e-4
# shellcheck disable=SC2046
train flow $(full flowdata4) --out "$RUN_DIR/flow13" --segmentor "$RUN_DIR/flow12" --flow-init "$RUN_DIR/flow12" \
  --pretrain-steps 0 --steps "$(steps 5000)" --max-gap 9 --val-gap 5 --lr 1e-4

# 7. Export the graphs and model.json (weights stay out of the repository).
mpvss export --checkpoint "$RUN_DIR/flow13" --out "$MODEL_DIR" --no-weights
echo "default model written to $MODEL_DIR (learning curves: $RUN_DIR/*/learning_curve.csv)"
