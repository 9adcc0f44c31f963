"""Maximum-likelihood training: the loop train.py runs, on one process or under horovodrun.

The loss is the mean bits/dim of the batch (:mod:`glow_nxn.objectives`), minimised by Adam (the
paper: lr 1e-3) or Adamax (Glow), with a linear warm-up. One training step on every replica::

    loss = mean bits/dim of its batch → gradients averaged across replicas (Horovod)
    → optional clipping by global norm → update, skipped on every replica if the loss or the
      gradient norm is not finite

so all replicas hold identical weights throughout. Before the first step every ActNorm is
initialised from the global init batch (moments averaged across replicas), then model and
optimizer state are broadcast from rank 0 once. Only rank 0 writes (checkpoints, config.json,
summaries); a run resumes from its newest checkpoint with its step, learning-rate schedule and
optimizer state. With several replicas, rank 0 prepares the dataset while the others wait.

With ``shuffle_buffer=1`` and the same seed, ``n`` replicas with batch ``b`` (and init batch
``i``) train as one process with batch ``n·b`` (init batch ``n·i``): replica ``r`` reads the
examples ``≡ r (mod n)`` with the same noise (:func:`glow_nxn.data.train_dataset`), so each step's
global batch is the same set of images; the mean of the replicas' mean losses is the global mean,
and so is the mean of their gradients; the ActNorm moments are means of equal-sized per-replica
means. Only float32 rounding (summation order) differs; tests/test_horovod.py checks it.
"""
import dataclasses
import os
import time

import tensorflow as tf

from glow_nxn import data, evaluation, objectives, sampling, workdir
from glow_nxn.distributed import Replicas
from glow_nxn.errors import UserError, as_user_error
from glow_nxn.keras import keras
from glow_nxn.layers import NOT_XLA_COMPILABLE
from glow_nxn.model import Glow

OPTIMIZERS = ("adam", "adamax")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (the model is fixed by :class:`glow_nxn.config.ModelConfig`).

    Batch sizes: ``per_replica_batch_size`` is what each process (GPU) takes per step; the global
    batch is that times the number of processes. ``init_batch_size`` is per replica too.
    """

    workdir: str
    dataset: str = "mnist"
    data_dir: str = None
    manual_dir: str = None
    per_replica_batch_size: int = 64
    init_batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    scale_lr_by_workers: bool = False
    warmup_steps: int = 500
    grad_clip_norm: float = 0.0
    train_steps: int = 100_000
    max_train_seconds: float = 0.0
    log_every_steps: int = 50
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    eval_every_steps: int = 2000
    eval_max_batches: int = 0
    eval_batch_size: int = 256
    num_samples: int = 16
    sample_temperature: float = 0.7
    max_consecutive_nonfinite: int = 20
    augment_shift: int = 0
    shuffle_buffer: int = 10_000
    seed: int = 0
    jit_compile: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        for name in ("per_replica_batch_size", "init_batch_size", "train_steps",
                     "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                     "eval_batch_size", "max_consecutive_nonfinite", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


class TrainingDiverged(UserError):
    """Too many consecutive non-finite losses: training stops, the last checkpoint is kept."""


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(t) = peak · min(1, (t + 1) / warmup_steps)``, ``t`` the number of applied updates."""

    def __init__(self, peak, warmup_steps):
        self.peak, self.warmup_steps = float(peak), int(warmup_steps)

    def __call__(self, step):
        warmup = tf.cast(max(self.warmup_steps, 1), tf.float32)
        return self.peak * tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / warmup)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def make_optimizer(config, replicas):
    """``(optimizer, schedule)``: Adam or Adamax with the warm-up schedule; the peak lr scales
    with the number of workers only if asked."""
    peak = config.learning_rate * (replicas.size if config.scale_lr_by_workers else 1)
    schedule = WarmupSchedule(peak, config.warmup_steps)
    optimizer_class = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}
    return optimizer_class[config.optimizer](learning_rate=schedule), schedule


class Trainer:
    """Owns the model, optimizer, checkpoint and the compiled training step of one run."""

    def __init__(self, model_config, config, replicas=None, log=print):
        self.model_config, self.config = model_config, config
        self.replicas = replicas or Replicas()
        self.log = log if self.replicas.is_chief else (lambda *args: None)
        keras.utils.set_random_seed(config.seed)
        if config.jit_compile and model_config.mixing in NOT_XLA_COMPILABLE:
            raise UserError(f"--jit_compile cannot compile --mixing={model_config.mixing} "
                            f"({NOT_XLA_COMPILABLE[model_config.mixing]}); drop --jit_compile")
        self._check_workdir()
        self.model = Glow(model_config)
        self.optimizer, self.schedule = make_optimizer(config, self.replicas)
        # Build the optimizer's slots now, so the one broadcast below covers them and no
        # variable is created inside the traced step.
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, workdir.checkpoint_dir(config.workdir),
            max_to_keep=config.keep_checkpoints)
        self._train_step = tf.function(self._step_fn, jit_compile=config.jit_compile)

    # ---- set-up ----------------------------------------------------------------------------

    def _check_workdir(self):
        saved = workdir.load_model_config(self.config.workdir)
        if saved is not None and saved != self.model_config:
            raise UserError(
                f"{self.config.workdir} holds a run of another model ({saved}); pass the same "
                f"model flags to resume it, or a new --workdir")

    def _state_variables(self):
        return self.model.variables + self.optimizer.variables() + [self.step]

    def restore_or_initialise(self, init_images):
        """Resume from the newest checkpoint, or data-dependent init from ``init_images()``.

        Returns the step to start from. Rank 0 decides whether there is a checkpoint and reads
        it; every replica then takes rank 0's state in one broadcast (no shared file system
        needed). ``init_images`` is called only for a fresh run, on every replica, and returns
        that replica's slice of the global init batch; every ActNorm moment is averaged across
        replicas (``replicas.mean``), so the init is that of the whole global batch.
        """
        latest = self.manager.latest_checkpoint if self.replicas.is_chief else None
        resuming = bool(self.replicas.broadcast(tf.constant(int(latest is not None))).numpy())
        if resuming:
            if self.replicas.is_chief:
                workdir.restore(self.checkpoint, latest)
        else:
            self.model.data_dependent_init(init_images(), reduce_mean=self.replicas.mean)
        self.replicas.broadcast_variables(self._state_variables())
        if resuming:
            self.log(f"resumed from {latest} at step {int(self.step.numpy())}")
        return int(self.step.numpy())

    # ---- one step --------------------------------------------------------------------------

    def _step_fn(self, x):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            bits = objectives.bits_per_dim(self.model.log_prob(x), self.model_config.num_dims,
                                           self.model_config.n_bits)
            loss = tf.reduce_mean(bits)
        gradients = self.replicas.gradient_tape(tape).gradient(loss, variables)
        grad_norm = tf.linalg.global_norm(gradients)
        if self.config.grad_clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, self.config.grad_clip_norm,
                                                  use_norm=grad_norm)
        loss = self.replicas.mean(loss)
        # The gradients, hence grad_norm, are the same on every replica after the allreduce,
        # so every replica takes the same decision.
        finite = tf.math.is_finite(loss) & tf.math.is_finite(grad_norm)

        def apply():
            self.optimizer.apply_gradients(zip(gradients, variables))
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        self.step.assign_add(1)
        return loss, grad_norm, finite

    # ---- the loop --------------------------------------------------------------------------

    def save(self):
        """Rank 0 writes a checkpoint of the current step (numbered by it)."""
        if self.replicas.is_chief:
            return self.manager.save(checkpoint_number=self.step)
        return None

    def fit(self):
        """Train until ``train_steps`` or ``max_train_seconds``; returns a summary dict."""
        config, replicas = self.config, self.replicas
        with as_user_error():
            data.prepare_once(config.dataset, replicas, data_dir=config.data_dir,
                              manual_dir=config.manual_dir)
        start_step = self.restore_or_initialise(self._init_batch)
        train_data, test_data = self._datasets()
        if replicas.is_chief:
            workdir.save_config(config.workdir, self.model_config, dataclasses.asdict(config))
        writer = (tf.summary.create_file_writer(os.path.join(config.workdir, "summaries"))
                  if replicas.is_chief else tf.summary.create_noop_writer())
        global_batch = config.per_replica_batch_size * replicas.size
        self.log(f"training {self.model_config} on {config.dataset}: {replicas.size} "
                 f"process(es), global batch {global_batch}, from step {start_step}")

        iterator = iter(train_data)
        started = time.time()
        window_start, window_bits, window_steps = time.time(), 0.0, 0
        nonfinite_in_a_row, skipped, last_bits = 0, 0, float("nan")
        step = start_step
        with writer.as_default():
            while step < config.train_steps:
                loss, grad_norm, finite = self._train_step(next(iterator))
                step += 1
                if bool(finite):
                    nonfinite_in_a_row = 0
                    window_bits += float(loss)
                    window_steps += 1
                else:
                    nonfinite_in_a_row += 1
                    skipped += 1
                    self.log(f"step {step}: non-finite loss ({float(loss)}) or gradient norm "
                             f"({float(grad_norm)}); update skipped")
                    if nonfinite_in_a_row >= config.max_consecutive_nonfinite:
                        raise TrainingDiverged(
                            f"{nonfinite_in_a_row} non-finite losses in a row at step {step}; "
                            f"training stopped, the last good checkpoint "
                            f"{self.manager.latest_checkpoint} is intact: resume from it with a "
                            f"lower --learning_rate or --grad_clip_norm")
                out_of_time = self._out_of_time(started)
                if step % config.log_every_steps == 0 or out_of_time:
                    now = time.time()
                    rate = window_steps * global_batch / max(now - window_start, 1e-9)
                    last_bits = window_bits / max(window_steps, 1)
                    lr = float(self.schedule(self.optimizer.iterations))
                    self.log(self._progress(step, last_bits, rate, lr, started))
                    tf.summary.scalar("train/bits_per_dim", last_bits, step=step)
                    tf.summary.scalar("train/learning_rate", lr, step=step)
                    tf.summary.scalar("train/gradient_norm", float(grad_norm), step=step)
                    tf.summary.scalar("train/images_per_second", rate, step=step)
                    window_start, window_bits, window_steps = now, 0.0, 0
                # No checkpoint in a run of non-finite losses: the newest stays the last good one.
                if step % config.checkpoint_every_steps == 0 and not nonfinite_in_a_row:
                    self.save()
                if step % config.eval_every_steps == 0:
                    self._evaluate_and_sample(test_data, step)
                if out_of_time:
                    break
            self.save()
            writer.flush()
        return {"step": step, "start_step": start_step, "train_bits_per_dim": last_bits,
                "skipped_updates": skipped, "seconds": time.time() - started,
                "checkpoint": self.manager.latest_checkpoint}

    def _out_of_time(self, started):
        """Whether the time budget is spent, decided by rank 0 so all replicas stop together."""
        if not self.config.max_train_seconds:
            return False
        spent = time.time() - started >= self.config.max_train_seconds
        return bool(self.replicas.broadcast(tf.constant(int(spent))).numpy())

    def _progress(self, step, bits, rate, lr, started):
        elapsed = time.time() - started
        remaining_steps = self.config.train_steps - step
        eta = remaining_steps * self.config.per_replica_batch_size * self.replicas.size / max(
            rate, 1e-9)
        if self.config.max_train_seconds:
            eta = min(eta, max(self.config.max_train_seconds - elapsed, 0.0))
        return (f"step {step:7d}  bits/dim {bits:.4f}  {rate:7.1f} images/s  lr {lr:.2e}  "
                f"elapsed {elapsed / 60:5.1f} min  ETA {eta / 60:5.1f} min")

    def _evaluate_and_sample(self, test_data, step):
        result = evaluation.evaluate(self.model, test_data, seed=self.config.seed,
                                     replicas=self.replicas,
                                     max_batches=self.config.eval_max_batches or None)
        self.log(f"step {step:7d}  test bits/dim {result.bits_per_dim:.4f} "
                 f"± {result.standard_error:.4f} ({result.num_images} images)")
        tf.summary.scalar("test/bits_per_dim", result.bits_per_dim, step=step)
        if self.replicas.is_chief:
            picture = sampling.sample_grid(self.model, self.config.num_samples,
                                           self.config.sample_temperature, self.config.seed)
            tf.summary.image(f"samples/temperature_{self.config.sample_temperature}",
                             picture[tf.newaxis], step=step)

    def _data_options(self):
        config, replicas = self.config, self.replicas
        return dict(image_shape=self.model_config.image_shape, data_dir=config.data_dir,
                    manual_dir=config.manual_dir, shard_index=replicas.rank,
                    num_shards=replicas.size)

    def _init_batch(self):
        """This replica's slice of the global init batch (``init_batch_size`` per replica)."""
        with as_user_error():
            init = data.train_dataset(
                self.config.dataset, n_bits=self.model_config.n_bits,
                per_replica_batch_size=self.config.init_batch_size, seed=self.config.seed,
                augment_shift=0, shuffle_buffer=self.config.shuffle_buffer,
                **self._data_options())
        return next(iter(init))

    def _datasets(self):
        config = self.config
        # A resumed run reshuffles from a seed that depends on its step, so it does not replay
        # the data order of the run it continues.
        with as_user_error():
            train = data.train_dataset(
                config.dataset, n_bits=self.model_config.n_bits,
                per_replica_batch_size=config.per_replica_batch_size,
                seed=config.seed + int(self.step.numpy()), augment_shift=config.augment_shift,
                shuffle_buffer=config.shuffle_buffer, **self._data_options())
            test = data.eval_dataset(config.dataset, batch_size=config.eval_batch_size,
                                     **self._data_options())
        return train, test


def train(model_config, config, replicas=None, log=print):
    """Build a :class:`Trainer` and run it; returns :meth:`Trainer.fit`'s summary."""
    return Trainer(model_config, config, replicas, log).fit()
