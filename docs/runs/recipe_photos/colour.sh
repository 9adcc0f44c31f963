#!/usr/bin/env bash
# usage: colour.sh name seed [flags]: 600 steps of an R1-sized cifar10 preset (K=8, width 128) on the
# colour patches, flags after the defaults; then evaluate.py with the weight average and raw weights.
set -u
cd /work/wt-sched
export PYTHONPATH=/work/wt-sched
name=$1; seed=$2; shift 2
wd=/work/explore/s21/photo/$name
rm -rf $wd
.venv/bin/python train.py --preset=cifar10 --steps_per_level=8 --hidden_width=128 "$@" \
  --dataset=folder:/work/explore/colour_patches --workdir=$wd --seed=$seed --train_steps=600 \
  --log_every_steps=10 --eval_every_steps=0 --checkpoint_every_steps=100000 > $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd >> $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd --weights=raw --output=$wd/eval_raw.json >> $wd.log 2>&1
grep "test bits\|rror" $wd.log | sed "s/^/$name: /" >> /work/explore/s21/photo/results.txt
