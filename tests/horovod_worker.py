"""A repository script (train.py or evaluate.py) as horovodrun's command, with test-only probes.

    horovodrun -np 2 --gloo python tests/horovod_worker.py train.py --workdir=... [flags]

Runs the script unchanged: evaluate.py as ``__main__``; train.py through its own ``main`` with one
more hook of the training loop (:class:`Probe`, a :class:`glow_nxn.training.Hook`) when a probe
is asked for. Each probe is switched on by an environment variable:

``GLOW_TEST_RECORD_DIR``
    Each rank keeps ``<dir>/rank<r>.json`` up to date (after every step and checkpoint, at the
    end and at exit): its ``pid``;
    ``digests``, the sha256 of every variable the replicas share (model, optimizer, weight
    average, progress), taken at the loop's start (after the broadcast: ``"start"``), at every
    checkpoint (``"step N"``) and at its end (``"end"``), and ``parts``, the same per part; ``examples``, per
    completed training step the indices of the images it trained on, read from the images
    themselves (a dataset made by :func:`write_indexed_images`, whose image ``i`` has every pixel
    equal to ``i``); ``prepare_calls``, the ``(start, end)`` times of its calls of tfds's
    ``download_and_prepare``.
``GLOW_TEST_OWN_WORKDIR``
    Ranks other than 0 get ``--workdir=<workdir>.rank<r>``: anything they wrote would land there.
``GLOW_TEST_EXIT_AT_STEP=R:S``
    Rank ``R`` dies (``os._exit(3)``, no clean-up) just before its training step ``S``, having
    written its record (with ``died_at``, the time) if ``GLOW_TEST_RECORD_DIR`` is set.
``GLOW_TEST_HANG_AT_STEP=R:S``
    Rank ``R`` hangs while alive (sleeps for a day) after its training step ``S``, having written
    its record (with ``hung_at``, the time); when ``S`` is the step the loop starts from, at the
    loop's start, so that its peers wait inside their first step.
``GLOW_TEST_CLOCK_RATE=R:K``
    Rank ``R``'s clock, as the training loop reads it (``glow_nxn.training.time.time``), runs
    ``K`` times as fast as the real one: what the ranks agree on must be rank 0's time. With
    ``GLOW_TEST_RECORD_DIR``, each rank also records ``seconds``, the run's training seconds
    after each of its steps (what the stop decision and the checkpoints use).
"""
import atexit
import functools
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
RECORD = {"rank": RANK, "pid": os.getpid(), "digests": {}, "parts": {}, "examples": [],
          "seconds": [], "prepare_calls": []}


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


def sha256(variables):
    hasher = hashlib.sha256()
    for variable in variables:
        hasher.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return hasher.hexdigest()


def digest(trainer, key):
    """sha256 of the bytes of every variable a replica shares with rank 0 (model, optimizer,
    weight average and progress), recorded under ``key``; and of each of those four parts, under
    ``parts[key]``, to name what differs when the whole does."""
    RECORD["parts"][key] = {
        "model": sha256(trainer.model.variables),
        "optimizer": sha256(trainer.optimizer.variables()),
        "average": sha256(trainer.average.shadows if trainer.average is not None else []),
        "progress": sha256(trainer.state.variables)}
    RECORD["digests"][key] = sha256(trainer.state_variables())


def hang(where):
    """Sleep for a day, alive, having said so and recorded when (``hung_at``)."""
    print(f"rank {RANK}: hanging {where}", flush=True)
    RECORD["hung_at"] = time.time()
    write_record()
    time.sleep(86400)


class Probe(training.Hook):
    """The records of the module docstring, taken through the training loop's hooks."""

    def __init__(self, die_at, hang_at):
        self.die_at, self.hang_at = die_at, hang_at

    def on_start(self, trainer):
        digest(trainer, "start")
        write_record()
        if self.hang_at == (RANK, trainer.step):
            hang(f"at the start, step {trainer.step}")

    def after_step(self, trainer, result):
        RECORD["examples"].append(image_indices(result.batch.numpy(),
                                                trainer.model_config.n_bits))
        RECORD["seconds"].append(float(trainer.state.seconds.numpy()))
        write_record()
        if self.die_at is not None and RANK == self.die_at[0] and \
                result.step + 1 == self.die_at[1]:
            print(f"rank {RANK}: dying before step {self.die_at[1]}", flush=True)
            RECORD["died_at"] = time.time()
            write_record()
            os._exit(3)
        if self.hang_at == (RANK, result.step):
            hang(f"after step {result.step}")

    def on_checkpoint(self, trainer, path):
        digest(trainer, f"step {trainer.step}")
        write_record()  # train.py may leave by os._exit (a signal), without atexit

    def on_end(self, trainer):
        digest(trainer, "end")
        write_record()


class FastClock:
    """The ``time`` module, but for ``time()``, which runs ``rate`` times as fast from now on."""

    def __init__(self, rate):
        self.rate, self.origin = rate, time.time()

    def time(self):
        return self.origin + self.rate * (time.time() - self.origin)

    def __getattr__(self, name):
        return getattr(time, name)


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
    """Write the record whole (through a temporary file): a reader polls it during the run."""
    if RECORD_DIR:
        path = os.path.join(RECORD_DIR, f"rank{RANK}.json")
        with open(f"{path}.tmp", "w") as handle:
            json.dump(RECORD, handle)
        os.replace(f"{path}.tmp", path)


def rank_and_step(value):
    """``(R, S)`` of an ``"R:S"`` variable; None if unset."""
    return tuple(int(part) for part in value.split(":")) if value else None


def own_workdir(argv):
    return [f"{a}.rank{RANK}" if a.startswith("--workdir=") else a for a in argv]


def main():
    script, *args = sys.argv[1:]
    die_at, hang_at = (rank_and_step(os.environ.get(name))
                       for name in ("GLOW_TEST_EXIT_AT_STEP", "GLOW_TEST_HANG_AT_STEP"))
    if RECORD_DIR:
        wrap_prepare()
        atexit.register(write_record)
    clock = rank_and_step(os.environ.get("GLOW_TEST_CLOCK_RATE"))
    if clock and clock[0] == RANK:
        training.time = FastClock(clock[1])
    if os.environ.get("GLOW_TEST_OWN_WORKDIR") and RANK != 0:
        args = own_workdir(args)
    path = os.path.join(REPO, script)
    sys.argv = [path, *args]
    if script != "train.py" or not (RECORD_DIR or die_at or hang_at):
        runpy.run_path(path, run_name="__main__")
        return
    # train.py's own main, with the probe as one more hook of the loop.
    import flags as project_flags

    train_main = runpy.run_path(path, run_name="train_under_test")["main"]
    project_flags.run(functools.partial(train_main, hooks=[Probe(die_at, hang_at)]))


if __name__ == "__main__":
    main()
