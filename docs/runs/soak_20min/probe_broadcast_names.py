import os, sys, json
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tensorflow as tf
import horovod.tensorflow as hvd
import numpy as np
hvd.init()
named = sys.argv[1] == "named"
bad = 0
rank = hvd.rank()
for i in range(300):
    a = hvd.broadcast(tf.constant(1 + rank), root_rank=0, name="resume" if named else None)
    v = 1000.0 + i + 0.123456789 + rank * 1e-3
    b = hvd.broadcast(tf.constant(v, tf.float64), root_rank=0, name="seconds" if named else None)
    got = b.numpy()
    expected = 1000.0 + i + 0.123456789
    if got != expected:
        bad += 1
        if bad < 4: print(f"rank {rank} iter {i}: got {got!r}, expected {expected!r}, own {v!r}", flush=True)
print(f"rank {rank}: {bad} of 300 float64 broadcasts wrong ({'named' if named else 'default names'})", flush=True)
