"""Command-line flags of train.py, evaluate.py and sample.py, and their frozen configs.

Flags live only here: each script defines the groups it needs, and this module turns the parsed
flags into :class:`glow_nxn.config.ModelConfig` / :class:`glow_nxn.training.TrainConfig`; the
library never reads a flag. Batch-size flags say whether they are per replica (per process) or
global. :func:`run` gives every script the same error handling: a user's mistake prints one line
``<script>: error: <problem and fix>`` and exits 2, with no traceback.
"""
import os
import sys

# Before TensorFlow loads: its C++ log lines (oneDNN and CUDA notices on a CPU machine) would
# bury the scripts' own output; failures still surface as Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)


def _import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 muted: TF 2.18's CUDA plugins print "Unable to
    register cuDNN factory" lines from C++ before any log level applies. An import error still
    raises, with its message, after stderr is restored."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()
from absl import app, flags, logging  # noqa: E402

from glow_nxn import config as model_configs  # noqa: E402
from glow_nxn.errors import UserError, as_user_error  # noqa: E402

FLAGS = flags.FLAGS


def define_model_flags():
    """--preset and the per-field overrides of the ModelConfig it names."""
    flags.DEFINE_string("preset", "mnist",
                        f"model preset: {', '.join(sorted(model_configs.PRESETS))}")
    flags.DEFINE_integer("levels", None, "override: number of levels L")
    flags.DEFINE_integer("steps_per_level", None, "override: flow steps per level K")
    flags.DEFINE_integer("hidden_width", None, "override: coupling network width")
    flags.DEFINE_string("mixing", None, "override: mixing layer (nxn is the paper's), one of "
                        "the names in glow_nxn.layers.MIXINGS")
    flags.DEFINE_string("coupling", None, "override: affine or additive")
    flags.DEFINE_boolean("learn_top", None, "override: learn the top prior")
    flags.DEFINE_integer("n_bits", None, "override: bits per channel the model scores (1..8)")
    flags.DEFINE_string("network_dtype", None, "override: float32, or bfloat16 for mixed "
                        "precision in the coupling networks")
    flags.DEFINE_integer("seed", 0, "seed of the initial weights, data order and noise")


def define_data_flags(default_dataset="mnist"):
    """--dataset, --data_dir, --manual_dir; evaluate.py and sample.py default them (None) to
    the training run's."""
    flags.DEFINE_string("dataset", default_dataset, "mnist, cifar10, imagenet32, imagenet64, "
                        "celeba_hq_256, or a folder of PNG/JPEG images (see glow_nxn.data)")
    flags.DEFINE_string("data_dir", None, "where tensorflow-datasets keeps prepared datasets")
    flags.DEFINE_string("manual_dir", None, "the folder of manually downloaded dataset files "
                        "(default for mnist: the repository's data/mnist)")


def data_options(run_settings):
    """dataset, data_dir and manual_dir: the flags where given, else the training run's."""
    return {name: getattr(FLAGS, name) or run_settings.get(name)
            for name in ("dataset", "data_dir", "manual_dir")}


def define_train_flags():
    flags.DEFINE_string("workdir", None, "folder for checkpoints, config.json and summaries; "
                        "an existing run there is resumed")
    flags.DEFINE_integer("per_replica_batch_size", 64, "images per process per step (the "
                         "global batch is this times the number of processes)")
    flags.DEFINE_integer("init_batch_size", 256, "images per process for the data-dependent "
                         "ActNorm init")
    flags.DEFINE_enum("optimizer", "adam", ["adam", "adamax"], "adam (the paper) or adamax "
                      "(Glow)")
    flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate")
    flags.DEFINE_boolean("scale_lr_by_workers", False, "multiply the learning rate by the "
                         "number of processes")
    flags.DEFINE_integer("warmup_steps", 500, "linear learning-rate warm-up, in updates")
    flags.DEFINE_float("grad_clip_norm", 0.0, "clip gradients to this global norm (0: off)")
    flags.DEFINE_integer("train_steps", 100_000, "stop after this many steps")
    flags.DEFINE_float("max_train_seconds", 0.0, "also stop after this much training time "
                       "(0: no limit); a later run resumes")
    flags.DEFINE_integer("log_every_steps", 50, "progress line and summaries every N steps")
    flags.DEFINE_integer("checkpoint_every_steps", 1000, "checkpoint every N steps")
    flags.DEFINE_integer("keep_checkpoints", 3, "keep the newest N checkpoints")
    flags.DEFINE_integer("eval_every_steps", 2000, "test bits/dim and samples every N steps")
    flags.DEFINE_integer("eval_max_batches", 0, "batches per process for the periodic test "
                         "evaluation (0: the whole test split)")
    flags.DEFINE_integer("eval_batch_size", 256, "evaluation images per process per batch")
    flags.DEFINE_integer("max_consecutive_nonfinite", 20, "stop after this many non-finite "
                         "losses in a row")
    flags.DEFINE_integer("augment_shift", 0, "random-shift augmentation by up to N pixels "
                         "(Glow used it on CIFAR-10; 0: off)")
    flags.DEFINE_integer("shuffle_buffer", 10_000, "examples in the shuffle buffer of the "
                         "training data (1: the stored order)")
    flags.DEFINE_boolean("jit_compile", False, "compile the training step with XLA")


def define_restore_flags():
    flags.DEFINE_string("workdir", None, "the folder train.py wrote")
    flags.DEFINE_string("checkpoint", None, "a ckpt-N in the workdir or a checkpoint path "
                        "(default: the newest)")


def require_workdir():
    """UserError unless --workdir was given (evaluate.py and sample.py read a training run)."""
    if not FLAGS.workdir:
        raise UserError("--workdir is required: the folder train.py wrote")


def model_config():
    """The ModelConfig of --preset with the override flags applied."""
    overrides = {name: getattr(FLAGS, name) for name in (
        "levels", "steps_per_level", "hidden_width", "mixing", "coupling", "learn_top",
        "n_bits", "network_dtype") if getattr(FLAGS, name) is not None}
    with as_user_error():
        return model_configs.preset(FLAGS.preset, seed=FLAGS.seed, **overrides)


def train_config():
    """The TrainConfig of the train flags."""
    from glow_nxn.training import TrainConfig

    if not FLAGS.workdir:
        raise UserError("--workdir is required: the folder for checkpoints and summaries")
    names = [field for field in TrainConfig.__dataclass_fields__ if field in FLAGS]
    with as_user_error():
        return TrainConfig(**{name: getattr(FLAGS, name) for name in names})


def run(main):
    """``absl.app.run(main)``, with a :class:`UserError` printed as one line and exit code 2."""
    script = os.path.basename(sys.argv[0])

    def guarded(argv):
        # tensorflow-datasets logs every dataset it opens at INFO; the scripts print their own.
        logging.set_verbosity(logging.WARNING)
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; every option is a --flag")
            return main(argv)
        except UserError as error:
            print(f"{script}: error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
