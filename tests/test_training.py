"""The training loop (glow_nxn/training.py): the step, the recipe, the hooks, resumption,
divergence and faults (signals, a hang, bad images, unreadable and unwritable checkpoints), in
process on mocked CIFAR-10, real MNIST and folders of images."""
import collections
import contextlib
import dataclasses
import functools
import math
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from glow_nxn import data, distributed, evaluation, optimizers, training
from glow_nxn.averaging import WeightAverage
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset
from glow_nxn.distributed import Replicas
from glow_nxn.errors import Hung, TrainingDiverged, UserError, WriteFailed
from glow_nxn.keras import keras
from glow_nxn.run_folder import RunFolder
from test_support import TINY_CIFAR, tiny_run


def quiet(*args):
    """A log function that drops every line."""


class Recorder(training.Hook):
    """Records every call of every seam, and each step's result."""

    def __init__(self):
        self.calls, self.results = [], []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def after_step(self, trainer, result):
        self.calls.append(("step", result.step))
        self.results.append(result)

    def on_checkpoint(self, trainer, path):
        self.calls.append(("checkpoint", trainer.step))

    def on_end(self, trainer):
        self.calls.append(("end", trainer.step))


def scalars(folder):
    """``{tag: [values]}`` of every scalar in a run's TensorBoard event files."""
    found = collections.defaultdict(list)
    for path in sorted(pathlib.Path(RunFolder(str(folder)).summaries_dir).rglob("events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag].append(float(tf.make_ndarray(value.tensor)))
    return found


def metrics(folder):
    return RunFolder(str(folder)).read_metrics()


# ---- the loop and its seams -------------------------------------------------------------------

def test_few_steps_on_mocked_cifar10(tmp_path, mocked_tfds):
    run, lines = tiny_run(), []
    with mocked_tfds(num_examples=40):
        summary = training.train(run, str(tmp_path), log=lines.append)
    # The init is announced; the start-up line says what computes: this machine has no GPU,
    # and says so.
    assert lines[0].startswith("initialising every ActNorm from 16 training images")
    assert "global batch 8, from step 0; computing on CPU only (no GPU visible; TensorFlow " \
        "built with" in lines[1]
    assert summary["step"] == 3 and summary["skipped_updates"] == 0
    assert summary["stop_reason"] == "train_steps reached"
    assert 0.0 < summary["train_bits_per_dim"] < 20.0
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-3")
    assert RunFolder(str(tmp_path)).load_config() == run
    assert len(scalars(tmp_path)["train/bits_per_dim"]) == 3
    records = metrics(tmp_path)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert records[0] == {"kind": "start", "step": 0, "processes": 1}
    assert records[-1] == {"kind": "end", "step": 3, "stop_reason": "train_steps reached",
                           "checkpoint": summary["checkpoint"]}


def test_a_variational_dequantizer_is_trained_checkpointed_and_scores_the_test_split(
        tmp_path, mocked_tfds):
    """With ``dequantizer_width``: the step trains the dequantiser (it leaves the identity it
    starts as), the checkpoint holds it (a restore gives its trained weights back), and the
    evaluation scores every image finitely through it."""
    model = dataclasses.replace(TINY_CIFAR, dequantizer_width=4)
    run = tiny_run(model=model)
    with mocked_tfds(num_examples=40):
        training.train(run, str(tmp_path), log=quiet)
        trainer = training.Trainer(run, str(tmp_path), log=quiet)
        assert trainer.restore_or_initialise(lambda: pytest.fail("must resume")) == 3
        weights = trainer.model.dequantizer.network.conv_out.conv.kernel.numpy()
        assert np.any(weights != 0.0), "the dequantiser was not trained"
        loaded = RunFolder(str(tmp_path)).load_model(weights="raw").model
        np.testing.assert_array_equal(loaded.dequantizer.network.conv_out.conv.kernel.numpy(),
                                      weights)
        test = data.evaluation_split(run.data, Replicas(), image_shape=model.image_shape,
                                     batch_size=16)
        result = evaluation.evaluate(trainer.model, test, seed=0)
    assert result.num_images > 0 and np.isfinite(result.bits_per_dim)
    assert result.num_nonfinite == 0


def test_the_device_description_names_the_visible_gpus(monkeypatch):
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: gpus)
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda gpu: {"device_name": f"Card {gpu.name[-1]}"})
    assert distributed.device_description() == "GPU:0 (Card 0), GPU:1 (Card 1)"


def test_hooks_see_every_seam_in_order(tmp_path, mocked_tfds):
    recorder = Recorder()
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=5), str(tmp_path), log=quiet, hooks=[recorder])
    # The checkpoint of step 2 is written by a hook before this one, inside the same step.
    assert recorder.calls == [("start", 0), ("step", 1), ("checkpoint", 2), ("step", 2),
                              ("step", 3), ("checkpoint", 4), ("step", 4), ("step", 5),
                              ("checkpoint", 5), ("end", 5)]
    assert all(r.batch.shape == (8, 32, 32, 3) and r.finite for r in recorder.results)


class StopAt(training.Hook):
    """Asks the loop to stop after step ``step`` (an interruption, as far as the run knows)."""

    def __init__(self, step):
        self.step = step

    def after_step(self, trainer, result):
        if result.step == self.step:
            trainer.request_stop("asked")


def test_a_hook_can_stop_the_run(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        summary = training.train(tiny_run(train_steps=50), str(tmp_path), log=quiet,
                                 hooks=[StopAt(2)])
    assert (summary["step"], summary["stop_reason"]) == (2, "asked")
    assert summary["checkpoint"].endswith("ckpt-2")


class SignalAt(training.Hook):
    """Sends this process ``number`` (a real signal) at the end of step ``step``."""

    def __init__(self, step, number):
        self.step, self.number = step, number

    def after_step(self, trainer, result):
        if result.step == self.step:
            os.kill(os.getpid(), self.number)


def test_a_signal_stops_the_run_after_the_next_step_with_a_checkpoint(tmp_path, mocked_tfds):
    """SIGTERM arrives at the end of step 3, after the Preemption hook has looked: the replicas
    agree after step 4, the evaluation due at step 4 is skipped, the end writes ckpt-4."""
    preemption, recorder, lines = training.Preemption(), Recorder(), []
    run = tiny_run(train_steps=50, checkpoint_every_steps=100, eval_every_steps=4)
    with mocked_tfds(num_examples=40), preemption.catching(signal.SIGTERM):
        summary = training.train(run, str(tmp_path), log=lines.append,
                                 hooks=[preemption, SignalAt(3, signal.SIGTERM), recorder])
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler gone after the block
    assert preemption.stopped and preemption.signal_name == "SIGTERM"
    assert (summary["step"], summary["stop_reason"]) == (4, "SIGTERM received")
    assert summary["checkpoint"].endswith("ckpt-4")
    assert recorder.calls[-3:] == [("step", 4), ("checkpoint", 4), ("end", 4)]
    assert "step 4: SIGTERM received; stopping" in lines
    records = metrics(tmp_path)
    assert not [r for r in records if r["kind"] == "test"]
    assert records[-1] == {"kind": "end", "step": 4, "stop_reason": "SIGTERM received",
                           "checkpoint": summary["checkpoint"]}


def test_a_second_sigint_stops_at_once():
    preemption = training.Preemption()
    with preemption.catching(signal.SIGINT, signal.SIGTERM):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # absorbed
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert preemption.received == signal.SIGINT


def watched_trainer(checkpoint):
    """What the watchdog reads of a Trainer: its step (7) and newest checkpoint."""
    return types.SimpleNamespace(step=7, manager=types.SimpleNamespace(
        latest_checkpoint=checkpoint))


def assert_hung_once(hung, message):
    assert len(hung) == 1 and isinstance(hung[0], Hung), hung
    assert str(hung[0]) == message
    assert hung[0].exit_code == 70


def test_the_watchdog_fires_once_when_the_steps_stop_after_the_first():
    hung = []
    trainer = watched_trainer("run/checkpoints/ckpt-6")
    watchdog = training.Watchdog(1.5, hung.append)
    with watchdog.running():
        watchdog.on_start(trainer)
        time.sleep(2.5)  # the first step (tracing): not watched
        for _ in range(5):  # steps of 0.5 s
            time.sleep(0.5)
            watchdog.after_step(trainer, None)
        assert hung == []
        time.sleep(4.0)
    assert_hung_once(hung, (
        "no training step completed in 1.5 s after step 7 (--step_timeout_seconds): a process "
        "of the job hangs; the same command resumes from the newest checkpoint, "
        "run/checkpoints/ckpt-6"))


def test_the_first_step_has_a_bound_of_its_own_and_fires_past_it():
    """The first step traces the step function: it may outlast the later steps' bound, but not
    its own (ranks that disagree inside it would otherwise wait for ever)."""
    trainer = watched_trainer("run/checkpoints/ckpt-7")
    hung = []
    watchdog = training.Watchdog(1.0, hung.append, first_timeout=3.0)
    with watchdog.running():
        watchdog.on_start(trainer)
        time.sleep(2.0)  # longer than a later step may take, within the first step's bound
        watchdog.after_step(trainer, None)
        time.sleep(0.5)
        watchdog.after_step(trainer, None)
        assert hung == []
    stuck = training.Watchdog(1.0, hung.append, first_timeout=2.0)
    with stuck.running():
        stuck.on_start(trainer)
        time.sleep(1.5)
        assert hung == []
        time.sleep(2.0)
    assert_hung_once(hung, (
        "the first training step did not complete in 2 s from step 7 "
        "(--first_step_timeout_seconds): a process of the job hangs; the same command resumes "
        "from the newest checkpoint, run/checkpoints/ckpt-7"))


def test_eval_every_steps_zero_never_evaluates_and_n_evaluates_every_n(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=4), str(tmp_path / "never"), log=quiet)
        training.train(tiny_run(train_steps=4, eval_every_steps=2), str(tmp_path / "two"),
                       log=quiet)
    assert not [r for r in metrics(tmp_path / "never") if r["kind"] == "test"]
    tests = [r for r in metrics(tmp_path / "two") if r["kind"] == "test"]
    assert [(r["step"], r["weights"]) for r in tests] == [(2, "ema"), (4, "ema")]
    assert all(math.isfinite(r["bits_per_dim"]) for r in tests)


def test_training_lowers_the_loss(tmp_path, mnist_data_dir):
    """30 Adam steps on real MNIST take train bits/dim well below its start (8 for noise)."""
    run = tiny_run(preset("mnist", steps_per_level=1, hidden_width=8),
                   data=DataConfig(dataset="mnist", data_dir=mnist_data_dir), train_steps=30,
                   log_every_steps=5, per_replica_batch_size=16, learning_rate=3e-3,
                   lr_schedule="constant")
    training.train(run, str(tmp_path), log=quiet)
    bits = [r["bits_per_dim"] for r in metrics(tmp_path) if r["kind"] == "train"]
    assert len(bits) == 6 and bits[-1] < bits[0] - 0.5, bits


def test_undecodable_images_are_named_counted_and_skipped_or_stop_the_run(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(8):
        (images / f"{index}.png").write_bytes(
            tf.io.encode_png(tf.fill([28, 28, 1], tf.constant(index, tf.uint8))).numpy())
    (images / "4b.png").write_bytes(b"\x89PNG truncated")
    data = DataConfig(dataset=f"folder:{images}", shuffle_buffer=8)
    run = tiny_run(preset("mnist", steps_per_level=1, hidden_width=8), data=data,
                   per_replica_batch_size=4, init_batch_size=4, train_steps=2)
    lines = []
    summary = training.train(run, str(tmp_path / "run"), log=lines.append)
    assert summary["skipped_images"] == 1 and summary["step"] == 2
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [f"warning: skipping image {images / '4b.png'}: Unknown image file "
                        f"format. One of JPEG, PNG, GIF, BMP required."]
    assert [r for r in metrics(tmp_path / "run") if r["kind"] == "data"] == [
        {"kind": "data", "skipped_images": 1, "paths": [str(images / "4b.png")]}]
    assert scalars(tmp_path / "run")["data/skipped_images"] == [1.0]
    stop = dataclasses.replace(run, data=dataclasses.replace(data, on_bad_image="stop"))
    with pytest.raises(UserError, match="4b.png cannot be decoded: Unknown image file format"):
        training.train(stop, str(tmp_path / "stopped"), log=quiet)
    assert not (tmp_path / "stopped").exists()


# ---- the recipe: schedule, clipping, weight average --------------------------------------------

def test_schedule_warms_up_then_follows_the_cosine_to_the_floor():
    schedule = training.Schedule(TrainConfig(learning_rate=1e-3, warmup_steps=4,
                                             train_steps=100, lr_floor=0.1))
    assert [round(schedule(t, 0.0), 9) for t in range(5)] == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert schedule(50, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert schedule(99, 1.0) == pytest.approx(1e-4)
    constant = training.Schedule(TrainConfig(learning_rate=1e-3, warmup_steps=0,
                                             lr_schedule="constant"))
    assert constant(0, 0.0) == constant(10**6, 1.0) == pytest.approx(1e-3)


def test_the_warmup_lasts_at_most_its_share_of_the_run():
    """``warmup_steps``, cut to ``warmup_share`` of the run's steps: of ``train_steps``, or, when
    a time budget ends the run first, of the steps its pace will take."""
    config = TrainConfig(learning_rate=1e-3, warmup_steps=200, warmup_share=0.1,
                         lr_schedule="constant", train_steps=600)
    schedule = training.Schedule(config)
    assert [schedule(t, 0.0) for t in (29, 59, 60)] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert schedule(59, 0.0, run_steps=10**5) == pytest.approx(3e-4)  # 200 steps: 60 / 200
    timed = training.Schedule(dataclasses.replace(config, train_steps=10**6,
                                                  max_train_seconds=100.0))
    assert timed.run_steps(50, 40.0, pace=None) == 10**6  # before the pace is known
    assert timed.run_steps(50, 40.0, pace=2.0) == pytest.approx(170.0)  # 50 + 2 × 60
    assert timed.run_steps(50, 140.0, pace=2.0) == pytest.approx(50.0)  # the budget is spent
    assert timed.warmup_length(170.0) == pytest.approx(17.0)
    assert timed.warmup_length(3.0) == 1.0
    assert training.Schedule(dataclasses.replace(config, train_steps=10**5)).warmup_length(
        10**5) == 200


class Tick(training.Hook):
    """A clock for training.py that advances one second after every step and stands still
    otherwise (so a step's time is exactly 1 s and the first step's trace takes none)."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def after_step(self, trainer, result):
        self.now += 1.0


def test_a_time_bounded_run_ends_its_warmup_within_its_share_of_the_steps(
        tmp_path, mocked_tfds, monkeypatch):
    """A warm-up of a million steps in a run of 99 s at 1 step/s (a clock that ticks once per
    step): after two steps the run knows its pace and length (100 steps), and warms up for a
    tenth of them; ``warmup_steps`` alone would give 1e-4 of the peak at the end."""
    clock = Tick()
    monkeypatch.setattr(training, "time", types.SimpleNamespace(time=clock.time,
                                                                monotonic=time.monotonic))
    recorder = Recorder()
    run = tiny_run(train_steps=10**6, max_train_seconds=99.0, warmup_steps=10**6,
                   warmup_share=0.1, learning_rate=1e-3, lr_schedule="constant",
                   checkpoint_every_steps=1000)
    with mocked_tfds(num_examples=40):
        summary = training.train(run, str(tmp_path), log=quiet, hooks=[clock, recorder])
    assert summary["stop_reason"] == "time budget spent" and summary["step"] == 100
    # Steps 0 and 1: no pace yet, so T_w = warmup_share × train_steps = 10⁵. From step 2 on,
    # the run's length is 100 steps and T_w = 10.
    expected = [1e-8, 2e-8] + [1e-3 * min(1.0, (t + 1) / 10) for t in range(2, 100)]
    assert [r.learning_rate for r in recorder.results] == pytest.approx(expected, rel=1e-9)


def test_progress_is_the_larger_of_steps_and_time():
    schedule = training.Schedule(TrainConfig(train_steps=100, max_train_seconds=60.0))
    assert schedule.progress(10, 30.0) == pytest.approx(0.5)
    assert schedule.progress(80, 30.0) == pytest.approx(0.8)
    assert training.Schedule(TrainConfig(train_steps=100)).progress(10, 1e9) == 0.1


def test_the_eta_of_a_resumed_run_is_timed_at_its_own_pace():
    # A run resumed at 30% after 900 s on a slow machine, now 10% further after 60 s here:
    # the 60% left takes 360 s at this pace (the whole run's average would say 1,440 s).
    assert training.eta_seconds(0.4, 960.0, 0.3, 900.0) == pytest.approx(360.0)
    assert training.eta_seconds(0.5, 100.0, 0.0, 0.0) == pytest.approx(100.0)
    assert math.isnan(training.eta_seconds(0.3, 900.0, 0.3, 900.0))


class SavedState(training.Hook):
    """Copies of every state variable (model, optimizer, average, progress) at each checkpoint,
    by step: what the checkpoint was written from."""

    def __init__(self):
        self.at = {}

    def on_checkpoint(self, trainer, path):
        self.at[trainer.step] = [v.numpy().copy() for v in trainer.state_variables()]


@pytest.mark.parametrize("optimizer", ["adam", "adamax"])
def test_resume_continues_step_schedule_optimizer_and_average(tmp_path, mocked_tfds, optimizer):
    """A 6-step run stopped after step 3 and resumed: the same learning rates, step for step, as
    6 steps in one go; the resumed run starts from the saved optimizer (its slots too) and average;
    its data stream is the one ``Trainer._datasets`` documents (reshuffled from seed + step)."""
    straight, first, second, saved = Recorder(), Recorder(), Recorder(), SavedState()
    run = functools.partial(tiny_run, optimizer=optimizer)
    with mocked_tfds(num_examples=40):
        training.train(run(train_steps=6), str(tmp_path / "straight"), log=quiet,
                       hooks=[straight])
        training.train(run(train_steps=6), str(tmp_path / "split"), log=quiet,
                       hooks=[first, StopAt(3), saved])
        lines = []
        resumed = training.Trainer(run(train_steps=6), str(tmp_path / "split"),
                                   log=lines.append, hooks=[second])
        assert resumed.restore_or_initialise(lambda: pytest.fail("resume must not re-init")) == 3
        slots = [v for v in resumed.optimizer.variables() if v.name != "iteration:0"]
        assert slots and all(np.any(v.numpy() != 0) for v in slots[:4])  # trained moments
        # Everything as the first run had it when it wrote ckpt-3.
        for before, after in zip(saved.at[3], resumed.state_variables(), strict=True):
            np.testing.assert_array_equal(before, after.numpy())
        assert int(resumed.optimizer.iterations.numpy()) == 3
        summary = resumed.fit()
        expected_batch = next(iter(data.training_stream(
            DataConfig(dataset="cifar10"), Replicas(), image_shape=TINY_CIFAR.image_shape,
            n_bits=TINY_CIFAR.n_bits, batch_size=8, seed=0 + 3)))
    np.testing.assert_array_equal(second.results[0].batch.numpy(), expected_batch.numpy())
    assert not np.array_equal(second.results[0].batch.numpy(), straight.results[3].batch.numpy())
    assert summary["start_step"] == 3 and summary["step"] == 6
    assert any("resumed from" in line and "step 3" in line for line in lines)
    rates = [r.learning_rate for r in first.results + second.results]
    assert rates == pytest.approx([r.learning_rate for r in straight.results], rel=1e-12)
    assert rates[3:] != pytest.approx(rates[:3])  # what a restarted schedule would give


def test_a_carried_run_holds_its_newest_checkpoint_whole_and_resumes_from_it_elsewhere(
        tmp_path, mocked_tfds):
    """RunFolder.carry keeps config, metrics and the newest checkpoint (optimizer and average
    too), nothing else; a copy of it in another place resumes with every state variable the run
    had, on the same schedule; a second carry replaces the first, and a leftover of an
    interrupted one is cleared."""
    straight, first, second, saved = Recorder(), Recorder(), Recorder(), SavedState()
    run, carried = tmp_path / "run", str(tmp_path / "carried")
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=6), str(tmp_path / "straight"), log=quiet,
                       hooks=[straight])
        training.train(tiny_run(train_steps=6), str(run), log=quiet, hooks=[first, StopAt(3),
                                                                            saved])
        assert (run / "checkpoints" / "ckpt-2.index").exists()  # an older one, not to be carried
        os.makedirs(carried + ".partial")  # what an interrupted carry leaves
        assert RunFolder(str(run)).carry(carried) == 3
        assert not os.path.exists(carried + ".partial")
        assert sorted(os.listdir(carried)) == ["checkpoints", "config.json", "metrics.jsonl"]
        assert sorted(os.listdir(os.path.join(carried, "checkpoints"))) == [
            "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
        elsewhere = str(tmp_path / "elsewhere")
        shutil.copytree(carried, elsewhere)
        shutil.rmtree(run)
        resumed = training.Trainer(tiny_run(train_steps=6), elsewhere, log=quiet, hooks=[second])
        assert resumed.restore_or_initialise(lambda: pytest.fail("resume must not re-init")) == 3
        for before, after in zip(saved.at[3], resumed.state_variables(), strict=True):
            np.testing.assert_array_equal(before, after.numpy())
        resumed.fit()
        assert RunFolder(elsewhere).carry(carried) == 6
    assert sorted(os.listdir(os.path.join(carried, "checkpoints")))[1:] == [
        "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
    assert [r["step"] for r in metrics(carried) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    rates = [r.learning_rate for r in first.results + second.results]
    assert rates == pytest.approx([r.learning_rate for r in straight.results], rel=1e-12)


def test_a_finished_run_takes_no_more_steps(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(), str(tmp_path), log=quiet)
        lines = []
        summary = training.train(tiny_run(), str(tmp_path), log=lines.append)
    assert summary["step"] == summary["start_step"] == 3
    assert any("nothing to train" in line for line in lines), lines


def test_time_budget_stops_within_one_step_and_ends_annealed(tmp_path, mocked_tfds):
    """A checkpoint after every step: the one written after the last step (before the run
    notices the budget is spent) must already hold the spent time, or a resumed run trains on."""
    recorder = Recorder()
    budget = 4.0
    with mocked_tfds(num_examples=40):
        summary = training.train(tiny_run(train_steps=10**6, max_train_seconds=budget,
                                          warmup_steps=0, checkpoint_every_steps=1),
                                 str(tmp_path), log=quiet, hooks=[recorder])
    assert summary["stop_reason"] == "time budget spent"
    # Every step started within the budget, and the run ended once it was spent.
    assert all(r.seconds < budget for r in recorder.results)
    assert summary["seconds"] >= budget
    # The cosine spans the budget: each step's rate is the schedule's at its share of the time.
    schedule = training.Schedule(TrainConfig(train_steps=10**6, max_train_seconds=budget,
                                             warmup_steps=0))
    for result in recorder.results:
        assert result.progress == pytest.approx(result.seconds / budget)
        assert result.learning_rate == pytest.approx(schedule(result.step - 1, result.progress))
    # The run's budget is spent: the same command resumes nothing.
    with mocked_tfds(num_examples=40):
        again = training.train(tiny_run(train_steps=10**6, max_train_seconds=budget,
                                        checkpoint_every_steps=1),
                               str(tmp_path), log=quiet)
    assert again["step"] == summary["step"]
    assert again["seconds"] == pytest.approx(summary["seconds"])


def test_clipping_bounds_the_applied_update(tmp_path):
    """Adam's first update is ``lr·g/(|g|+ε)`` per weight, about lr whatever the gradient's
    scale; with the gradient clipped to a global norm of 1e-9 (far below ε = 1e-7) it is at most
    lr·1e-9/1e-7 = lr/100 per weight."""
    x = tf.random.stateless_uniform([8, 32, 32, 3], seed=[1, 2]) - 0.5
    changes = {}
    for clip in (0.0, 1e-9):
        trainer = training.Trainer(tiny_run(grad_clip_norm=clip, ema_decay=0.0,
                                            learning_rate=1e-3),
                                   str(tmp_path / str(clip)), log=quiet)
        trainer.model.data_dependent_init(x)
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        _, norm, finite = trainer._train_step(x)
        assert bool(finite) and float(norm) > 1e-3
        changes[clip] = max(float(np.max(np.abs(v.numpy() - b)))
                            for v, b in zip(trainer.model.trainable_variables, before))
    assert changes[0.0] > 0.5e-3
    assert changes[1e-9] <= 1e-3 / 100


@pytest.mark.parametrize("variant", [dict(jit_compile=True), dict(remat=True),
                                     dict(remat=True, jit_compile=True)],
                         ids=["jit_compile", "remat", "remat_jit_compile"])
def test_a_variant_training_step_equals_the_plain_one(tmp_path, variant):
    """``--jit_compile`` (XLA) and ``--remat`` (each flow step recomputed in the backward pass):
    one step of the real Trainer from the same weights on the same batch gives the plain step's
    loss, gradient norm and updated weights, to float32 round-off."""
    x = tf.random.stateless_uniform([8, 32, 32, 3], seed=[5, 6]) - 0.5
    trainers = [training.Trainer(tiny_run(learning_rate=1e-3, **settings),
                                 str(tmp_path / str(index)), log=quiet)
                for index, settings in enumerate(({}, variant))]
    trainers[0].model.data_dependent_init(x)
    for source, target in zip(trainers[0].model.variables, trainers[1].model.variables):
        target.assign(source)
    before = [v.numpy().copy() for v in trainers[0].model.trainable_variables]
    outputs = [[float(t) for t in trainer._train_step(x)] for trainer in trainers]
    assert outputs[0][2] == outputs[1][2] == 1.0  # both updates applied
    np.testing.assert_allclose(outputs[1][:2], outputs[0][:2], rtol=1e-5)
    # Adam's first update is lr·g/(|g| + ε) per weight: where |g| is near ε = 1e-7 (weights
    # behind the zero-initialised convolutions) it is tiny and mostly round-off, which XLA and
    # the recomputed graph reorder. Compare the updates to 2% of lr.
    for plain, other, start in zip(*(t.model.trainable_variables for t in trainers), before):
        np.testing.assert_allclose(other.numpy() - start, plain.numpy() - start,
                                   rtol=1e-3, atol=2e-5)
    # The step moved the weights by about the learning rate, so the comparison above has teeth.
    assert max(float(np.max(np.abs(v.numpy() - b)))
               for v, b in zip(trainers[0].model.trainable_variables, before)) > 1e-4


@pytest.mark.parametrize("name", ["adam", "adamax"])
def test_fused_optimizers_take_keras_steps_with_one_kernel_per_variable(name):
    """glow_nxn.optimizers' Adam/Adamax against Keras's own, from the same start, over 5 steps
    of varying gradients and learning rates (the bias corrections change every step): the same
    weights and slots to float32 rounding. Their traced update holds one fused kernel per
    variable and none of the assignments Keras's ``update_step`` makes."""
    start = [np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4),
             np.array([0.5, -2.0], np.float32)]
    fused_class = {"adam": optimizers.Adam, "adamax": optimizers.Adamax}[name]
    keras_class = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}[name]
    runs = []
    for optimizer_class in (fused_class, keras_class):
        variables = [tf.Variable(value) for value in start]
        optimizer = optimizer_class(learning_rate=1e-2)
        optimizer.build(variables)
        apply = tf.function(lambda grads, opt=optimizer, vs=variables:
                            opt.apply_gradients(zip(grads, vs)))
        rng = np.random.default_rng(0)
        for step in range(5):
            optimizer.learning_rate = 1e-2 / (step + 1)
            apply([tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in variables])
        runs.append((variables, optimizer))
    (fused, fused_optimizer), (reference, reference_optimizer) = runs
    for a, b, s in zip(fused, reference, start):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
        assert np.max(np.abs(a.numpy() - s)) > 1e-2  # the steps moved the weights
    for a, b in zip(fused_optimizer.variables(), reference_optimizer.variables()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    assert int(fused_optimizer.iterations.numpy()) == 5

    variables = [tf.Variable(value) for value in start]
    optimizer = fused_class(learning_rate=1e-2)
    optimizer.build(variables)
    graph = tf.function(lambda: optimizer.apply_gradients(
        zip([tf.ones_like(v) for v in variables], variables))).get_concrete_function().graph
    kinds = [op.type for op in graph.get_operations()]
    kernel = {"adam": "ResourceApplyAdam", "adamax": "ResourceApplyAdaMax"}[name]
    assert kinds.count(kernel) == len(variables)
    assert kinds.count("AssignVariableOp") == 0 and kinds.count("AssignSubVariableOp") == 0
    assert kinds.count("AssignAddVariableOp") == 1  # the iteration count


def test_weight_average_follows_its_formula():
    # decay 0.3: the ramp (1 + t)/(10 + t) is below it at t = 1, 2 and above it from t = 3.
    variable = tf.Variable([0.0, 10.0])
    average = WeightAverage([variable], decay=0.3)
    expected = np.array([0.0, 10.0])
    for t in range(1, 10):
        variable.assign_add([1.0, -1.0])
        average.update(t)
        decay = min(0.3, (1 + t) / (10 + t))
        expected = decay * expected + (1 - decay) * variable.numpy()
    np.testing.assert_allclose(average.shadows[0].numpy(), expected, rtol=1e-5)
    with average.swapped_in():
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(variable.numpy(), [9.0, 1.0])


class RawWeights(training.Hook):
    """The trainable weights at the loop's start (after the init) and after every step."""

    def on_start(self, trainer):
        self.start = [v.numpy().astype(np.float64) for v in trainer.model.trainable_variables]
        self.after = []

    def after_step(self, trainer, result):
        assert result.finite
        self.after.append([v.numpy() for v in trainer.model.trainable_variables])


def test_the_trainers_average_starts_at_the_initialised_weights_and_follows_every_step(
        tmp_path, mocked_tfds):
    weights = RawWeights()
    with mocked_tfds(num_examples=40):
        trainer = training.Trainer(tiny_run(train_steps=6, ema_decay=0.3), str(tmp_path),
                                   log=quiet, hooks=[weights])
        trainer.fit()
    expected = weights.start
    for t, raw in enumerate(weights.after, start=1):
        decay = min(0.3, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * r for e, r in zip(expected, raw)]
    assert len(weights.after) == 6
    for shadow, value in zip(trainer.average.shadows, expected, strict=True):
        np.testing.assert_allclose(shadow.numpy(), value, rtol=1e-5, atol=1e-6)


def test_average_is_checkpointed_and_loaded_by_default(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        trainer = training.Trainer(tiny_run(train_steps=4, ema_decay=0.5), str(tmp_path),
                                   log=quiet)
        trainer.fit()
    folder = RunFolder(str(tmp_path))
    averaged, raw = folder.load_model(), folder.load_model(weights="raw")
    assert (averaged.weights, raw.weights) == ("ema", "raw")
    for loaded, expected in ((averaged, trainer.average.shadows),
                             (raw, trainer.model.trainable_variables)):
        for variable, value in zip(loaded.model.trainable_variables, expected):
            np.testing.assert_array_equal(variable.numpy(), value.numpy())
    assert any(not np.array_equal(a.numpy(), r.numpy()) for a, r in zip(
        averaged.model.trainable_variables, raw.model.trainable_variables))


def test_a_run_without_average_loads_its_raw_weights(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(ema_decay=0.0), str(tmp_path), log=quiet)
    assert RunFolder(str(tmp_path)).load_model().weights == "raw"


# ---- divergence ---------------------------------------------------------------------------------

class Corrupt(training.Hook):
    """After step ``at`` (and, with ``every``, after every later step) adds ``amount`` to the
    first ActNorm's bias: the next losses explode (a huge shift) or turn NaN."""

    def __init__(self, at, amount, every=False):
        self.at, self.amount, self.every, self.done = at, amount, every, 0

    def after_step(self, trainer, result):
        if (result.step == self.at and not self.done) or (self.every and result.step >= self.at):
            bias = trainer.model.levels[0].bijectors[1].bijectors[0].bias
            bias.assign_add(tf.fill(bias.shape, self.amount))
            self.done += 1


def test_non_finite_loss_skips_the_update(tmp_path):
    trainer = training.Trainer(tiny_run(), str(tmp_path), log=quiet)
    trainer.model.data_dependent_init(tf.random.uniform([8, 32, 32, 3]) - 0.5)
    before = [v.numpy().copy() for v in trainer.state_variables() if v.dtype != tf.int64]
    loss, _, finite = trainer._train_step(tf.fill([8, 32, 32, 3], float("nan")))
    assert not bool(finite) and not np.isfinite(float(loss))
    after = [v.numpy() for v in trainer.state_variables() if v.dtype != tf.int64]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    assert int(trainer.optimizer.iterations.numpy()) == 0
    _, _, finite = trainer._train_step(tf.random.uniform([8, 32, 32, 3]) - 0.5)
    assert bool(finite) and int(trainer.optimizer.iterations.numpy()) == 1


class RestorableState(training.Hook):
    """After each step (and after the guard, which runs first): the step taken, the trainer's
    step then, and copies of all that a roll-back restores (model, optimizer, average, step)."""

    def __init__(self):
        self.after = []

    def after_step(self, trainer, result):
        variables = (trainer.model.variables + trainer.optimizer.variables()
                     + trainer.average.shadows + [trainer.state.step])
        self.after.append((result.step, trainer.step, [v.numpy().copy() for v in variables]))


def test_a_forced_spike_is_rolled_back_and_the_run_ends_healthy(tmp_path, mocked_tfds):
    lines, recorder, state = [], Recorder(), RestorableState()
    run = tiny_run(train_steps=30, warmup_steps=2, spike_window=5, checkpoint_every_steps=100,
                   log_every_steps=100)
    with mocked_tfds(num_examples=40):
        summary = training.train(run, str(tmp_path), log=lines.append,
                                 hooks=[Corrupt(at=17, amount=50.0), recorder, state])
    losses = {r.step: r.loss for r in recorder.results}
    assert summary["recoveries"] == 1 and summary["step"] == 30
    rolled_back = [line for line in lines if "rolled back to step" in line]
    assert len(rolled_back) == 1 and rolled_back[0].startswith("step 18: loss spike"), lines
    assert max(r.loss for r in recorder.results if r.step > 20) < min(losses.values()) + 1.0
    recovery = [r for r in metrics(tmp_path) if r["kind"] == "recovery"]
    # Snapshots are taken every spike_window = 5 steps while healthy: the newest before the
    # corruption after step 17 is that of step 15 (or 10, had step 15 looked unhealthy).
    assert [(r["step"], r["lr_scale"]) for r in recovery] == [(18, 0.5)]
    back = recovery[0]["rolled_back_to"]
    assert back in (10, 15)
    # The run continued from the step after it, with everything as it was then: weights,
    # optimizer slots and iterations, weight average, step.
    assert [r.step for r in recorder.results] == [*range(1, 19), *range(back + 1, 31)]
    taken, _, saved = state.after[back - 1]
    failed, now, restored = state.after[17]
    assert (taken, failed, now) == (back, 18, back)
    for before, after in zip(saved, restored, strict=True):
        np.testing.assert_array_equal(before, after)
    loaded = RunFolder(str(tmp_path)).load_model()
    assert loaded.step == 30
    assert all(np.all(np.isfinite(v.numpy())) for v in loaded.model.variables)
    # The learning rate after the roll-back is half the schedule's.
    after = [r for r in recorder.results if r.step > 15][-1]
    assert after.learning_rate == pytest.approx(
        0.5 * training.Schedule(run.train)(after.step - 1, after.progress))


def test_a_resumed_run_keeps_its_recoveries_and_their_lower_learning_rate(tmp_path, mocked_tfds):
    recorder = Recorder()
    run = functools.partial(tiny_run, train_steps=30, warmup_steps=2, spike_window=5,
                            checkpoint_every_steps=100, log_every_steps=100)
    with mocked_tfds(num_examples=40):
        training.train(run(), str(tmp_path), log=quiet,
                       hooks=[Corrupt(at=17, amount=50.0), StopAt(24)])
        summary = training.train(run(), str(tmp_path), log=quiet, hooks=[recorder])
    assert (summary["start_step"], summary["step"], summary["recoveries"]) == (24, 30, 1)
    first = recorder.results[0]
    assert first.step == 25 and first.learning_rate == pytest.approx(
        0.5 * training.Schedule(run().train)(first.step - 1, first.progress))


def test_divergence_past_the_recoveries_stops_with_the_last_healthy_checkpoint(tmp_path,
                                                                              mocked_tfds):
    run = tiny_run(train_steps=50, max_consecutive_nonfinite=3, max_recoveries=1)
    with mocked_tfds(num_examples=40):
        with pytest.raises(TrainingDiverged, match="after 1 recoveries"):
            training.train(run, str(tmp_path), log=quiet,
                           hooks=[Corrupt(at=4, amount=float("nan"), every=True)])
    loaded = RunFolder(str(tmp_path)).load_model()
    assert loaded.step == 4
    assert all(np.all(np.isfinite(v.numpy())) for v in loaded.model.variables)
    # Diverging before the first checkpoint says so, rather than naming a checkpoint "None".
    with mocked_tfds(num_examples=40):
        with pytest.raises(TrainingDiverged, match="no checkpoint was written yet: start again"):
            training.train(dataclasses.replace(run, train=dataclasses.replace(
                               run.train, checkpoint_every_steps=100)),
                           str(tmp_path / "early"), log=quiet,
                           hooks=[Corrupt(at=4, amount=float("nan"), every=True)])


# ---- faults: unreadable and unwritable checkpoints ----------------------------------------------

def damage(run, name):
    """Overwrite the data file of checkpoint ``name`` of ``run`` with garbage."""
    for path in (run / "checkpoints").glob(f"{name}.data-*"):
        path.write_bytes(b"\0garbage" * 10)


def test_an_unreadable_newest_checkpoint_is_set_aside_and_the_one_before_resumed(
        tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=4), str(tmp_path), log=quiet)
        damage(tmp_path, "ckpt-4")
        lines = []
        summary = training.train(tiny_run(train_steps=6), str(tmp_path), log=lines.append)
    unreadable = tmp_path / "checkpoints" / "unreadable"
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "ckpt-4 cannot be read" in warnings[0], lines
    assert f"moved to {unreadable}" in warnings[0]
    assert any(line.startswith("resumed from") and line.endswith("ckpt-2 at step 2")
               for line in lines), lines
    assert summary["start_step"] == 2 and summary["step"] == 6
    assert sorted(p.name for p in unreadable.iterdir()) == ["ckpt-4.data-00000-of-00001",
                                                            "ckpt-4.index"]
    # A new ckpt-4 was trained and written; the index names ckpt-2, 4 and 6, all readable.
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    assert [p.rsplit("/", 1)[1] for p in state.all_model_checkpoint_paths] == [
        "ckpt-2", "ckpt-4", "ckpt-6"]
    for name in ("ckpt-2", "ckpt-4", "ckpt-6"):
        assert RunFolder(str(tmp_path)).load_model(name).step == int(name[5:])


def test_when_no_checkpoint_can_be_read_the_resume_stops_and_moves_nothing(tmp_path,
                                                                          mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=2), str(tmp_path), log=quiet)
        damage(tmp_path, "ckpt-2")
        before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
        with pytest.raises(UserError, match="none of the 1 checkpoints in .* can be read"):
            training.train(tiny_run(train_steps=4), str(tmp_path), log=quiet)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


@contextlib.contextmanager
def file_size_limit(num_bytes, _):
    """Writes past ``num_bytes`` into one file fail (EFBIG; SIGXFSZ ignored) while it lasts."""
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (num_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@contextlib.contextmanager
def full_disk(num_bytes, run):
    """``run`` moved onto a tmpfs with ``num_bytes`` more room than it holds (ENOSPC past it);
    needs the right to mount (root), else the test is skipped."""
    used = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    disk = run.parent / "disk"
    disk.mkdir()
    pages = (used + num_bytes) // 4096 + 8  # + the pages of small files and directories
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs",
                              str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(run, disk / "run")
        shutil.rmtree(run)
        run.symlink_to(disk / "run")
        yield
        run.unlink()
        shutil.copytree(disk / "run", run)
    finally:
        # Lazily: the run's TensorBoard writer may still hold its event file open.
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


@pytest.mark.parametrize("limit", [file_size_limit, full_disk])
def test_a_checkpoint_that_cannot_be_written_ends_the_run_and_keeps_the_one_before(
        limit, tmp_path, mocked_tfds):
    run = tmp_path / "run"
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=2), str(run), log=quiet)
        data_file = next((run / "checkpoints").glob("ckpt-2.data-*"))
        with limit(data_file.stat().st_size // 2, run):
            with pytest.raises(WriteFailed, match=r"checkpoint of step 4 could not be written "
                               r".*\(.*(File too large|No space left on device)\); the newest "
                               r"checkpoint, \S+/ckpt-2, is intact"):
                training.train(tiny_run(train_steps=6), str(run), log=quiet)
    # No partial files of ckpt-4; ckpt-2 is the newest and loads.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert RunFolder(str(run)).load_model().step == 2


def test_workdir_of_another_model_is_refused(tmp_path, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=1), str(tmp_path), log=quiet)
    other = tiny_run(preset("cifar10", levels=2, steps_per_level=2, hidden_width=8))
    with pytest.raises(UserError, match="holds a run of another model"):
        training.Trainer(other, str(tmp_path))


def test_a_resume_with_another_optimizer_or_a_new_weight_average_is_refused(tmp_path,
                                                                          mocked_tfds):
    """Their checkpoints hold no variables for the new one (Adamax would read Adam's slots)."""
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=1, ema_decay=0.0), str(tmp_path), log=quiet)
    with pytest.raises(UserError, match=r"trained with --optimizer=adam; pass it to resume"):
        training.Trainer(tiny_run(optimizer="adamax", ema_decay=0.0), str(tmp_path))
    with pytest.raises(UserError, match=r"without a weight average.*pass --ema_decay=0"):
        training.Trainer(tiny_run(), str(tmp_path))
    # Dropping an average, or changing its decay, resumes.
    with mocked_tfds(num_examples=40):
        training.train(tiny_run(train_steps=2, ema_decay=0.0), str(tmp_path), log=quiet)
        training.train(tiny_run(train_steps=3, ema_decay=0.9), str(tmp_path / "averaged"),
                       log=quiet)
        training.train(tiny_run(train_steps=4, ema_decay=0.0), str(tmp_path / "averaged"),
                       log=quiet)


def test_a_file_as_workdir_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        training.Trainer(tiny_run(), str(tmp_path / "file"))


def test_config_json_is_the_whole_run(tmp_path, mocked_tfds):
    run = RunConfig(model=TINY_CIFAR, data=DataConfig(dataset="cifar10", shuffle_buffer=7),
                    train=tiny_run().train)
    with mocked_tfds(num_examples=40):
        training.train(run, str(tmp_path), log=quiet)
    assert RunFolder(str(tmp_path)).load_config() == run


@pytest.mark.parametrize("class_weight", [0.0, 1.0])
def test_a_class_conditional_step_learns_the_class_priors_and_the_classifier(tmp_path,
                                                                              class_weight):
    """One step of a class-conditional model on ``(x, labels)``: it reports the bits/dim given
    the labels (not the classifier's term), and moves the class priors of the labels it saw
    (not the others', whose gradient is zero); the classifier exists and moves exactly when
    ``class_weight > 0``. With remat the step is the same."""
    model = dataclasses.replace(TINY_CIFAR, num_classes=4, classifier=class_weight > 0)
    x = tf.random.stateless_uniform([8, 32, 32, 3], seed=[5, 6]) - 0.5
    labels = tf.constant([0, 1, 0, 1, 2, 2, 0, 1], tf.int64)  # class 3 is absent
    outputs, moved = [], []
    for remat in (False, True):
        trainer = training.Trainer(tiny_run(model, learning_rate=1e-3, class_weight=class_weight,
                                            remat=remat),
                                   str(tmp_path / str(remat)), log=quiet)
        trainer.model.data_dependent_init(x)
        prior = trainer.model.class_prior
        expected = float(tf.reduce_mean(trainer.model.bits_per_dim(
            tf.cast(tf.floor((x + 0.5) * 256), tf.uint8), ((x + 0.5) * 256) % 1.0, labels)))
        before = [v.numpy().copy() for v in prior.variables]
        outputs.append([float(t) for t in trainer._train_step((x, labels))])
        np.testing.assert_allclose(outputs[-1][0], expected, rtol=1e-5)
        changes = {v.name.split("/")[-1].split(":")[0]: np.abs(v.numpy() - b)
                   for v, b in zip(prior.variables, before)}
        assert (len(changes) == 2 * len(trainer.model.latent_shapes)
                + (2 if class_weight else 0))
        for name, change in changes.items():
            if name.startswith(("mean", "log_std")):
                assert change[:3].max() > 1e-4, name  # Adam's first step: about the lr
                assert change[3].max() == 0, name
            else:
                assert change.max() > 1e-4, name
        moved.append([v.numpy() for v in trainer.model.trainable_variables])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5)
    for a, b in zip(*moved):
        np.testing.assert_allclose(a, b, atol=2e-5)
