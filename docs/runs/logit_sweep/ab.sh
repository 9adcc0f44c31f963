#!/usr/bin/env bash
# usage: ab.sh name steps -- extra train flags
cd /work/main
name=$1; steps=$2; shift 2
wd=/work/explore/s15/$name
rm -rf $wd
.venv/bin/python train.py --preset=mnist --dataset=mnist --workdir=$wd --train_steps=$steps \
  --log_every_steps=100 --eval_every_steps=0 --checkpoint_every_steps=100000 "$@" > $wd.log 2>&1
.venv/bin/python evaluate.py --workdir=$wd >> $wd.log 2>&1
grep "test bits" $wd.log | tail -1 | sed "s/^/$name: /" >> /work/explore/s15/results.txt
