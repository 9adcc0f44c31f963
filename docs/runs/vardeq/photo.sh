#!/usr/bin/env bash
# usage: photo.sh grey|colour name seed [train flags]: 600 steps on the photo patches (grey: the
# mnist preset; colour: the cifar10 preset at R1's size), then evaluate.py with the weight average.
# REPO: the checkout that runs (default: the one it ran from); ROOT: holds grey/ and colour/, from
# bench/photo_patches.py, and gets photo/ (default: where it ran).
set -u
REPO=${REPO:-/work/s25}
ROOT=${ROOT:-/work/explore/s25}
cd "$REPO"
kind=$1; name=$2; seed=$3; shift 3
wd="$ROOT/photo/$name"
mkdir -p "$ROOT/photo"; rm -rf "$wd"
if [ "$kind" = grey ]; then preset="--preset=mnist"; else preset="--preset=cifar10 --steps_per_level=8 --hidden_width=128"; fi
# shellcheck disable=SC2086  # $preset is two or three flags
.venv/bin/python train.py $preset "$@" --dataset="folder:$ROOT/$kind" --workdir="$wd" \
  --seed="$seed" --train_steps=600 --log_every_steps=10 --eval_every_steps=0 \
  --checkpoint_every_steps=100000 > "$wd.log" 2>&1
.venv/bin/python evaluate.py --workdir="$wd" >> "$wd.log" 2>&1
grep "test bits\|rror" "$wd.log" | sed "s/^/$name: /" >> "$ROOT/photo/results.txt"
