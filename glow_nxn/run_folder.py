"""A training run's folder (``--workdir``): its layout, its config, its checkpoints, its results.

Only this module spells a path inside a run folder::

    <workdir>/
      config.json            the RunConfig (model, data, train), written by rank 0 at the start
      checkpoints/ckpt-N.*   model, optimizer, weight average and progress at step N (newest few)
      checkpoints/checkpoint the index TensorFlow reads to find the newest
      summaries/             TensorBoard event files
      metrics.jsonl          one JSON object per progress line and per evaluation
      eval.json              evaluate.py's result
      samples/               sample.py's PNGs

Files are written whole or not at all: JSON through a temporary file and ``os.replace``;
checkpoints by ``tf.train.CheckpointManager``, which points its index at a new checkpoint only
after every file of it is written. A checkpoint is built by :func:`training_checkpoint`, the same
way for writing and for reading.
"""
import dataclasses
import json
import os

import tensorflow as tf

from glow_nxn.averaging import WeightAverage
from glow_nxn.config import WEIGHTS, RunConfig
from glow_nxn.errors import UserError
from glow_nxn.model import Glow

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
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
    """Write ``payload`` as JSON to ``path``, replacing any old file only once fully written."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


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
        """UserError if the path exists but is not a folder (it would be written into)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError(f"--workdir {self.path} is a file, not a folder: name a new or "
                            f"existing run folder")

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
        os.makedirs(self.path, exist_ok=True)
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    # ---- checkpoints -------------------------------------------------------------------------

    def checkpoint_manager(self, checkpoint, keep):
        """The manager that writes ``checkpoint`` as ``checkpoints/ckpt-<step>``, keeping ``keep``."""
        return tf.train.CheckpointManager(checkpoint, self.checkpoint_dir, max_to_keep=keep)

    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.checkpoint_dir)

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
            text = str(error).strip()
            first_line = text.splitlines()[0] if text else type(error).__name__
            raise UserError(f"checkpoint {path} cannot be read ({first_line}); delete it to "
                            f"fall back to an older one, or name another with --checkpoint") \
                from error

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
