"""Command-line flags of train.py, evaluate.py, sample.py and export.py, and their frozen configs.

Flags live only here: each script defines the groups it needs, and this module turns the parsed
flags into one :class:`glow_nxn.config.RunConfig` (model, data, train); the library never reads a
flag. Choices are enums built from the config's names, so ``--help`` lists them. Batch-size flags
say whether they are per replica (per process) or global. :func:`run` gives every script the same
error handling: an expected failure prints one line ``<script>: error: <problem and fix>`` and
exits with its code (2 for a user's mistake, 3 for divergence; glow_nxn/errors.py), with no
traceback.
"""
import dataclasses
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

from glow_nxn import config as run_configs  # noqa: E402
from glow_nxn.errors import GlowError, UserError, as_user_error  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402

FLAGS = flags.FLAGS
# The defaults of train.py's flags are the configs' own: one place states each.
_TRAIN = {field.name: field.default for field in dataclasses.fields(run_configs.TrainConfig)}
_DATA = {field.name: field.default for field in dataclasses.fields(run_configs.DataConfig)}
_MODEL_OVERRIDES = ("levels", "steps_per_level", "hidden_width", "mixing", "coupling",
                    "learn_top", "n_bits", "network_dtype", "logit_alpha",
                    "dequantizer_width")


def define_model_flags():
    """--preset and the per-field overrides of the ModelConfig it names."""
    flags.DEFINE_enum("preset", "mnist", sorted(run_configs.PRESETS), "model preset")
    flags.DEFINE_integer("levels", None, "override: number of levels L")
    flags.DEFINE_integer("steps_per_level", None, "override: flow steps per level K")
    flags.DEFINE_integer("hidden_width", None, "override: coupling network width")
    flags.DEFINE_enum("mixing", None, list(run_configs.MIXING_NAMES),
                      "override: the mixing layer (nxn is the paper's; docs/MIXING.md)")
    flags.DEFINE_enum("coupling", None, list(run_configs.COUPLING_NAMES), "override: coupling")
    flags.DEFINE_boolean("learn_top", None, "override: learn the top prior")
    flags.DEFINE_integer("n_bits", None, "override: bits per channel the model scores (1..8)")
    flags.DEFINE_float("logit_alpha", None, "override: RealNVP's logit transform of the input "
                       "with this alpha in (0, 0.5) before the first level; 0: none")
    flags.DEFINE_integer("dequantizer_width", None, "override: a variational dequantiser "
                         "(Flow++) with a network of this width in front of the flow; 0: "
                         "uniform dequantisation")
    flags.DEFINE_enum("network_dtype", None, list(run_configs.NETWORK_DTYPES),
                      "override: arithmetic of the coupling networks (bfloat16: mixed precision)")
    flags.DEFINE_integer("seed", _TRAIN["seed"], "seed of the initial weights, data order and "
                         "noise")


def define_data_flags(for_training=True):
    """--dataset, --data_dir, --manual_dir, --on_bad_image (evaluate.py and sample.py default
    them to the training run's); for training also the stream's --shuffle_buffer and
    --augment_shift."""
    flags.DEFINE_string("dataset", None, "mnist, cifar10, imagenet32, imagenet64, "
                        "celeba_hq_256, or folder:<directory of PNG/JPEG images> (see "
                        "glow_nxn/data.py); default: the preset's dataset" if for_training else
                        "default: the training run's")
    flags.DEFINE_string("data_dir", None, "where tensorflow-datasets keeps prepared datasets")
    flags.DEFINE_string("manual_dir", None, "the folder of manually downloaded dataset files "
                        "(default for mnist: the repository's data/mnist)")
    flags.DEFINE_enum("on_bad_image", _DATA["on_bad_image"] if for_training else None,
                      list(run_configs.ON_BAD_IMAGE), "a file of a folder: dataset that cannot "
                      "be decoded: skip it (a warning names it) or stop with an error naming it"
                      + ("" if for_training else "; default: the training run's"))
    if for_training:
        flags.DEFINE_integer("shuffle_buffer", _DATA["shuffle_buffer"], "examples in the shuffle "
                             "buffer of the training data (1: the stored order; 0: the whole "
                             "split for a folder, 10,000 for a named dataset)")
        flags.DEFINE_integer("augment_shift", _DATA["augment_shift"], "random-shift augmentation "
                             "by up to N pixels (Glow used it on CIFAR-10; 0: off)")


def define_train_flags():
    flags.DEFINE_string("workdir", None, "folder for checkpoints, config.json, metrics and "
                        "summaries; an existing run there is resumed")
    flags.DEFINE_integer("per_replica_batch_size", _TRAIN["per_replica_batch_size"], "images per "
                         "process per step (the global batch is this times the number of "
                         "processes)")
    flags.DEFINE_integer("init_batch_size", _TRAIN["init_batch_size"], "images per process for "
                         "the data-dependent ActNorm init")
    flags.DEFINE_enum("optimizer", _TRAIN["optimizer"], list(run_configs.OPTIMIZERS), "adam (the "
                      "paper) or adamax (Glow)")
    flags.DEFINE_float("learning_rate", _TRAIN["learning_rate"], "peak learning rate (the paper: "
                       "1e-3, which its flagfiles in configs/ keep)")
    flags.DEFINE_boolean("scale_lr_by_workers", _TRAIN["scale_lr_by_workers"], "multiply the "
                         "learning rate by the number of processes")
    flags.DEFINE_integer("warmup_steps", _TRAIN["warmup_steps"], "linear learning-rate warm-up, "
                         "in steps, at most --warmup_share of the run")
    flags.DEFINE_float("warmup_share", _TRAIN["warmup_share"], "the largest share of the run's "
                       "steps the warm-up may take (of a time-bounded run: the steps its pace "
                       "will take; 1: up to the whole run)")
    flags.DEFINE_enum("lr_schedule", _TRAIN["lr_schedule"], list(run_configs.LR_SCHEDULES),
                      "cosine: decay to --lr_floor over --train_steps or --max_train_seconds; "
                      "constant: the paper's")
    flags.DEFINE_float("lr_floor", _TRAIN["lr_floor"], "the cosine's final learning rate, as a "
                       "fraction of the peak")
    flags.DEFINE_float("grad_clip_norm", _TRAIN["grad_clip_norm"], "clip gradients to this global "
                       "norm (0: off)")
    flags.DEFINE_float("ema_decay", _TRAIN["ema_decay"], "decay of the weights' moving average "
                       "that evaluation and sampling use (0: off)")
    flags.DEFINE_integer("train_steps", _TRAIN["train_steps"], "stop after this many steps; the "
                         "cosine schedule spans them")
    flags.DEFINE_float("max_train_seconds", _TRAIN["max_train_seconds"], "training time budget of "
                       "the whole run, summed over resumptions (0: none); the cosine schedule "
                       "spans it")
    flags.DEFINE_float("spike_threshold", _TRAIN["spike_threshold"], "a loss spike: the mean of "
                       "the last --spike_window losses this many bits/dim above its lowest (0: "
                       "off)")
    flags.DEFINE_integer("spike_window", _TRAIN["spike_window"], "steps the loss-spike detector "
                         "averages")
    flags.DEFINE_integer("max_recoveries", _TRAIN["max_recoveries"], "roll-backs after a spike or "
                         "non-finite losses before training stops")
    flags.DEFINE_float("recovery_lr_factor", _TRAIN["recovery_lr_factor"], "learning-rate factor "
                       "after each roll-back")
    flags.DEFINE_integer("max_consecutive_nonfinite", _TRAIN["max_consecutive_nonfinite"],
                         "non-finite losses in a row that count as divergence")
    flags.DEFINE_integer("log_every_steps", _TRAIN["log_every_steps"], "progress line, summaries "
                         "and metrics.jsonl every N steps")
    flags.DEFINE_integer("checkpoint_every_steps", _TRAIN["checkpoint_every_steps"], "checkpoint "
                         "every N steps")
    flags.DEFINE_integer("keep_checkpoints", _TRAIN["keep_checkpoints"], "keep the newest N "
                         "checkpoints")
    flags.DEFINE_integer("eval_every_steps", _TRAIN["eval_every_steps"], "test bits/dim and "
                         "samples every N steps (0: never)")
    flags.DEFINE_integer("eval_max_batches", _TRAIN["eval_max_batches"], "batches per process for "
                         "the periodic test evaluation (0: the whole test split)")
    flags.DEFINE_integer("eval_batch_size", _TRAIN["eval_batch_size"], "evaluation images per "
                         "process per batch")
    flags.DEFINE_enum("eval_weights", _TRAIN["eval_weights"], list(run_configs.WEIGHTS), "weights "
                      "of the periodic evaluation: ema (the moving average) or raw")
    flags.DEFINE_integer("num_samples", _TRAIN["num_samples"], "samples in the periodic sample "
                         "grid")
    flags.DEFINE_float("sample_temperature", _TRAIN["sample_temperature"], "temperature of the "
                       "periodic sample grid")
    flags.DEFINE_boolean("jit_compile", _TRAIN["jit_compile"], "compile the training step with "
                         "XLA")
    flags.DEFINE_boolean("remat", _TRAIN["remat"], "recompute each flow step's activations in the "
                         "backward pass instead of keeping them: less memory per image, about "
                         "one more forward pass per step, the same gradients "
                         "(docs/PERFORMANCE.md)")
    flags.DEFINE_boolean("class_conditional", False, "a class-conditional model: every "
                         "latent's prior depends on the image's class (Glow's ycond; the "
                         "dataset's labels, or a folder's <split>/<class>/ subdirectories)")
    flags.DEFINE_float("class_weight", _TRAIN["class_weight"], "with --class_conditional: add a "
                       "classifier on the top latent, its cross-entropy in bits per image "
                       "weighted by this (0: no classifier)")
    flags.DEFINE_float("step_timeout_seconds", _TRAIN["step_timeout_seconds"], "end the job (exit "
                       "70) when no training step completes for this long, e.g. because a process "
                       "hangs; it must exceed a step plus an evaluation plus a checkpoint write "
                       "(0: never)")
    flags.DEFINE_float("first_step_timeout_seconds", _TRAIN["first_step_timeout_seconds"],
                       "the same for the first step of a run or resume, which traces (and with "
                       "--jit_compile compiles) the step function (0: never)")


def define_restore_flags():
    flags.DEFINE_string("workdir", None, "the folder train.py wrote")
    flags.DEFINE_string("checkpoint", None, "a ckpt-N in the workdir or a checkpoint path "
                        "(default: the newest)")
    flags.DEFINE_enum("weights", "ema", list(run_configs.WEIGHTS), "ema: the weights' moving "
                      "average when the checkpoint has one; raw: the trained weights")


def run_folder():
    """The RunFolder of --workdir; UserError unless it was given."""
    if not FLAGS.workdir:
        raise UserError("--workdir is required: the folder of the training run")
    return RunFolder(FLAGS.workdir)


def run_config():
    """The RunConfig of train.py's flags: --preset with the overrides, data and training."""
    overrides = {name: getattr(FLAGS, name) for name in _MODEL_OVERRIDES
                 if getattr(FLAGS, name) is not None}
    dataset = FLAGS.dataset or FLAGS.preset  # every preset is named after its dataset
    with as_user_error():
        model = run_configs.preset(FLAGS.preset, seed=FLAGS.seed, **overrides)
        data = run_configs.DataConfig(**_flag_values(run_configs.DataConfig, dataset=dataset))
        train = run_configs.TrainConfig(**_flag_values(run_configs.TrainConfig))
        _data().check_paths(data)
        _data().check_image_shape(dataset, model.image_shape)
        if FLAGS.class_conditional:
            model = dataclasses.replace(model, num_classes=_data().num_classes(dataset),
                                        classifier=FLAGS.class_weight > 0)
        elif FLAGS.class_weight:
            raise ValueError("--class_weight weighs the classifier of a class-conditional "
                             "model: add --class_conditional, or drop --class_weight")
        return run_configs.RunConfig(model=model, data=data, train=train)


def restored_data_config(saved):
    """The DataConfig of the training run ``saved`` (a RunConfig) with --dataset/--data_dir/
    --manual_dir/--on_bad_image applied; UserError if its model is class-conditional and another
    --dataset does not have as many classes (it scores and draws each image given its class)."""
    given = {name: getattr(FLAGS, name)
             for name in ("dataset", "data_dir", "manual_dir", "on_bad_image")
             if getattr(FLAGS, name)}
    with as_user_error():
        config = dataclasses.replace(saved.data, **given)
        _data().check_paths(config)
        _data().check_image_shape(config.dataset, saved.model.image_shape)
    classes = saved.model.num_classes
    if classes and config.dataset != saved.data.dataset:
        try:
            same = _data().num_classes(config.dataset) == classes
        except ValueError:  # no class for some of its images
            same = False
        if not same:
            raise UserError(f"the run's model is conditioned on the {classes} classes of "
                            f"{saved.data.dataset}, and --dataset={config.dataset} does not give "
                            f"every image one of {classes} classes: use the run's own dataset "
                            f"(drop --dataset)")
    return config


def _flag_values(cls, **given):
    names = [field.name for field in dataclasses.fields(cls) if field.name in FLAGS]
    return {**{name: getattr(FLAGS, name) for name in names}, **given}


def _data():
    # Imported when first needed: data.py loads tensorflow-datasets, which takes seconds, and
    # --help and most mistakes do not need it.
    from glow_nxn import data

    return data


def check_output_file(name):
    """UserError unless --``name``, if given, can be written as a file (before any work)."""
    if getattr(FLAGS, name):
        with as_user_error():
            run_configs.check_file_path(f"--{name}", getattr(FLAGS, name))


def check_output_folder(name):
    """UserError unless --``name``, if given, is a folder or can be made one."""
    if getattr(FLAGS, name):
        with as_user_error():
            run_configs.check_folder_path(f"--{name}", getattr(FLAGS, name))


def exit_now(error):
    """Print a :class:`GlowError` as :func:`run` does and end the process at once, skipping the
    interpreter's shutdown: for a stop on a signal (horovodrun allows 5 s) and for a watchdog
    whose main thread is stuck (``os.write`` and ``os._exit`` take no lock that it could hold)."""
    os.write(2, f"{os.path.basename(sys.argv[0])}: {error.label}: {error}\n".encode())
    os._exit(error.exit_code)


def run(main):
    """``absl.app.run(main)``, with an expected failure (:class:`GlowError`: a user's mistake, a
    diverged run) printed as one line and its exit code (glow_nxn/errors.py)."""
    script = os.path.basename(sys.argv[0])

    def guarded(argv):
        # tensorflow-datasets logs every dataset it opens at INFO; the scripts print their own.
        logging.set_verbosity(logging.WARNING)
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; every option is a --flag")
            return main(argv)
        except GlowError as error:
            print(f"{script}: {error.label}: {error}", file=sys.stderr, flush=True)
            sys.exit(error.exit_code)

    def parse(argv):
        # absl prints a parsing error over two lines and exits 1; a bad flag is a user's
        # mistake like any other.
        try:
            return FLAGS(argv)
        except flags.Error as error:
            # absl words some of them "ERROR:: ...": the line says "error:" once.
            message = str(error).removeprefix("ERROR:: ")
            print(f"{script}: error: {message}", file=sys.stderr)
            sys.exit(UserError.exit_code)

    app.run(guarded, flags_parser=parse)
