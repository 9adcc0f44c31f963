"""Scratch exploration of training recipes on MNIST (not committed)."""
import argparse, json, math, os, sys, time
sys.path.insert(0, "/work/explore/pkg")
import glow_nxn  # noqa
import numpy as np
import tensorflow as tf
from glow_nxn import data, evaluation, objectives
from glow_nxn.config import preset
from glow_nxn.keras import keras
from glow_nxn.model import Glow

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--seconds", type=float, default=0)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--schedule", default="constant")  # constant | cosine
p.add_argument("--floor", type=float, default=0.0)
p.add_argument("--warmup", type=int, default=500)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--clip", type=float, default=0.0)
p.add_argument("--ema", type=float, default=0.0)
p.add_argument("--opt", default="adam")
p.add_argument("--mixing", default="nxn")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--width", type=int, default=128)
p.add_argument("--K", type=int, default=8)
p.add_argument("--dataset", default="mnist")
p.add_argument("--eval_batches", type=int, default=0)
a = p.parse_args()
keras.utils.set_random_seed(a.seed)
cfg = preset("mnist", mixing=a.mixing, seed=a.seed, hidden_width=a.width, steps_per_level=a.K)
model = Glow(cfg)
train = data.train_dataset(a.dataset, image_shape=cfg.image_shape, n_bits=8, per_replica_batch_size=a.batch, seed=a.seed)
test = data.eval_dataset(a.dataset, image_shape=cfg.image_shape, batch_size=500)
model.data_dependent_init(next(iter(data.train_dataset(a.dataset, image_shape=cfg.image_shape, n_bits=8, per_replica_batch_size=256, seed=a.seed))))
lr_var = tf.Variable(0.0, trainable=False)
opt = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[a.opt](learning_rate=1e-3)
vs = model.trainable_variables
opt.build(vs)
ema = [tf.Variable(v) for v in vs] if a.ema else None

@tf.function
def step(x, ema_decay):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(objectives.bits_per_dim(model.log_prob(x), cfg.num_dims, 8))
    g = tape.gradient(loss, vs)
    gn = tf.linalg.global_norm(g)
    if a.clip:
        g, _ = tf.clip_by_global_norm(g, a.clip, use_norm=gn)
    ok = tf.math.is_finite(loss) & tf.math.is_finite(gn)
    if ok:
        opt.apply_gradients(zip(g, vs))
        if ema is not None:
            for e, v in zip(ema, vs):
                e.assign(ema_decay * e + (1 - ema_decay) * v)
    return loss, gn

def lr_at(t, frac):
    w = min(1.0, (t + 1) / max(a.warmup, 1))
    if a.schedule == "cosine":
        c = a.floor + (1 - a.floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        return a.lr * w * c
    return a.lr * w

it = iter(train)
start = time.time(); win = []; hist = []; gns = []
t = 0
while True:
    frac = (time.time() - start) / a.seconds if a.seconds else t / a.steps
    if frac >= 1.0: break
    opt.learning_rate = lr_at(t, frac)
    d = min(a.ema, (1 + t) / (10 + t)) if a.ema else 0.0
    loss, gn = step(next(it), tf.constant(d, tf.float32))
    t += 1
    win.append(float(loss)); gns.append(float(gn))
    if t % 100 == 0:
        m = float(np.mean(win[-100:]))
        hist.append((t, m, float(np.median(gns[-100:])), float(np.max(gns[-100:]))))
        print(f"{a.name} step {t} bpd {m:.4f} gn med {hist[-1][2]:.2f} max {hist[-1][3]:.2f} lr {lr_at(t,frac):.2e} {time.time()-start:.0f}s", flush=True)
res = {"name": a.name, "args": vars(a), "steps": t, "seconds": time.time() - start, "hist": hist}
mb = a.eval_batches or None
r = evaluation.evaluate(model, test, seed=0, max_batches=mb)
res["raw"] = r.bits_per_dim
if ema is not None:
    for e, v in zip(ema, vs):
        tmp = v.numpy(); v.assign(e); e.assign(tmp)
    res["ema"] = evaluation.evaluate(model, test, seed=0, max_batches=mb).bits_per_dim
print("RESULT", json.dumps({k: v for k, v in res.items() if k != "hist"}), flush=True)
with open(f"/work/explore/{a.name}.json", "w") as f: json.dump(res, f)
