"""Seconds to trace the training step (Trainer.compiled_step, get_concrete_function) with and
without remat, at the cifar10 preset with K steps per level (width 32, batch 1). Run from the
repository: python docs/runs/remat_trace/trace_probe.py 8 16 (what before_e907b34.txt and after.txt
printed; trace.json holds their numbers)."""
import os, sys, tempfile, time
sys.path.insert(0, os.getcwd())
import glow_nxn  # noqa
import tensorflow as tf
from glow_nxn import training
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset

for k in map(int, sys.argv[1:]):
    for remat in (False, True):
        model = preset("cifar10", steps_per_level=k, hidden_width=32)
        folder = tempfile.TemporaryDirectory()
        trainer = training.Trainer(RunConfig(model=model, data=DataConfig(dataset="cifar10"),
                                             train=TrainConfig(per_replica_batch_size=1)),
                                   os.path.join(folder.name, "run"), log=lambda line: None)
        trainer.model.data_dependent_init(tf.random.uniform([2, 32, 32, 3]) - 0.5)
        step = trainer.compiled_step(remat)
        started = time.time()
        step.get_concrete_function(tf.TensorSpec([1, 32, 32, 3], tf.float32))
        print(f"K={k} remat={remat}: trace {time.time() - started:.1f} s", flush=True)
