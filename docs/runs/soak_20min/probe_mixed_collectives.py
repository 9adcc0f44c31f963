import os, sys, time, random
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tensorflow as tf
import horovod.tensorflow as hvd
hvd.init()
rank = hvd.rank()
rng = random.Random(rank)
w = tf.Variable(tf.ones([64, 64]))
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w * w)
    tape = hvd.DistributedGradientTape(tape)
    g = tape.gradient(loss, [w])
    return hvd.allreduce(loss, op=hvd.Average)
hvd.broadcast(tf.constant(1), root_rank=0)
bad = 0
for i in range(int(sys.argv[1])):
    if rng.random() < 0.3: time.sleep(rng.random() * 0.02)
    step()
    v = 1000.0 + i + 0.123456789 + rank * 1e-3
    got = hvd.broadcast(tf.constant(v, tf.float64), root_rank=0).numpy()
    hvd.allgather(tf.constant([0], tf.int32)).numpy()
    if got != 1000.0 + i + 0.123456789:
        bad += 1
        if bad < 4: print(f"rank {rank} iter {i}: got {got!r}, own {v!r}", flush=True)
print(f"rank {rank}: {bad} wrong", flush=True)
