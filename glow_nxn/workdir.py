"""The layout of a training run's ``--workdir``, and loading a trained model from one.

::

    workdir/
      config.json            the ModelConfig and the training run's settings (written by rank 0)
      checkpoints/ckpt-N.*   model, optimizer and step at step N; the newest few are kept
      checkpoints/checkpoint the index TensorFlow reads to find the newest
      summaries/             TensorBoard event files (train and test bits/dim, samples, ...)
      eval.json, samples/    written by evaluate.py and sample.py

Files are written whole or not at all: JSON through a temporary file and ``os.replace``;
checkpoints by ``tf.train.CheckpointManager``, which points its index at a new checkpoint only
after every file of it is written.
"""
import json
import os

import tensorflow as tf

from glow_nxn.config import ModelConfig
from glow_nxn.errors import UserError
from glow_nxn.model import Glow

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def write_json_atomically(path, payload):
    """Write ``payload`` as JSON to ``path``, replacing any old file only once fully written."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def save_config(workdir, model_config, run_settings):
    """Write ``config.json``: ``{"model": ModelConfig fields, "run": run_settings}``."""
    os.makedirs(workdir, exist_ok=True)
    write_json_atomically(os.path.join(workdir, CONFIG_FILE),
                          {"model": json.loads(model_config.to_json()), "run": run_settings})


def load_model_config(workdir):
    """The :class:`ModelConfig` saved in ``workdir/config.json``; None if there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            return ModelConfig.from_json(json.dumps(json.load(handle)["model"]))
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a glow_nxn config ({error}); point --workdir at a "
                        f"training run's folder") from error


def load_run_settings(workdir):
    """The training run's settings saved in ``workdir/config.json`` (``{}`` if none)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle).get("run", {})


def checkpoint_dir(workdir):
    return os.path.join(workdir, CHECKPOINT_DIR)


def restore(checkpoint, path):
    """Restore ``checkpoint`` (a ``tf.train.Checkpoint``) from ``path``; UserError if unreadable.

    A damaged file fails inside TensorFlow's reader in many ways (OpError, IndexError, ...), so
    any failure is reported as an unreadable checkpoint, with the reader's first line.
    """
    try:
        checkpoint.read(path).assert_existing_objects_matched().expect_partial()
    except Exception as error:  # noqa: BLE001 (see the docstring)
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise UserError(f"checkpoint {path} cannot be read ({first_line}); delete it to fall "
                        f"back to an older one, or name another with --checkpoint") from error


def resolve_checkpoint(workdir, name=None):
    """The checkpoint path to load: ``name`` (a path or a ``ckpt-N`` in the workdir) or the newest.

    UserError when there is none, naming the folder that was searched.
    """
    if name:
        path = name if os.path.dirname(name) else os.path.join(checkpoint_dir(workdir), name)
        if not tf.io.gfile.glob(path + ".index"):
            raise UserError(f"no checkpoint {path}; list {checkpoint_dir(workdir)} for the "
                            f"available ckpt-N names")
        return path
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if latest is None:
        raise UserError(f"no checkpoint in {checkpoint_dir(workdir)}; train first with "
                        f"train.py --workdir={workdir}")
    return latest


def load_trained_model(workdir, checkpoint_name=None):
    """``(model, step, checkpoint_path)`` from a training run's ``workdir`` (model weights only)."""
    if not os.path.isdir(workdir):
        raise UserError(f"--workdir {workdir} does not exist; pass the folder train.py wrote")
    config = load_model_config(workdir)
    if config is None:
        raise UserError(f"{workdir} has no {CONFIG_FILE}; pass the folder train.py wrote")
    path = resolve_checkpoint(workdir, checkpoint_name)
    model = Glow(config)
    step = tf.Variable(0, dtype=tf.int64)
    restore(tf.train.Checkpoint(model=model, step=step), path)
    return model, int(step.numpy()), path
