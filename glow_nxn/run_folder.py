"""A training run's folder (``--workdir``): its layout, its config, its checkpoints, its results.

Only this module spells a path inside a run folder::

    <workdir>/
      config.json            the RunConfig (model, data, train), written by rank 0 at the start
      checkpoints/ckpt-N.*   model, optimizer, weight average and progress at step N (newest few)
      checkpoints/checkpoint the index TensorFlow reads to find the newest
      checkpoints/unreadable/ checkpoints set aside on resume because they could not be read
      summaries/             TensorBoard event files
      metrics.jsonl          one JSON object per progress line and per evaluation, and one
                             at each start and end of the training loop (glow_nxn/training.py)
      eval.json              evaluate.py's result
      samples/               sample.py's PNGs

Files are written whole or not at all: JSON through a temporary file and ``os.replace``;
checkpoints by ``tf.train.CheckpointManager``, which points its index at a new checkpoint only
after every file of it is written. A checkpoint is built by :func:`training_checkpoint`, the same
way for writing and for reading.

Faults cost at most one checkpoint. A write that fails (a full disk) raises
:class:`~glow_nxn.errors.WriteFailed` after removing the partial files, so the index still names
the previous checkpoint, intact. On resume (:meth:`RunFolder.restore_newest`), a checkpoint that
cannot be read (a damaged file) is moved to ``checkpoints/unreadable/`` with a warning and the
next older one is tried; only when none can be read does the resume fail, with every file left
where it was.
"""
import contextlib
import dataclasses
import json
import os
import shutil

import tensorflow as tf

from glow_nxn.averaging import WeightAverage
from glow_nxn.config import WEIGHTS, RunConfig, check_folder_path
from glow_nxn.errors import UserError, WriteFailed, as_user_error, first_line
from glow_nxn.model import Glow

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "unreadable"  # inside CHECKPOINT_DIR
SUMMARIES_DIR = "summaries"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
SAMPLES_DIR = "samples"


class TrainState(tf.Module):
    """The progress a checkpoint carries besides weights and optimizer slots.

    ``step``: training steps taken; ``seconds``: training time spent (summed over resumptions,
    what ``max_train_seconds`` bounds); ``lr_scale``: the learning-rate factor left by spike
    recoveries; ``recoveries``: how many there were.
    """

    def __init__(self):
        super().__init__(name="state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
        self.lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
        self.recoveries = tf.Variable(0, dtype=tf.int64, trainable=False, name="recoveries")


def training_checkpoint(model, state, optimizer=None, average=None):
    """The ``tf.train.Checkpoint`` of a run: ``model`` and ``state`` always, ``optimizer`` and
    ``average`` (a :class:`WeightAverage`) when given. Training writes all four; loading a model
    reads the model, the state and, if the checkpoint has one, the average."""
    parts = dict(model=model, state=state)
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if average is not None:
        parts["ema"] = average
    return tf.train.Checkpoint(**parts)


def write_json_atomically(path, payload):
    """Write ``payload`` as JSON to ``path``, replacing any old file only once fully written;
    :class:`WriteFailed` if it cannot be (the old file, if any, is left as it was)."""
    temporary = f"{path}.tmp"
    with writing(path):
        with open(temporary, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)


@contextlib.contextmanager
def writing(path):
    """Turn an OSError while writing ``path`` (a full disk, no permission) into one line."""
    try:
        yield
    except OSError as error:
        raise WriteFailed(f"cannot write {path} ({error.strerror or error}); free space or fix "
                          f"the folder, then run the same command again") from error


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A trained model read from a run folder, and where its weights came from."""

    model: Glow
    run_config: RunConfig
    step: int
    checkpoint: str
    weights: str  # "ema" (the averaged weights) or "raw"


class RunFolder:
    """The folder of one training run (module docstring)."""

    def __init__(self, path):
        self.path = path

    # ---- layout ------------------------------------------------------------------------------

    def _join(self, name):
        return os.path.join(self.path, name)

    @property
    def config_path(self):
        return self._join(CONFIG_FILE)

    @property
    def checkpoint_dir(self):
        return self._join(CHECKPOINT_DIR)

    @property
    def summaries_dir(self):
        return self._join(SUMMARIES_DIR)

    @property
    def metrics_path(self):
        return self._join(METRICS_FILE)

    @property
    def eval_path(self):
        return self._join(EVAL_FILE)

    @property
    def samples_dir(self):
        return self._join(SAMPLES_DIR)

    def check_can_hold_a_run(self):
        """UserError unless the path is a folder or can be made one (it will be written into)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError(f"--workdir {self.path} is a file, not a folder: name a new or "
                            f"existing run folder")
        with as_user_error():
            check_folder_path("--workdir", self.path)

    def check_is_a_run(self):
        """UserError unless this is a folder train.py wrote (for evaluate.py and sample.py)."""
        if not os.path.isdir(self.path):
            raise UserError(f"--workdir {self.path} does not exist; pass the folder train.py "
                            f"wrote")
        if not os.path.exists(self.config_path):
            raise UserError(f"{self.path} has no {CONFIG_FILE}; pass the folder train.py wrote")

    # ---- config ------------------------------------------------------------------------------

    def save_config(self, run_config):
        """Write ``config.json``: the whole :class:`RunConfig`."""
        with writing(self.path):
            os.makedirs(self.path, exist_ok=True)
        write_json_atomically(self.config_path, json.loads(run_config.to_json()))

    def load_config(self):
        """The :class:`RunConfig` in ``config.json``; None if there is none."""
        if not os.path.exists(self.config_path):
            return None
        try:
            with open(self.config_path) as handle:
                return RunConfig.from_json(handle.read())
        except (ValueError, TypeError) as error:
            raise UserError(f"{self.config_path} is not a glow_nxn run description ({error}); "
                            f"point --workdir at a training run's folder") from error

    def append_metrics(self, record):
        """Append one JSON object as a line of ``metrics.jsonl``."""
        with writing(self.metrics_path):
            os.makedirs(self.path, exist_ok=True)
            with open(self.metrics_path, "a") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def read_metrics(self):
        """The records of ``metrics.jsonl`` in order, a list of dicts (empty if there is none)."""
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    # ---- checkpoints -------------------------------------------------------------------------

    def checkpoint_manager(self, checkpoint, keep):
        """The manager that writes ``checkpoint`` as ``checkpoints/ckpt-<step>``, keeping ``keep``."""
        return tf.train.CheckpointManager(checkpoint, self.checkpoint_dir, max_to_keep=keep)

    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def save_checkpoint(self, manager, step):
        """Write checkpoint ``ckpt-<step>`` through ``manager``; returns its path.

        :class:`WriteFailed` if the write fails (a full disk): the partial files are removed,
        so the index and the previous checkpoints are as they were.
        """
        try:
            return manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            path = os.path.join(self.checkpoint_dir, f"ckpt-{step}")
            if path not in manager.checkpoints:
                for leftover in tf.io.gfile.glob(f"{path}.*") + tf.io.gfile.glob(f"{path}_temp*"):
                    if os.path.isdir(leftover):
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.remove(leftover)
            previous = manager.latest_checkpoint
            after = (f"the newest checkpoint, {previous}, is intact: free space, then run the "
                     f"same command to resume from it" if previous else
                     "there is no earlier checkpoint: free space, then run the same command")
            raise WriteFailed(f"checkpoint of step {step} could not be written to "
                              f"{self.checkpoint_dir} ({first_line(error)}); {after}") from error

    def restore_newest(self, checkpoint, log=print):
        """Restore ``checkpoint`` from the newest checkpoint that can be read; its path, or None
        if there is no checkpoint.

        Newer ones that cannot be read are moved to ``checkpoints/unreadable/`` (one ``log``
        line each) and dropped from the index, so the run continues from the one that was
        read. UserError if none can be read; then nothing is moved.
        """
        state = tf.train.get_checkpoint_state(self.checkpoint_dir)
        if state is None:
            return None
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        times = (list(state.all_model_checkpoint_timestamps)
                 or [state.last_preserved_timestamp] * len(paths))
        failures = []
        for path in reversed(paths):
            try:
                self.restore(checkpoint, path)
            except UserError as error:
                failures.append((path, error.__cause__))
                continue
            if failures:
                self._set_aside(failures, list(zip(paths, times)), state, log)
            return path
        raise UserError(f"none of the {len(paths)} checkpoints in {self.checkpoint_dir} can be "
                        f"read (the newest, {paths[-1]}: {first_line(failures[0][1])}); move "
                        f"them away to start afresh")

    def _set_aside(self, failures, listed, state, log):
        """Move the ``failures`` (path, error) to ``unreadable/``; index the rest of ``listed``
        (path, timestamp), oldest first, as a CheckpointManager would have."""
        unreadable = os.path.join(self.checkpoint_dir, UNREADABLE_DIR)
        with writing(unreadable):
            os.makedirs(unreadable, exist_ok=True)
            for path, error in failures:
                for name in tf.io.gfile.glob(f"{path}.*"):
                    os.replace(name, os.path.join(unreadable, os.path.basename(name)))
                log(f"warning: checkpoint {path} cannot be read ({first_line(error)}); moved to "
                    f"{unreadable}, resuming from an older one")
        gone = {path for path, _ in failures}
        kept = [(path, time) for path, time in listed if path not in gone]
        # TensorFlow 2 has no public writer of the index but this v1 one (what the manager uses).
        tf.compat.v1.train.update_checkpoint_state(
            self.checkpoint_dir, kept[-1][0], all_model_checkpoint_paths=[p for p, _ in kept],
            all_model_checkpoint_timestamps=[t for _, t in kept],
            last_preserved_timestamp=state.last_preserved_timestamp)

    def resolve_checkpoint(self, name=None):
        """The checkpoint path to load: ``name`` (a path or a ``ckpt-N`` here) or the newest.

        UserError when there is none, naming the folder that was searched.
        """
        if name:
            path = name if os.path.dirname(name) else os.path.join(self.checkpoint_dir, name)
            if not tf.io.gfile.glob(path + ".index"):
                raise UserError(f"no checkpoint {path}; list {self.checkpoint_dir} for the "
                                f"available ckpt-N names")
            return path
        latest = self.latest_checkpoint()
        if latest is None:
            raise UserError(f"no checkpoint in {self.checkpoint_dir}; train first with "
                            f"train.py --workdir={self.path}")
        return latest

    def publish(self, destination, checkpoint_name=None):
        """Copy this run, for others to use, into the new run folder ``destination``: its
        ``config.json`` and one checkpoint (``checkpoint_name``, default the newest) with the
        model, the progress and the weight average, without the optimizer's slots (two thirds
        of Adam's checkpoint). evaluate.py, sample.py, export.py and :func:`glow_nxn.load` read
        it like any run. Returns the :class:`RunFolder` of ``destination``; UserError if it
        already exists.
        """
        target = RunFolder(destination)
        if os.path.exists(target.path):
            raise UserError(f"{target.path} exists: publish into a new folder")
        self.check_is_a_run()
        run_config = self.load_config()
        path = self.resolve_checkpoint(checkpoint_name)
        model, state = Glow(run_config.model), TrainState()
        average = (WeightAverage(model.trainable_variables, 0.0) if self.has_average(path)
                   else None)
        published = training_checkpoint(model, state, average=average)
        self.restore(published, path)
        target.save_config(run_config)
        target.save_checkpoint(target.checkpoint_manager(published, keep=1),
                               int(state.step.numpy()))
        return target

    def carry(self, destination):
        """Copy this run, to be resumed on another machine, into ``destination`` (replaced if
        it exists): ``config.json``, ``metrics.jsonl`` and the newest checkpoint whole (model,
        optimizer, weight average, progress), without older checkpoints, summaries, evaluations
        or samples. train.py with the run's flags and ``--workdir`` a copy of it continues the
        run exactly (a long run outlives the machine it started on this way). It is written
        beside ``destination`` and renamed into place, so an interrupted carry leaves the old
        one whole. Returns the carried checkpoint's step.
        """
        self.check_is_a_run()
        newest = self.resolve_checkpoint()
        name = os.path.basename(newest)
        staging = destination.rstrip(os.sep) + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        target = RunFolder(staging)
        os.makedirs(target.checkpoint_dir)
        for path in (self.config_path, self.metrics_path):
            shutil.copy(path, staging)
        for path in tf.io.gfile.glob(newest + ".*"):
            shutil.copy(path, target.checkpoint_dir)
        tf.compat.v1.train.update_checkpoint_state(target.checkpoint_dir, name,
                                                   all_model_checkpoint_paths=[name])
        shutil.rmtree(destination, ignore_errors=True)
        os.rename(staging, destination)
        return int(name.rsplit("-", 1)[1])

    @staticmethod
    def has_average(path):
        """Whether the checkpoint at ``path`` holds a weight average."""
        return any(name.startswith("ema/") for name, _ in tf.train.list_variables(path))

    @staticmethod
    def restore(checkpoint, path):
        """Restore ``checkpoint`` from ``path``; UserError if unreadable.

        A damaged file fails inside TensorFlow's reader in many ways (OpError, IndexError, ...),
        so any failure is reported as an unreadable checkpoint, with the reader's first line.
        """
        try:
            checkpoint.read(path).assert_existing_objects_matched().expect_partial()
        except Exception as error:  # noqa: BLE001 (see the docstring)
            raise UserError(f"checkpoint {path} cannot be read ({first_line(error)}); name "
                            f"an older one with --checkpoint (train.py sets it aside and resumes "
                            f"from an older one)") from error

    def load_model(self, checkpoint_name=None, weights="ema"):
        """A trained model, as a :class:`LoadedModel`.

        ``weights="ema"`` loads the weight average when the checkpoint has one (else the raw
        weights, and ``LoadedModel.weights`` says so); ``"raw"`` loads the trained weights.
        """
        if weights not in WEIGHTS:
            raise UserError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHTS)}")
        self.check_is_a_run()
        run_config = self.load_config()
        path = self.resolve_checkpoint(checkpoint_name)
        model, state = Glow(run_config.model), TrainState()
        try:
            use_average = weights == "ema" and self.has_average(path)
        except Exception:  # noqa: BLE001 (an unreadable index: restore() reports it)
            use_average = False
        average = WeightAverage(model.trainable_variables, 0.0) if use_average else None
        self.restore(training_checkpoint(model, state, average=average), path)
        if average is not None:
            average.copy_to_model()
        return LoadedModel(model=model, run_config=run_config, step=int(state.step.numpy()),
                           checkpoint=path, weights="ema" if use_average else "raw")
