"""The training step of bench/memory.py at the imagenet64 preset, batch 4, repeated 8 times on one
batch of noise from the identity start; prints step, loss (bits/dim), gradient norm, finite.
Run from the repository: python docs/runs/memory/nonfinite_imagenet64/probe.py"""
import os, tempfile
import glow_nxn  # noqa
import tensorflow as tf
from glow_nxn import training
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset
config = preset("imagenet64")
batch = 4
workdir = tempfile.TemporaryDirectory()
trainer = training.Trainer(RunConfig(model=config, data=DataConfig(dataset="imagenet64"),
                                     train=TrainConfig(per_replica_batch_size=batch)),
                           os.path.join(workdir.name, "run"), log=lambda line: None)
trainer.optimizer.learning_rate = 1e-4
x = tf.random.stateless_uniform((batch, *config.image_shape), seed=[0, 1]) - 0.5
step = trainer.compiled_step(False)
for i in range(8):
    loss, norm, finite = step(x)
    print(i, float(loss), float(norm), bool(finite), flush=True)
