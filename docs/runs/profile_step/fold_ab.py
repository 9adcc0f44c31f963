"""Scratch A/B of the folded coupling networks (docs/runs/profile_step/README.md)."""
import pathlib, sys, tempfile, time, statistics
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
import glow_nxn
import tensorflow as tf
from glow_nxn import training
from glow_nxn.layers import nn
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset
import dataclasses
name = sys.argv[1] if len(sys.argv) > 1 else "mnist"
cfg = preset(name)
if name != "mnist":
    cfg = dataclasses.replace(cfg, steps_per_level=8)
batch = 64 if name == "mnist" else 16
def make(unfold):
    original = nn.pending_init_reducer
    if unfold: nn.pending_init_reducer = lambda: "unfold"
    t = training.Trainer(RunConfig(model=cfg, data=DataConfig(), train=TrainConfig(per_replica_batch_size=batch)), tempfile.mkdtemp() + "/r", log=lambda l: None)
    x = tf.random.stateless_uniform((batch, *cfg.image_shape), seed=[0, 1]) - 0.5
    t.model.data_dependent_init(x); t.optimizer.learning_rate = 1e-4
    for _ in range(3): t._train_step(x)[0].numpy()
    nn.pending_init_reducer = original
    return lambda: t._train_step(x)[0].numpy()
old, new = make(True), make(False)
res = {"unfolded": [], "folded": []}
for r in range(6):
    for label, f in (("unfolded", old), ("folded", new)):
        s = time.perf_counter()
        for _ in range(8): f()
        res[label].append(batch * 8 / (time.perf_counter() - s))
for k, v in res.items(): print(name, k, "median images/s %.1f" % statistics.median(v), ["%.0f" % a for a in v])
