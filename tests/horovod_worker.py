"""A repository script (train.py or evaluate.py) as horovodrun's command, with test-only probes.

    horovodrun -np 2 --gloo python tests/horovod_worker.py train.py --workdir=... [flags]

Runs the script as ``__main__``, unchanged; the library has no test hooks, so the probes wrap its
classes from outside, and each is switched on by an environment variable:

``GLOW_TEST_RECORD_DIR``
    Each rank keeps ``<dir>/rank<r>.json`` up to date (after every step and at exit): its ``pid``;
    ``digests``, the sha256 of every model and optimizer variable and the step, taken right after
    ``Trainer.restore_or_initialise`` (after the broadcast: ``"start"``), at every
    ``Trainer.save`` (``"step N"``) and after ``Trainer.fit`` (``"end"``); ``examples``, per
    completed training step the indices of the images it trained on, read from the images
    themselves (a dataset made by :func:`write_indexed_images`, whose image ``i`` has every pixel
    equal to ``i``); ``prepare_calls``, the ``(start, end)`` times of its calls of tfds's
    ``download_and_prepare``.
``GLOW_TEST_OWN_WORKDIR``
    Ranks other than 0 get ``--workdir=<workdir>.rank<r>``: anything they wrote would land there.
``GLOW_TEST_EXIT_AT_STEP=R:S``
    Rank ``R`` dies (``os._exit(3)``, no clean-up) just before its training step ``S``, having
    written its record (with ``died_at``, the time) if ``GLOW_TEST_RECORD_DIR`` is set.
"""
import atexit
import hashlib
import json
import os
import runpy
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from glow_nxn import training  # noqa: E402

RANK = int(os.environ.get("HOROVOD_RANK", "0"))
RECORD_DIR = os.environ.get("GLOW_TEST_RECORD_DIR")
RECORD = {"rank": RANK, "pid": os.getpid(), "digests": {}, "examples": [], "prepare_calls": []}


def write_indexed_images(directory, count):
    """``count`` 28×28 grey PNGs named in index order; every pixel of image ``i`` is ``i``."""
    from PIL import Image

    assert count <= 256, "an 8-bit pixel holds indices up to 255"
    os.makedirs(directory, exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full([28, 28], index, np.uint8)).save(
            os.path.join(directory, f"{index:03d}.png"))


def image_indices(batch, n_bits):
    """The index of each image of a dequantised batch ``[B, H, W, C]`` of indexed images."""
    cells = np.floor((batch.astype(np.float64) + 0.5) * 2**n_bits)
    return [int(np.median(image)) << (8 - n_bits) for image in cells]


def digest(trainer):
    """sha256 of the bytes of every model and optimizer variable and of the step."""
    hasher = hashlib.sha256()
    for variable in trainer.model.variables + trainer.optimizer.variables() + [trainer.step]:
        hasher.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return hasher.hexdigest()


def wrap_trainer(die_at):
    original_init = training.Trainer.__init__
    original_restore = training.Trainer.restore_or_initialise
    original_fit = training.Trainer.fit
    original_save = training.Trainer.save

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        step_fn = self._train_step

        def probed_step(x):
            if die_at is not None and RANK == die_at[0] and int(self.step.numpy()) + 1 == die_at[1]:
                print(f"rank {RANK}: dying before step {die_at[1]}", flush=True)
                RECORD["died_at"] = time.time()
                write_record()
                os._exit(3)
            indices = image_indices(x.numpy(), self.model_config.n_bits)
            outputs = step_fn(x)
            RECORD["examples"].append(indices)  # a step that completed
            write_record()
            return outputs

        self._train_step = probed_step

    def restore_or_initialise(self, init_images):
        step = original_restore(self, init_images)
        RECORD["digests"]["start"] = digest(self)
        return step

    def save(self):
        path = original_save(self)
        RECORD["digests"][f"step {int(self.step.numpy())}"] = digest(self)
        return path

    def fit(self):
        summary = original_fit(self)
        RECORD["digests"]["end"] = digest(self)
        return summary

    training.Trainer.__init__ = init
    training.Trainer.restore_or_initialise = restore_or_initialise
    training.Trainer.save = save
    training.Trainer.fit = fit


def wrap_prepare():
    original = tfds.core.DatasetBuilder.download_and_prepare

    def download_and_prepare(self, *args, **kwargs):
        start = time.time()
        try:
            return original(self, *args, **kwargs)
        finally:
            RECORD["prepare_calls"].append([start, time.time()])

    tfds.core.DatasetBuilder.download_and_prepare = download_and_prepare


def write_record():
    if RECORD_DIR:
        with open(os.path.join(RECORD_DIR, f"rank{RANK}.json"), "w") as handle:
            json.dump(RECORD, handle)


def own_workdir(argv):
    return [f"{a}.rank{RANK}" if a.startswith("--workdir=") else a for a in argv]


def main():
    script, *args = sys.argv[1:]
    die_at = os.environ.get("GLOW_TEST_EXIT_AT_STEP")
    die_at = tuple(int(part) for part in die_at.split(":")) if die_at else None
    if RECORD_DIR or die_at:
        wrap_trainer(die_at)
    if RECORD_DIR:
        wrap_prepare()
        atexit.register(write_record)
    if os.environ.get("GLOW_TEST_OWN_WORKDIR") and RANK != 0:
        args = own_workdir(args)
    path = os.path.join(REPO, script)
    sys.argv = [path, *args]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
