"""The typed description of a run: model, data and training, validated once, saved whole.

A run is a :class:`RunConfig` of three frozen dataclasses:

* :class:`ModelConfig`, the architecture (saved with every checkpoint's run, required to load one);
* :class:`DataConfig`, where the images come from and how the training stream is drawn;
* :class:`TrainConfig`, the optimisation recipe and the loop's cadence.

This module is a leaf: it imports neither TensorFlow nor any other part of the package, so a run's
description can be read, checked and printed anywhere. Every value is checked once, here, by the
``check_*`` helpers, which raise ``ValueError`` naming the field, the value and what is allowed
(entry scripts turn that into a one-line error); the scripts' own flags and paths go through the
same helpers before any work starts. ``flags.py`` builds a RunConfig from the command
line; :mod:`glow_nxn.run_folder` saves it as ``config.json`` and loads it back, typed.
"""
import dataclasses
import json
import os

# The registries' names (glow_nxn.layers.MIXINGS / COUPLINGS hold the layers; a test keeps the
# two in step), so that a config can be checked without importing TensorFlow.
MIXING_NAMES = ("nxn", "nxn_lu", "conv1x1", "conv1x1_lu", "reverse", "shuffle", "shifted_nxn",
                "emerging", "periodic")
COUPLING_NAMES = ("affine", "additive")
NETWORK_DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adam", "adamax")
LR_SCHEDULES = ("cosine", "constant")
WEIGHTS = ("ema", "raw")
# glow_nxn.data.DATASETS holds the named datasets (a test keeps the two in step); any other dataset
# is a folder of images, FOLDER_PREFIX + its directory.
DATASET_NAMES = ("mnist", "cifar10", "imagenet32", "imagenet64", "celeba_hq_256")
FOLDER_PREFIX = "folder:"
# What a folder dataset does with a file it cannot decode (glow_nxn/data.py).
ON_BAD_IMAGE = ("skip", "stop")
MAX_SEED = 2**31 - 1
# Counts end up in TensorFlow int64s.
MAX_INT = 2**63 - 1


# ---- the one set of validators --------------------------------------------------------------

def check_int(name, value, minimum=None, maximum=None):
    """ValueError unless ``value`` is an int (not a bool) in ``[minimum, maximum]`` that fits
    TensorFlow's int64."""
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        words = _range_words("an integer", minimum, maximum)
        if isinstance(value, int) and abs(value) > MAX_INT:
            words += " below 2**63"
        raise ValueError(f"{name} must be {words}, got {value!r}")


def check_positive_int(name, value):
    check_int(name, value, minimum=1)


def check_float(name, value, minimum=None, maximum=None, above=None):
    """ValueError unless ``value`` is a finite number in the range given (``above``: exclusive)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and value == value and abs(value) != float("inf")
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        if above is not None:
            words = f"a number above {above}" + (f" and at most {maximum}"
                                                  if maximum is not None else "")
        else:
            words = _range_words("a number", minimum, maximum)
        raise ValueError(f"{name} must be {words}, got {value!r}")


def check_bool(name, value):
    """ValueError unless ``value`` is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


def check_n_bits(n_bits):
    """ValueError unless ``n_bits`` is an integer in 1..8 (bits per colour channel)."""
    check_int("n_bits", n_bits, 1, 8)


def check_folder_path(name, path):
    """ValueError unless ``path`` is a folder or can be made one: the nearest part of it that
    exists must be a folder (not a file)."""
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.path.isdir(existing):
        raise ValueError(f"{name} {path}: {existing} is a file, not a folder; name a new or "
                         f"existing folder")


def check_file_path(name, path):
    """ValueError unless a file can be written at ``path``: not a folder, in an existing one."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise ValueError(f"{name} {path}: " + ("is a folder" if os.path.isdir(path) else
                                               f"{folder} is not an existing folder")
                         + "; name a file in an existing folder")


def _range_words(kind, minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"{kind} in {minimum}..{maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


# ---- the three parts of a run ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a Glow model's architecture.

    Attributes:
      image_shape: ``(H, W, C)`` of the images; ``H`` and ``W`` divisible by ``2**levels``.
      levels: ``L``, the number of scales (squeeze → K steps → split; no split after the last).
      steps_per_level: ``K``, flow steps (ActNorm → mixing → coupling) per level.
      hidden_width: channels of the coupling networks' hidden layers.
      mixing: the channel-mixing layer of each step (:data:`MIXING_NAMES`); ``nxn`` is the
        paper's invertible n×n convolution, ``nxn_lu`` the same with an LU-parametrised ``W``.
      coupling: ``affine`` or ``additive``.
      learn_top: learn the mean and scale of the top-level prior.
      n_bits: bits per colour channel the model scores (1..8); images are reduced to it.
      seed: seed of the random initial weights (rotations, permutations), ``0..2**31-1``.
      network_dtype: arithmetic of the coupling networks: ``float32``, or ``bfloat16`` for mixed
        precision on GPUs/TPUs that have it (weights, flow and log-dets stay float32).
      logit_alpha: ``α`` of RealNVP's logit transform of the input, ``x ↦ logit(α + (1−2α)(x+½))``
        before the first level (:class:`glow_nxn.layers.Logit`), in ``[0, ½)``; 0 leaves it out
        (Glow and the paper have none).
      num_classes: ``K > 0`` makes the model class-conditional (Glow's ``ycond``): every
        latent's prior depends on the image's class (:class:`glow_nxn.layers.ClassPrior`);
        0 (default) is the unconditional model.
      dequantizer_width: width of the network of a variational dequantiser in front of the
        flow (:class:`glow_nxn.layers.VariationalDequantizer`, Flow++'s variational
        dequantisation as a bijector that keeps every cell); 0 (default) leaves it out: uniform
        dequantisation, as Glow and the paper.
      classifier: a linear classifier of the class from the top latent
        (:class:`glow_nxn.layers.ClassPrior`), trained beside the likelihood with
        :attr:`TrainConfig.class_weight`; needs ``num_classes``.
    """

    image_shape: tuple
    levels: int
    steps_per_level: int
    hidden_width: int = 512
    mixing: str = "nxn"
    coupling: str = "affine"
    learn_top: bool = True
    n_bits: int = 8
    seed: int = 0
    network_dtype: str = "float32"
    logit_alpha: float = 0.0
    num_classes: int = 0
    classifier: bool = False
    dequantizer_width: int = 0

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("dequantizer_width", self.dequantizer_width, minimum=0)
        check_bool("classifier", self.classifier)
        if self.num_classes == 1:
            raise ValueError("num_classes must be 0 (unconditional) or at least 2, got 1: a "
                             "dataset of one class needs no class-conditional model")
        if self.classifier and not self.num_classes:
            raise ValueError("classifier needs a class-conditional model (num_classes > 0)")
        check_choice("mixing", self.mixing, MIXING_NAMES)
        check_choice("coupling", self.coupling, COUPLING_NAMES)
        check_choice("network_dtype", self.network_dtype, NETWORK_DTYPES)
        check_bool("learn_top", self.learn_top)
        for name in ("levels", "steps_per_level", "hidden_width"):
            check_positive_int(name, getattr(self, name))
        check_n_bits(self.n_bits)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_float("logit_alpha", self.logit_alpha, minimum=0.0)
        if self.logit_alpha >= 0.5:
            raise ValueError(f"logit_alpha must be in [0, 0.5) (0: no logit transform), "
                             f"got {self.logit_alpha!r}")
        if len(self.image_shape) != 3 or not all(
                isinstance(d, int) and d >= 1 for d in self.image_shape):
            raise ValueError(f"image_shape must be (H, W, C) of positive integers, "
                             f"got {self.image_shape!r}")
        height, width, _ = self.image_shape
        factor = 2**self.levels
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} does not fit {self.levels} levels: height and width "
                f"must be divisible by 2**levels = {factor}; use fewer levels or another size")

    @property
    def num_dims(self):
        """``D = H·W·C``, the dimensions bits/dim divides by."""
        height, width, channels = self.image_shape
        return height * width * channels


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a run's images come from (see :mod:`glow_nxn.data`) and how training draws them.

    Attributes:
      dataset: a name of :data:`DATASET_NAMES` (:data:`glow_nxn.data.DATASETS`) or
        ``folder:<directory>``.
      data_dir: where tensorflow-datasets keeps prepared datasets (None: its default).
      manual_dir: the folder of manually downloaded files a dataset is prepared from.
      shuffle_buffer: examples in the training stream's shuffle buffer; 1 keeps the stored
        order; 0 (default) chooses: the whole split for a folder (its records are file paths, a
        few bytes each, and a folder is often stored class by class), 10,000 for a named dataset
        (tensorflow-datasets shuffled it when it prepared it, so a window suffices).
      augment_shift: random-shift augmentation of training images by up to this many pixels.
      on_bad_image: what a ``folder:`` dataset does with a file it cannot read or decode:
        ``skip`` it (named in a warning and counted) or ``stop`` the run with an error naming it.
    """

    dataset: str = "mnist"
    data_dir: str = None
    manual_dir: str = None
    shuffle_buffer: int = 0
    augment_shift: int = 0
    on_bad_image: str = "skip"

    def __post_init__(self):
        if not (isinstance(self.dataset, str) and (
                self.dataset in DATASET_NAMES
                or self.dataset.startswith(FOLDER_PREFIX) and self.dataset != FOLDER_PREFIX)):
            raise ValueError(f"unknown dataset {self.dataset!r}; valid: "
                             f"{', '.join(sorted(DATASET_NAMES))}, or {FOLDER_PREFIX}<directory "
                             f"of PNG/JPEG images>")
        check_int("shuffle_buffer", self.shuffle_buffer, minimum=0)
        check_int("augment_shift", self.augment_shift, minimum=0)
        check_choice("on_bad_image", self.on_bad_image, ON_BAD_IMAGE)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: the optimisation recipe (:mod:`glow_nxn.training`) and the loop's cadence.

    Batch sizes are per replica (per process, per GPU); the global batch is
    ``per_replica_batch_size`` times the number of processes.

    The learning rate at update ``t`` is ``learning_rate · min(1, (t+1)/T_w) ·
    decay(progress) · recovery_scale``: ``decay`` is a half cosine from 1 to ``lr_floor`` over the
    run (``lr_schedule="cosine"``) or 1 (``"constant"``); ``progress`` is the larger of
    ``t / train_steps`` and ``seconds / max_train_seconds`` (when a time budget is set), so a
    time-bounded run ends annealed. The warm-up ``T_w`` is ``warmup_steps``, at most
    ``warmup_share`` of the run's length in steps (of a time-bounded run, estimated from its pace:
    :meth:`glow_nxn.training.Schedule.run_steps`). ``ema_decay`` > 0 keeps an exponential
    moving average of the weights (Polyak averaging) that evaluation and sampling use.
    ``grad_clip_norm`` > 0 clips the gradient's global norm. A loss spike (the mean of the last
    ``spike_window`` losses more than ``spike_threshold`` bits/dim above its lowest value) rolls
    the run back to its newest healthy state and multiplies the learning rate by
    ``recovery_lr_factor``, at most ``max_recoveries`` times; the guard watches from step
    ``warmup_steps`` on, however short the warm-up. ``eval_every_steps`` = 0 never evaluates
    during training; ``eval_weights`` picks the weights it evaluates and samples with (``ema``:
    the average, when there is one; ``raw``).
    ``step_timeout_seconds`` > 0 ends the job when no step completes for that long (a process
    that hangs; it must exceed a step plus an evaluation plus a checkpoint write);
    ``first_step_timeout_seconds`` > 0 does the same for the first step of a run or resume,
    which traces (and with XLA compiles) the step function and may rightly take far longer.
    ``class_weight`` > 0 adds ``class_weight ×`` the classifier's cross-entropy, in bits per
    image, to the objective of a model with a classifier (Glow's ``weight_y``); the progress
    lines still report the bits/dim alone.
    ``remat`` recomputes each flow step's activations in the backward pass instead of keeping
    them (gradient checkpointing, :meth:`glow_nxn.layers.Chain.forward_recomputing`): less
    memory per image for about one more forward pass, the same gradients up to float32
    rounding. It changes how gradients are computed, not the model, so a run may resume with
    it switched either way (docs/PERFORMANCE.md has the memory and time it trades).
    """

    per_replica_batch_size: int = 64
    init_batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 3e-3
    scale_lr_by_workers: bool = False
    warmup_steps: int = 200
    warmup_share: float = 0.1
    lr_schedule: str = "cosine"
    lr_floor: float = 0.0
    grad_clip_norm: float = 100.0
    ema_decay: float = 0.995
    train_steps: int = 100_000
    max_train_seconds: float = 0.0
    spike_threshold: float = 0.3
    spike_window: int = 50
    max_recoveries: int = 5
    recovery_lr_factor: float = 0.5
    max_consecutive_nonfinite: int = 20
    log_every_steps: int = 50
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    eval_every_steps: int = 2000
    eval_max_batches: int = 0
    eval_batch_size: int = 256
    eval_weights: str = "ema"
    num_samples: int = 16
    sample_temperature: float = 0.7
    seed: int = 0
    jit_compile: bool = False
    step_timeout_seconds: float = 1800.0
    first_step_timeout_seconds: float = 7200.0
    remat: bool = False
    class_weight: float = 0.0

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("eval_weights", self.eval_weights, WEIGHTS)
        for name in ("per_replica_batch_size", "init_batch_size", "train_steps",
                     "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                     "eval_batch_size", "max_consecutive_nonfinite", "spike_window",
                     "num_samples"):
            check_positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "max_recoveries", "eval_every_steps", "eval_max_batches"):
            check_int(name, getattr(self, name), minimum=0)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_float("learning_rate", self.learning_rate, above=0.0)
        check_float("lr_floor", self.lr_floor, 0.0, 1.0)
        check_float("warmup_share", self.warmup_share, above=0.0, maximum=1.0)
        check_float("ema_decay", self.ema_decay, 0.0, 1.0)
        if self.ema_decay == 1.0:
            raise ValueError("ema_decay must be below 1 (1 would never move the average); "
                             "0 turns averaging off")
        for name in ("grad_clip_norm", "max_train_seconds", "spike_threshold",
                     "sample_temperature", "step_timeout_seconds", "first_step_timeout_seconds",
                     "class_weight"):
            check_float(name, getattr(self, name), minimum=0.0)
        check_float("recovery_lr_factor", self.recovery_lr_factor, above=0.0, maximum=1.0)
        for name in ("scale_lr_by_workers", "jit_compile", "remat"):
            check_bool(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole run: ``model``, ``data`` and ``train``; ``config.json`` holds exactly this."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig

    def __post_init__(self):
        height, width, _ = self.model.image_shape
        check_int("augment_shift", self.data.augment_shift, 0, min(height, width) - 1)
        if self.model.classifier != (self.train.class_weight > 0):
            raise ValueError(
                f"class_weight {self.train.class_weight} weights the classifier of a "
                f"class-conditional model: a model has one exactly when class_weight > 0 "
                f"(model classifier={self.model.classifier})")

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text):
        """The RunConfig of :meth:`to_json`'s text; ValueError naming an unknown or bad field."""
        fields = json.loads(text)
        if not isinstance(fields, dict) or set(fields) != {"model", "data", "train"}:
            raise ValueError("not a run description: expected the keys data, model, train")
        return cls(model=_from_dict(ModelConfig, fields["model"]),
                   data=_from_dict(DataConfig, fields["data"]),
                   train=_from_dict(TrainConfig, fields["train"]))


def _from_dict(cls, fields):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(known)}")
    return cls(**fields)


# The paper's setups (§5), and a small MNIST model that trains on a CPU.
PRESETS = {
    "cifar10": ModelConfig(image_shape=(32, 32, 3), levels=3, steps_per_level=32),
    "imagenet32": ModelConfig(image_shape=(32, 32, 3), levels=3, steps_per_level=48),
    "imagenet64": ModelConfig(image_shape=(64, 64, 3), levels=4, steps_per_level=48),
    # Glow trained its CelebA-HQ models with additive coupling at 5 bits.
    "celeba_hq_256": ModelConfig(image_shape=(256, 256, 3), levels=6, steps_per_level=32,
                                 coupling="additive", n_bits=5),
    # The CPU-sized model of the main job, with RealNVP's logit transform of the input
    # (docs/RESULTS.md: 2.106 → 1.393 test bits/dim at 600 steps on MNIST; no change on patches
    # of photographs).
    "mnist": ModelConfig(image_shape=(28, 28, 1), levels=2, steps_per_level=8, hidden_width=128,
                         logit_alpha=0.001),
}


def preset(name, **overrides):
    """The preset ``name`` with fields replaced by ``overrides``; ValueError lists valid names."""
    check_choice("preset", name, tuple(sorted(PRESETS)))
    return dataclasses.replace(PRESETS[name], **overrides)
