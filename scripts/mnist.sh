#!/usr/bin/env bash
# The main job on the embedded default: set up (reused when done), train the mnist preset on
# the CPU for a bounded time, evaluate test bits/dim on all 10,000 test images, write samples.
#   TRAIN_SECONDS  the run's training time budget (default 360); WORKDIR (default runs/mnist).
# The budget is the run's total: a second run finds it spent and only evaluates and samples again;
# TRAIN_SECONDS=720 resumes it for 6 more minutes, with the learning-rate schedule stretched.
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh
py=${GLOW_NXN_VENV:-.venv}/bin/python
workdir=${WORKDIR:-runs/mnist}
start=$SECONDS
"$py" train.py --preset=mnist --dataset=mnist --workdir="$workdir" \
  --max_train_seconds="${TRAIN_SECONDS:-360}" --log_every_steps=50 \
  --eval_every_steps=0 --checkpoint_every_steps=500
"$py" evaluate.py --workdir="$workdir"
"$py" sample.py --workdir="$workdir"
echo
echo "main job done in $((SECONDS - start)) s. In $workdir:"
echo "  checkpoints/   model, optimizer, weight average and progress (newest 3)"
echo "  config.json    the run's description: model, data, training"
echo "  metrics.jsonl  one JSON object per progress line"
echo "  eval.json      test bits/dim over the 10,000 MNIST test images (weight average)"
echo "  samples/       samples_t*.png, reconstructions.png, interpolation.png"
echo "  summaries/     TensorBoard: $py -m tensorboard.main --logdir $workdir/summaries"
