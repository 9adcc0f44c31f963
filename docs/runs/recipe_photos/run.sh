#!/usr/bin/env bash
# usage: run.sh name seed [train flags]: 600 steps of the mnist preset on the photo patches, then
# evaluate.py with the weight average and with the raw weights.
set -u
cd /work/wt-sched
export PYTHONPATH=/work/wt-sched
name=$1; seed=$2; shift 2
wd=/work/explore/s21/photo/$name
rm -rf $wd
.venv/bin/python train.py --preset=mnist --dataset=folder:/work/explore/photo_patches --workdir=$wd \
  --seed=$seed --train_steps=600 --log_every_steps=10 --eval_every_steps=0 \
  --checkpoint_every_steps=100000 "$@" > $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd >> $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd --weights=raw --output=$wd/eval_raw.json >> $wd.log 2>&1
grep "test bits" $wd.log | sed "s/^/$name: /" >> /work/explore/s21/photo/results.txt
