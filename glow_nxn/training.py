r"""Maximum-likelihood training: the loop train.py runs, on one process or under horovodrun.

**The step.** The loss is the mean bits/dim of the batch (:mod:`glow_nxn.objectives`); of a
class-conditional model, ``−log₂ p(x | y)`` per dimension given each image's class, plus, with a
classifier, ``class_weight ×`` its mean cross-entropy in bits per image (the reported loss is
the bits/dim alone). On every replica::

    loss = mean bits/dim of its batch → gradients averaged across replicas (Horovod)
    (with remat, each flow step's activations are recomputed for them, not kept)
    → clipping by global norm (grad_clip_norm > 0) → Adam/Adamax update, skipped on every replica
      if the loss or the gradient norm is not finite → weight average updated (ema_decay > 0)

so all replicas hold identical weights throughout.

**The recipe** (:class:`~glow_nxn.config.TrainConfig`; docs/RESULTS.md has the ablations):

.. math::  \eta_t = \eta \cdot \min\Big(1, \frac{t+1}{T_w}\Big) \cdot
           \Big(f + (1-f)\,\frac{1 + \cos(\pi p)}{2}\Big) \cdot s,
           \qquad T_w = \max\big(1, \min(\text{warmup\_steps}, w N)\big)

with ``η = learning_rate`` (× the number of processes if ``scale_lr_by_workers``), ``f =
lr_floor``, ``s`` the factor left by spike recoveries, and ``p ∈ [0, 1]`` the run's progress: the
larger of ``t / train_steps`` and ``seconds / max_train_seconds``. So a run bounded by time ends
annealed too, and since ``t``, the seconds spent and ``s`` are in every checkpoint, a resumed run
continues the same schedule (``max_train_seconds`` is the budget of the whole run, summed over
resumptions). Rank 0's clock decides: its seconds are broadcast every step.

The warm-up ``T_w`` lasts ``warmup_steps``, but at most the share ``w = warmup_share`` of the run's
length ``N`` in steps (:meth:`Schedule.run_steps`): ``train_steps``, or, when a time budget ends
the run first, the steps it will have taken at its pace (steps per second of rank 0's clock,
from the second step a process takes on, the first being the trace; the same on every replica;
a time-bounded run resumed during its warm-up measures it anew). So a short run, or one on a
slow machine, spends a bounded share of itself warming up (with 200 steps the 6-minute main job
on a slow CPU warmed up for half its steps and its rate peaked at half the peak: docs/RESULTS.md).

**The loop** (:meth:`Trainer.fit`)::

    start:  prepare data (rank 0), name the images it skips → resume from the newest checkpoint,
            or data-dependent init
            → one broadcast of model, optimizer, average and progress from rank 0 → a ``start``
            record → hooks.on_start
    repeat: stop if train_steps or the time budget is reached, or a hook asked to
            → one step (above) → hooks.after_step(result)
    end:    hooks.on_end (last progress line, last checkpoint) → an ``end`` record → summary

Everything but the step itself is a :class:`Hook`: the :class:`DivergenceGuard` (spike and
non-finite-loss recovery), :class:`ProgressLog` (progress lines, TensorBoard, metrics.jsonl) and
:class:`PeriodicCheckpoint`, in that order, then any hooks the caller adds, then
:class:`PeriodicEvaluation`, which is skipped once a hook has asked the run to stop (it can take
minutes; a run that was told to stop should stop). Only rank 0 writes (checkpoints, config.json,
summaries, metrics).

**A process that hangs.** :class:`Watchdog`, another hook of train.py's, ends the job when no
step completes for ``step_timeout_seconds``, or the first for ``first_step_timeout_seconds``
(exit 70); a process stopped outright (SIGSTOP) is caught sooner by Horovod itself
(docs/RELIABILITY.md).

**Stopping on a signal.** :class:`Preemption` is a hook that train.py adds, with the handlers of
SIGTERM and SIGINT it installs for the duration of training: after the step during which any
process was signalled, every process stops; the end of the loop writes a checkpoint (if the run
is healthy), and train.py exits with code 75 (:class:`~glow_nxn.errors.Preempted`). The same
command resumes from that step.

**How a run ended.** Rank 0 appends ``{"kind": "start", "step": N, "processes": n}`` to
metrics.jsonl when the loop starts, and, when it ends finished or stopped by a signal,
``{"kind": "end", "step": N, "stop_reason": ..., "checkpoint": ...}``, the reason being
``"train_steps reached"``, ``"time budget spent"`` or ``"SIGTERM received"`` (or SIGINT). That
last line is the answer to trust under horovodrun: after a signal to horovodrun itself, its exit
code can be 0 (docs/DISTRIBUTED.md). When the last line is not an ``end`` record, the newest
job did not end by itself: it failed, hung, was killed, or was signalled before training began.

**Equivalence.** With ``shuffle_buffer=1`` and the same seed, ``n`` replicas with batch ``b`` (and
init batch ``i``) train as one process with batch ``n·b`` (init batch ``n·i``): replica ``r`` reads
the examples ``≡ r (mod n)`` with the same noise (:func:`glow_nxn.data.train_dataset`), so each
step's global batch is the same set of images; the mean of the replicas' mean losses is the
global mean, and so is the mean of their gradients; the ActNorm moments are means of equal-sized
per-replica means. Only float32 rounding differs; tests/test_horovod.py checks it.
"""
import collections
import contextlib
import dataclasses
import functools
import math
import signal
import threading
import time

import tensorflow as tf

from glow_nxn import data, evaluation, objectives, optimizers, sampling
from glow_nxn.averaging import WeightAverage
from glow_nxn.distributed import Replicas, device_description
from glow_nxn.errors import Hung, TrainingDiverged, UserError, as_user_error
from glow_nxn.keras import keras
from glow_nxn.layers import NOT_XLA_COMPILABLE
from glow_nxn.model import Glow
from glow_nxn.run_folder import RunFolder, TrainState, training_checkpoint


TRAIN_STEPS_REACHED = "train_steps reached"
TIME_BUDGET_SPENT = "time budget spent"


class Schedule:
    """The learning rate ``η_t`` of the module docstring, before the recovery factor ``s``."""

    def __init__(self, config, num_replicas=1):
        self.config = config
        self.peak = config.learning_rate * (num_replicas if config.scale_lr_by_workers else 1)

    def progress(self, step, seconds):
        """``p``: the larger of ``step / train_steps`` and ``seconds / max_train_seconds``."""
        config = self.config
        by_steps = step / config.train_steps
        by_time = seconds / config.max_train_seconds if config.max_train_seconds else 0.0
        return max(by_steps, by_time)

    def run_steps(self, step, seconds, pace=None):
        """``N``: the run's length in steps. ``train_steps``; with a time budget and ``pace``
        (steps per second, measured after the step function's trace), the smaller of that and
        ``step`` plus the budget's remaining seconds at that pace."""
        config = self.config
        if not config.max_train_seconds or not pace:
            return config.train_steps
        left = max(config.max_train_seconds - seconds, 0.0)
        return min(config.train_steps, step + pace * left)

    def warmup_length(self, run_steps):
        """``T_w``: ``warmup_steps``, at most ``warmup_share × run_steps``, at least 1."""
        return max(1.0, min(self.config.warmup_steps, self.config.warmup_share * run_steps))

    def __call__(self, step, progress, run_steps=None):
        """``η_t`` at update ``step`` (updates taken so far), run ``progress`` and the run's
        length ``run_steps`` (default ``train_steps``)."""
        config = self.config
        run_steps = config.train_steps if run_steps is None else run_steps
        warmup = min(1.0, (step + 1) / self.warmup_length(run_steps))
        if config.lr_schedule == "constant":
            decay = 1.0
        else:
            cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
            decay = config.lr_floor + (1.0 - config.lr_floor) * cosine
        return self.peak * warmup * decay


def make_optimizer(config):
    """Adam or Adamax (Keras's, one fused kernel per variable: glow_nxn/optimizers.py); its
    learning rate is set before every step from :class:`Schedule`."""
    optimizer_class = {"adam": optimizers.Adam, "adamax": optimizers.Adamax}
    return optimizer_class[config.optimizer](learning_rate=config.learning_rate)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one training step did, as every hook sees it (the same on every replica).

    ``step`` counts steps taken including this one; ``loss`` is the global batch's mean bits/dim;
    ``finite`` says whether the update was applied; ``progress`` and ``seconds`` (training time
    of the whole run) are the schedule's inputs when the step began; ``batch`` is this replica's
    input.
    """

    step: int
    loss: float
    grad_norm: float
    finite: bool
    learning_rate: float
    progress: float
    seconds: float
    batch: tf.Tensor


class Hook:
    """A seam of :meth:`Trainer.fit`. Called on every replica, in the order the hooks are given;
    each method may call :meth:`Trainer.request_stop`. The base class does nothing."""

    def on_start(self, trainer):
        """After resume or init and the broadcast, before the first step."""

    def after_step(self, trainer, result):
        """After every step, with its :class:`StepResult`."""

    def on_checkpoint(self, trainer, path):
        """After a checkpoint of the current step was written (``path``: None off rank 0)."""

    def on_end(self, trainer):
        """After the last step (or at once, if the run was already finished)."""


class Trainer:
    """Owns the model, optimizer, weight average, progress, checkpoints and the compiled step."""

    def __init__(self, run_config, workdir, replicas=None, log=None, hooks=()):
        self.run_config = run_config
        self.model_config, self.data_config = run_config.model, run_config.data
        self.config = config = run_config.train
        self.folder = RunFolder(workdir)
        self.replicas = replicas or Replicas()
        # Progress lines are flushed at once: through a pipe they would otherwise come in bursts.
        log = log or functools.partial(print, flush=True)
        self.log = log if self.replicas.is_chief else (lambda *args: None)
        keras.utils.set_random_seed(config.seed)
        if config.jit_compile and self.model_config.mixing in NOT_XLA_COMPILABLE:
            raise UserError(f"--jit_compile cannot compile --mixing={self.model_config.mixing} "
                            f"({NOT_XLA_COMPILABLE[self.model_config.mixing]}); drop "
                            f"--jit_compile")
        self.folder.check_can_hold_a_run()
        self._check_same_model()
        self.model = Glow(self.model_config)
        self.optimizer = make_optimizer(config)
        # Build the optimizer's slots now, so the one broadcast below covers them and no
        # variable is created inside the traced step.
        self.optimizer.build(self.model.trainable_variables)
        self.state = TrainState()
        self.average = (WeightAverage(self.model.trainable_variables, config.ema_decay)
                        if config.ema_decay > 0 else None)
        self.checkpoint = training_checkpoint(self.model, self.state, self.optimizer,
                                              self.average)
        self.manager = self.folder.checkpoint_manager(self.checkpoint, config.keep_checkpoints)
        self.schedule = Schedule(config, self.replicas.size)
        self._train_step = self.compiled_step(config.remat)
        self.guard, self.progress_log = DivergenceGuard(config), ProgressLog(config)
        self.hooks = [self.guard, self.progress_log, PeriodicCheckpoint(config), *hooks,
                      PeriodicEvaluation(config)]
        self.stop_reason = None
        self.saved_step = None

    # ---- set-up ----------------------------------------------------------------------------

    def _check_same_model(self):
        """A run resumes with the model, optimizer and weight average (on or off) its
        checkpoints hold variables for; the average's decay and everything else may change."""
        saved = self.folder.load_config()
        if saved is None:
            return
        if saved.model != self.model_config:
            raise UserError(
                f"{self.folder.path} holds a run of another model ({saved.model}); pass the same "
                f"model flags to resume it, or a new --workdir")
        if self.folder.latest_checkpoint() is None:
            return
        if saved.train.optimizer != self.config.optimizer:
            raise UserError(
                f"{self.folder.path} holds a run trained with --optimizer="
                f"{saved.train.optimizer}; pass it to resume the run, or a new --workdir")
        if saved.train.ema_decay <= 0 < self.config.ema_decay:
            raise UserError(
                f"{self.folder.path} holds a run trained without a weight average, so its "
                f"checkpoints have none to resume; pass --ema_decay=0 to resume the run, or a new "
                f"--workdir")

    def state_variables(self):
        """Every variable a replica must share with rank 0 (and that a checkpoint holds)."""
        average = self.average.shadows if self.average is not None else []
        return (self.model.variables + self.optimizer.variables() + average
                + list(self.state.variables))

    def restore_or_initialise(self, init_images):
        """Resume from the newest checkpoint, or data-dependent init from ``init_images()``.

        Returns the step to start from. Rank 0 decides whether there is a checkpoint and reads
        the newest it can (setting aside newer ones it cannot read:
        :meth:`RunFolder.restore_newest`); every replica then takes rank 0's state in one
        broadcast (no shared file system needed). ``init_images`` is called only for a fresh
        run, on every replica, and returns that replica's slice of the global init batch; every
        ActNorm moment is averaged across replicas (``replicas.mean``), so the init is that of
        the whole global batch.
        """
        latest = None
        if self.replicas.is_chief:
            latest = self.folder.restore_newest(self.checkpoint, self.log)
            # The manager read the index when it was built; it may have changed since.
            self.manager = self.folder.checkpoint_manager(self.checkpoint,
                                                          self.config.keep_checkpoints)
        resuming = bool(self.replicas.broadcast(tf.constant(int(latest is not None)),
                                                 name="glow_resuming").numpy())
        if not resuming:
            count = self.config.init_batch_size * self.replicas.size
            self.log(f"initialising every ActNorm from {count} training images (data-dependent "
                     f"init; minutes on a CPU at the large presets)")
            self.model.data_dependent_init(init_images(), reduce_mean=self.replicas.mean)
            if self.average is not None:
                self.average.reset()
        self.replicas.broadcast_variables(self.state_variables())
        step = int(self.state.step.numpy())
        if resuming:
            self.saved_step = step
            self.log(f"resumed from {latest} at step {step}")
        return step

    def _init_batch(self):
        """This replica's slice of the global init batch (``init_batch_size`` per replica)."""
        with as_user_error():
            init = data.training_stream(
                self.data_config, self.replicas, image_shape=self.model_config.image_shape,
                n_bits=self.model_config.n_bits, batch_size=self.config.init_batch_size,
                seed=self.config.seed, augment=False)
        return next(iter(init))

    def _datasets(self):
        # A resumed run reshuffles from a seed that depends on its step, so it does not replay
        # the data order of the run it continues.
        shape = self.model_config.image_shape
        with as_user_error():
            train = data.training_stream(
                self.data_config, self.replicas, image_shape=shape,
                n_bits=self.model_config.n_bits, batch_size=self.config.per_replica_batch_size,
                seed=self.config.seed + int(self.state.step.numpy()),
                labels=self.model_config.num_classes > 0)
            test = data.evaluation_split(self.data_config, self.replicas, image_shape=shape,
                                         batch_size=self.config.eval_batch_size)
        return train, test

    # ---- one step --------------------------------------------------------------------------

    def compiled_step(self, remat):
        """The step of the module docstring as a :func:`tf.function` (compiled by XLA with
        ``jit_compile``): ``x [B, H, W, C] → (loss, grad_norm, finite)``. ``remat``: recompute
        each flow step's activations in the backward pass (:class:`~glow_nxn.config.TrainConfig`);
        the training loop's is ``config.remat``, bench/memory.py times both. A class-conditional
        model's step takes ``(x, labels [B])``."""
        return tf.function(functools.partial(self._step_fn, remat=remat),
                           jit_compile=self.config.jit_compile)

    def _step_fn(self, batch, remat):
        variables = self.model.trainable_variables
        x, labels = batch if self.model_config.num_classes else (batch, None)
        with tf.GradientTape() as tape:
            zs, logdet = self.model.encode(x, recompute=remat)
            log_prob = logdet + self.model.latent_log_prob(zs, labels)
            bits = objectives.bits_per_dim(log_prob, self.model_config.num_dims,
                                           self.model_config.n_bits)
            loss = objective = tf.reduce_mean(bits)
            if self.model_config.classifier:
                objective += self.config.class_weight * objectives.classification_bits(
                    self.model.class_prior.logits(zs), labels)
        gradients = self.replicas.gradients(tape, objective, variables)
        grad_norm = tf.linalg.global_norm(gradients)
        if self.config.grad_clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, self.config.grad_clip_norm,
                                                  use_norm=grad_norm)
        loss = self.replicas.mean(loss, name="glow_train_loss")
        # The gradients, hence grad_norm, are the same on every replica after the allreduce,
        # so every replica takes the same decision.
        finite = tf.math.is_finite(loss) & tf.math.is_finite(grad_norm)

        def apply():
            self.optimizer.apply_gradients(zip(gradients, variables))
            if self.average is not None:
                self.average.update(self.optimizer.iterations)
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        self.state.step.assign_add(1)
        return loss, grad_norm, finite

    def _agreed_seconds(self):
        """Training seconds of the whole run so far, by rank 0's clock (broadcast)."""
        seconds = self._seconds_at_start + time.time() - self._clock_start
        return float(self.replicas.broadcast(tf.constant(seconds, tf.float64),
                                             name="glow_training_seconds").numpy())

    def _pace(self, seconds):
        """Steps per second of this process since its first step (which traces the step
        function and so is not a step's time); ``None`` before two steps."""
        if self._steps_taken < 2:
            return None
        return (self._steps_taken - 1) / max(seconds - self._first_step_ended, 1e-9)

    def run_step(self):
        """One step at the scheduled learning rate; returns its :class:`StepResult`."""
        step = int(self.state.step.numpy())
        # The training time when the previous step ended (or as restored): one number decides
        # the schedule, the stop and what checkpoints record, so they never disagree.
        seconds = float(self.state.seconds.numpy())
        progress = self.schedule.progress(step, seconds)
        if progress >= 1.0:
            self.request_stop(TIME_BUDGET_SPENT if step < self.config.train_steps
                              else TRAIN_STEPS_REACHED)
            return None
        run_steps = self.schedule.run_steps(step, seconds, self._pace(seconds))
        learning_rate = (self.schedule(step, progress, run_steps)
                         * float(self.state.lr_scale.numpy()))
        self.optimizer.learning_rate = learning_rate
        batch = next(self._iterator)
        loss, grad_norm, finite = self._train_step(batch)
        # The step's end goes on the clock (rank 0's, broadcast) before any hook runs; when it
        # spends the budget the run stops here, so the checkpoint written after this step holds
        # the spent time and a resumed run takes no further step.
        ended = self._agreed_seconds()
        self.state.seconds.assign(ended)
        self._steps_taken += 1
        if self._steps_taken == 1:
            self._first_step_ended = ended
        if step + 1 < self.config.train_steps and self.schedule.progress(step + 1, ended) >= 1.0:
            self.request_stop(TIME_BUDGET_SPENT)
        result = StepResult(step=step + 1, loss=float(loss), grad_norm=float(grad_norm),
                            finite=bool(finite), learning_rate=learning_rate, progress=progress,
                            seconds=seconds, batch=batch)
        for hook in self.hooks:
            hook.after_step(self, result)
        return result

    # ---- the loop --------------------------------------------------------------------------

    def request_stop(self, reason):
        """End the loop after the current step (the first reason given is kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def step(self):
        return int(self.state.step.numpy())

    @property
    def healthy(self):
        """Whether the current state may be checkpointed (see :class:`DivergenceGuard`)."""
        return self.guard.healthy

    def save(self):
        """Rank 0 writes a checkpoint of the current step; every replica runs the hooks.
        :class:`~glow_nxn.errors.WriteFailed` (on rank 0) if it cannot be written."""
        path = self.folder.save_checkpoint(self.manager, self.step) \
            if self.replicas.is_chief else None
        self.saved_step = self.step
        for hook in self.hooks:
            hook.on_checkpoint(self, path)
        return path

    def fit(self):
        """Train until ``train_steps``, the time budget, or a hook's stop; returns a summary."""
        config, replicas = self.config, self.replicas
        with as_user_error():
            data.prepare_once(self.data_config, replicas)
            skipped = data.bad_images(self.data_config)
        for bad in skipped:
            self.log(f"warning: skipping image {bad.path}: {bad.reason}")
        if skipped:
            self.record("data", skipped_images=len(skipped), paths=[b.path for b in skipped])
        start_step = self.restore_or_initialise(self._init_batch)
        train_data, self.test_data = self._datasets()
        if replicas.is_chief:
            self.folder.save_config(self.run_config)
        self.writer = (tf.summary.create_file_writer(self.folder.summaries_dir)
                       if replicas.is_chief else tf.summary.create_noop_writer())
        self.log(f"training {self.model_config} on {self.data_config.dataset}: "
                 f"{replicas.size} process(es), global batch "
                 f"{config.per_replica_batch_size * replicas.size}, from step {start_step}; "
                 f"computing on {device_description()}")
        self.record("start", step=start_step, processes=replicas.size)
        self._iterator = iter(train_data)
        self._clock_start, self._seconds_at_start = time.time(), float(self.state.seconds.numpy())
        self._steps_taken, self._first_step_ended = 0, None
        with self.writer.as_default():
            tf.summary.scalar("data/skipped_images", len(skipped), step=start_step)
            for hook in self.hooks:
                hook.on_start(self)
            while self.stop_reason is None:
                self.run_step()
            if self.step == start_step and self.stop_reason in (TRAIN_STEPS_REACHED,
                                                                 TIME_BUDGET_SPENT):
                self.log(f"nothing to train: the run is at step {start_step} and "
                         f"{self.stop_reason}; raise --train_steps or --max_train_seconds to "
                         f"train longer")
            for hook in self.hooks:
                hook.on_end(self)
            self.writer.flush()
        self.record("end", step=self.step, stop_reason=self.stop_reason,
                    checkpoint=self.manager.latest_checkpoint)
        return {"step": self.step, "start_step": start_step,
                "train_bits_per_dim": self.progress_log.last_bits, "stop_reason": self.stop_reason,
                "skipped_updates": self.guard.skipped, "skipped_images": len(skipped),
                "recoveries": int(self.state.recoveries.numpy()),
                "seconds": float(self.state.seconds.numpy()),
                "checkpoint": self.manager.latest_checkpoint}

    def record(self, kind, **fields):
        """Rank 0 appends ``{"kind": kind, **fields}`` to the run's metrics.jsonl."""
        if self.replicas.is_chief:
            self.folder.append_metrics({"kind": kind, **fields})

    # ---- evaluation during training --------------------------------------------------------

    def evaluate_and_sample(self):
        """Test bits/dim (and a sample grid on rank 0) with the weights the config names."""
        use_average = self.average is not None and self.config.eval_weights == "ema"
        with self.average.swapped_in() if use_average else contextlib.nullcontext():
            result = evaluation.evaluate(self.model, self.test_data, seed=self.config.seed,
                                         replicas=self.replicas,
                                         max_batches=self.config.eval_max_batches or None)
            picture = (sampling.sample_grid(self.model, self.config.num_samples,
                                            self.config.sample_temperature, self.config.seed)
                       if self.replicas.is_chief else None)
        return result, picture, "ema" if use_average else "raw"


class _Snapshot:
    """Copies of variables, taken and restored in place (the divergence guard's rollback)."""

    def __init__(self, variables):
        self._variables = list(variables)
        with tf.init_scope():
            self._copies = [tf.Variable(v, trainable=False) for v in self._variables]
        self.step = None

    def take(self, step):
        for copy, variable in zip(self._copies, self._variables):
            copy.assign(variable)
        self.step = step

    def restore(self):
        for copy, variable in zip(self._copies, self._variables):
            variable.assign(copy)


class DivergenceGuard(Hook):
    """Detects a diverging run and rolls it back to its newest healthy state.

    Two triggers, evaluated identically on every replica (they see the same global loss):

    * a **spike**: after ``warmup_steps``, the mean ``m`` of the last ``spike_window`` finite
      losses exceeds the lowest such mean so far by more than ``spike_threshold`` bits/dim;
    * ``max_consecutive_nonfinite`` non-finite losses in a row (each such update is skipped).

    A trigger restores the newest snapshot (model, optimizer, weight average and step; taken at
    the start, at every checkpoint, and every ``spike_window`` steps while ``m`` is within
    ``spike_threshold / 2`` of its lowest value), multiplies the learning rate by
    ``recovery_lr_factor`` for the rest of the run, and logs one line. After
    ``max_recoveries`` recoveries the next trigger raises :class:`TrainingDiverged`; the newest
    checkpoint is then the last healthy one, since :attr:`healthy` gates every checkpoint.
    """

    def __init__(self, config):
        self.config = config
        self.losses = collections.deque(maxlen=config.spike_window)
        self.lowest = math.inf
        self.nonfinite_in_a_row = 0
        self.skipped = 0
        self.snapshot = None

    @property
    def running_mean(self):
        return sum(self.losses) / len(self.losses) if self.losses else math.nan

    @property
    def healthy(self):
        """No non-finite run, and the running mean within ``spike_threshold`` of its lowest."""
        if self.nonfinite_in_a_row:
            return False
        return not (self._window_full and self._spiking(self.running_mean))

    @property
    def _window_full(self):
        return len(self.losses) == self.config.spike_window

    def _spiking(self, mean):
        return self.config.spike_threshold > 0 and mean > self.lowest + self.config.spike_threshold

    def on_start(self, trainer):
        self.snapshot = _Snapshot(trainer.model.variables + trainer.optimizer.variables()
                                  + (trainer.average.shadows if trainer.average else [])
                                  + [trainer.state.step])
        self.snapshot.take(trainer.step)

    def on_checkpoint(self, trainer, path):
        self.snapshot.take(trainer.step)

    def after_step(self, trainer, result):
        if not result.finite:
            self.nonfinite_in_a_row += 1
            self.skipped += 1
            trainer.log(f"step {result.step}: non-finite loss ({result.loss}) or gradient norm "
                        f"({result.grad_norm}); update skipped")
            if self.nonfinite_in_a_row >= self.config.max_consecutive_nonfinite:
                self._recover(trainer, f"{self.nonfinite_in_a_row} non-finite losses in a row")
            return
        self.nonfinite_in_a_row = 0
        self.losses.append(result.loss)
        if not self._window_full or result.step <= self.config.warmup_steps:
            return
        mean = self.running_mean
        if self._spiking(mean):
            self._recover(trainer, f"loss spike: mean of the last {len(self.losses)} steps "
                                   f"{mean:.4f} bits/dim, lowest {self.lowest:.4f}")
            return
        self.lowest = min(self.lowest, mean)
        if (result.step % self.config.spike_window == 0
                and mean <= self.lowest + self.config.spike_threshold / 2):
            self.snapshot.take(result.step)

    def _recover(self, trainer, reason):
        state, config = trainer.state, self.config
        recoveries = int(state.recoveries.numpy())
        if recoveries >= config.max_recoveries:
            latest = trainer.manager.latest_checkpoint
            where = (f"the newest checkpoint {latest} is the last healthy one: resume from it"
                     if latest else "no checkpoint was written yet: start again")
            raise TrainingDiverged(
                f"{reason} at step {trainer.step}, after {recoveries} recoveries "
                f"(--max_recoveries={config.max_recoveries}); training stopped, {where} with a "
                f"lower --learning_rate")
        failed_step = trainer.step
        self.snapshot.restore()
        state.recoveries.assign_add(1)
        state.lr_scale.assign(state.lr_scale * config.recovery_lr_factor)
        self.losses.clear()
        self.nonfinite_in_a_row = 0
        trainer.log(f"step {failed_step}: {reason}; rolled back to step {self.snapshot.step}, "
                    f"learning rate × {float(state.lr_scale.numpy()):g} (recovery "
                    f"{recoveries + 1} of at most {config.max_recoveries})")
        trainer.record("recovery", step=failed_step, rolled_back_to=self.snapshot.step,
                       reason=reason, lr_scale=float(state.lr_scale.numpy()))


class ProgressLog(Hook):
    """Every ``log_every_steps`` steps (and at the end): one progress line, TensorBoard scalars
    and a ``metrics.jsonl`` record of the steps since the last one (mean train bits/dim, the
    median and largest gradient norm before clipping, learning rate, images/s)."""

    def __init__(self, config):
        self.config = config
        self.last_bits = math.nan

    def on_start(self, trainer):
        self._reset(trainer.step)
        self._started = time.time()
        self._start_seconds = float(trainer.state.seconds.numpy())
        self._start_progress = trainer.schedule.progress(trainer.step, self._start_seconds)

    def _reset(self, step):
        self._window_start, self._from_step = time.time(), step
        self._losses, self._norms = [], []

    def after_step(self, trainer, result):
        if result.finite:
            self._losses.append(result.loss)
            self._norms.append(result.grad_norm)
        self._result = result
        if result.step % self.config.log_every_steps == 0:
            self._write(trainer)

    def on_end(self, trainer):
        if getattr(self, "_result", None) is not None and trainer.step != self._from_step:
            self._write(trainer)

    def _write(self, trainer):
        result, now = self._result, time.time()
        steps = trainer.step - self._from_step
        global_batch = self.config.per_replica_batch_size * trainer.replicas.size
        rate = max(steps, 0) * global_batch / max(now - self._window_start, 1e-9)
        bits = sum(self._losses) / len(self._losses) if self._losses else math.nan
        self.last_bits = bits
        norms = sorted(self._norms) or [math.nan]
        median_norm, max_norm = norms[len(norms) // 2], norms[-1]
        recoveries = int(trainer.state.recoveries.numpy())
        elapsed = now - self._started
        eta = eta_seconds(result.progress, result.seconds, self._start_progress,
                          self._start_seconds)
        trainer.log(f"step {trainer.step:7d}  bits/dim {bits:.4f}  {rate:7.1f} images/s  "
                    f"lr {result.learning_rate:.2e}  elapsed {elapsed / 60:5.1f} min  "
                    f"ETA {eta / 60:5.1f} min")
        scalars = {"train/bits_per_dim": bits, "train/learning_rate": result.learning_rate,
                   "train/gradient_norm": median_norm, "train/gradient_norm_max": max_norm,
                   "train/images_per_second": rate, "train/recoveries": recoveries,
                   "train/skipped_updates": trainer.guard.skipped}
        for name, value in scalars.items():
            tf.summary.scalar(name, value, step=trainer.step)
        trainer.record("train", step=trainer.step, steps=steps, bits_per_dim=bits,
                       learning_rate=result.learning_rate, grad_norm_median=median_norm,
                       grad_norm_max=max_norm, images_per_second=rate,
                       seconds=result.seconds, recoveries=recoveries,
                       skipped_updates=trainer.guard.skipped)
        self._reset(trainer.step)


def eta_seconds(progress, seconds, start_progress, start_seconds):
    """Seconds left: the run's remaining progress ``1 - p`` at this process's own pace,
    ``(p - p₀) / (s - s₀)`` since it started at progress ``p₀`` and training time ``s₀``. A
    resumed run is timed by its own machine, not by the one that ran the steps before; NaN
    before any progress."""
    if progress <= start_progress or seconds <= start_seconds:
        return math.nan
    pace = (progress - start_progress) / (seconds - start_seconds)
    return max((1.0 - progress) / pace, 0.0)


class PeriodicCheckpoint(Hook):
    """A checkpoint every ``checkpoint_every_steps`` steps and at the end, only of a healthy state
    (:attr:`Trainer.healthy`), so the newest checkpoint is never a diverged one."""

    def __init__(self, config):
        self.config = config

    def after_step(self, trainer, result):
        if result.step % self.config.checkpoint_every_steps == 0 and trainer.healthy:
            trainer.save()

    def on_end(self, trainer):
        if trainer.step != trainer.saved_step and trainer.healthy:
            trainer.save()


class PeriodicEvaluation(Hook):
    """Test bits/dim and a sample grid every ``eval_every_steps`` steps (0: never), unless the
    run has been asked to stop after this step."""

    def __init__(self, config):
        self.config = config

    def after_step(self, trainer, result):
        every = self.config.eval_every_steps
        if every and result.step % every == 0 and trainer.stop_reason is None:
            evaluated, picture, weights = trainer.evaluate_and_sample()
            trainer.log(f"step {result.step:7d}  test bits/dim {evaluated.bits_per_dim:.4f} "
                        f"± {evaluated.standard_error:.4f} ({evaluated.num_images} images, "
                        f"{weights} weights)")
            tf.summary.scalar("test/bits_per_dim", evaluated.bits_per_dim, step=result.step)
            classes = {}
            if evaluated.classes is not None:
                classes = dataclasses.asdict(evaluated.classes)
                trainer.log(f"step {result.step:7d}  {evaluated.classes.describe()}")
                for name, value in classes.items():
                    if value is not None:
                        tf.summary.scalar(f"test/{name}", value, step=result.step)
            trainer.record("test", step=result.step, bits_per_dim=evaluated.bits_per_dim,
                           standard_error=evaluated.standard_error,
                           num_images=evaluated.num_images, weights=weights, **classes)
            if picture is not None:
                tf.summary.image(f"samples/temperature_{self.config.sample_temperature}",
                                 picture[tf.newaxis], step=result.step)


class Preemption(Hook):
    """Stop after the current step when any process of the job receives a stop signal.

    SIGTERM is what SLURM, Kubernetes, preemptible cloud machines and horovodrun send before they
    kill a job; SIGINT is Ctrl-C. The handler only records the signal (it runs between two
    Python bytecodes, possibly mid-step); the decision is taken by every replica together, before
    the first step and after each one: the replicas gather what each received, so all stop after
    the same step even when only one was signalled. The end of the loop then writes a checkpoint
    if the run is healthy (:class:`PeriodicCheckpoint`), and the other replicas wait at a barrier
    until rank 0 has written it, since horovodrun stops every process as soon as one exits
    non-zero. After the stop is agreed, :attr:`signal_name` names the signal and :attr:`stopped`
    says whether it was what stopped the run.

    Time from the signal to the end: the rest of the current step (or of the start-up, before
    the first step), at most one periodic evaluation if one had already begun, and one
    checkpoint write. A second SIGINT after a SIGINT stops at once (KeyboardInterrupt, as Python
    would); further SIGTERMs are absorbed, since a scheduler and horovodrun may both send one.
    Nothing is installed at import: :meth:`catching` installs the handlers for a ``with`` block.
    """

    def __init__(self):
        self.received = 0  # the number of the first signal this process received
        self.signal_name = None
        self.stopped = False

    @contextlib.contextmanager
    def catching(self, *signals):
        """Record ``signals`` (e.g. ``signal.SIGTERM, signal.SIGINT``) inside the block; the
        previous handlers come back after it."""
        previous = {number: signal.signal(number, self._record) for number in signals}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _record(self, number, frame):
        if number == self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = self.received or number

    def on_start(self, trainer):
        self._agree(trainer)

    def after_step(self, trainer, result):
        self._agree(trainer)

    def _agree(self, trainer):
        received = trainer.replicas.gather(tf.constant([self.received], tf.int32),
                                           name="glow_signals_received").numpy()
        signalled = [int(number) for number in received if number]
        if signalled and self.signal_name is None:
            self.signal_name = signal.Signals(signalled[0]).name
            reason = f"{self.signal_name} received"
            trainer.request_stop(reason)
            self.stopped = trainer.stop_reason == reason
            trainer.log(f"step {trainer.step}: {reason}; stopping")

    def on_end(self, trainer):
        if self.stopped:
            # The others leave only once rank 0's checkpoint (written by PeriodicCheckpoint.
            # on_end, before this hook) is on disk.
            trainer.replicas.barrier()


class Watchdog(Hook):
    """Ends the job when no training step completes for ``timeout`` seconds, or the first step
    of the loop for ``first_timeout`` seconds.

    A process that hangs while alive (a deadlock, a stuck file system, a lost GPU) would hold the
    whole job: its peers wait in their next collective as long as it takes, and Horovod's stall
    detection did not end such a job (docs/RELIABILITY.md). A thread of this process checks,
    once a second, the time since the last beat (the loop's start, every step, every
    checkpoint); past the bound it calls ``on_hang`` with a :class:`~glow_nxn.errors.Hung`,
    which must end the process (train.py: one line, exit 70; horovodrun then stops the others).
    It runs in every process, so the hung one and the ones waiting for it all fire. From the
    loop's start to the end of the first step the bound is ``first_timeout`` (0: not watched):
    that step traces, and with XLA compiles, the step function, which on a CPU took up to 26
    minutes at the celeba_hq_256 preset (docs/PERFORMANCE.md); ranks that disagree inside it (a
    collective one of them never submits) would otherwise wait for ever. Before the loop's start
    nothing is watched: rank 0 may rightly work alone for long (preparing a dataset). From then
    to the end of :meth:`running` the bound is ``timeout``, which must exceed a step plus a
    periodic evaluation plus a checkpoint write.
    """

    def __init__(self, timeout, on_hang, first_timeout=0.0):
        self.timeout, self.on_hang, self.first_timeout = timeout, on_hang, first_timeout
        self._last_beat = None  # None: not watching
        self._first = True  # the first step of the loop has not completed
        self._trainer = None

    @contextlib.contextmanager
    def running(self):
        """Watch in a daemon thread for the duration of the block (no thread if both bounds
        are 0)."""
        if not (self.timeout or self.first_timeout):
            yield self
            return
        done = threading.Event()
        thread = threading.Thread(target=self._watch, args=(done,), name="watchdog",
                                  daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()

    def _watch(self, done):
        while not done.wait(1.0):
            # In this order, against after_step's (beat, then _first): a bound of the later
            # steps is never applied to the loop's start.
            first = self._first
            last = self._last_beat
            bound = self.first_timeout if first else self.timeout
            if last is not None and bound and time.monotonic() - last > bound:
                trainer = self._trainer
                what = (f"the first training step did not complete in {bound:g} s from step "
                        f"{trainer.step} (--first_step_timeout_seconds)" if first else
                        f"no training step completed in {bound:g} s after step {trainer.step} "
                        f"(--step_timeout_seconds)")
                self.on_hang(Hung(
                    f"{what}: a process of the job hangs; the same command resumes from the "
                    f"newest checkpoint, {trainer.manager.latest_checkpoint}"))
                return

    def _beat(self):
        self._last_beat = time.monotonic()

    def on_start(self, trainer):
        self._trainer = trainer
        self._beat()

    def after_step(self, trainer, result):
        self._beat()
        self._first = False

    def on_checkpoint(self, trainer, path):
        self._beat()


def train(run_config, workdir, replicas=None, log=None, hooks=()):
    """Build a :class:`Trainer` and run it; returns :meth:`Trainer.fit`'s summary."""
    return Trainer(run_config, workdir, replicas, log, hooks).fit()
