#!/usr/bin/env bash
# usage: photo.sh grey|colour name seed [train flags]: 600 steps on the photo patches (grey: the
# mnist preset; colour: the cifar10 preset at R1's size), then evaluate.py with the weight average.
set -u
cd /work/s25
kind=$1; name=$2; seed=$3; shift 3
wd=/work/explore/s25/photo/$name
mkdir -p /work/explore/s25/photo; rm -rf $wd
if [ $kind = grey ]; then preset="--preset=mnist"; else preset="--preset=cifar10 --steps_per_level=8 --hidden_width=128"; fi
.venv/bin/python train.py $preset "$@" --dataset=folder:/work/explore/s25/$kind --workdir=$wd \
  --seed=$seed --train_steps=600 --log_every_steps=10 --eval_every_steps=0 \
  --checkpoint_every_steps=100000 > $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd >> $wd.log 2>&1
grep "test bits\|rror" $wd.log | sed "s/^/$name: /" >> /work/explore/s25/photo/results.txt
