"""Training, evaluation and sampling end to end: the library loop and the three scripts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from glow_nxn import data, training, workdir
from glow_nxn.config import ModelConfig, preset
from glow_nxn.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MNIST = ["--preset=mnist", "--steps_per_level=1", "--hidden_width=8"]


def tiny_train_config(workdir_path, **overrides):
    settings = dict(workdir=str(workdir_path), per_replica_batch_size=8, init_batch_size=16,
                    warmup_steps=2, train_steps=3, log_every_steps=1, checkpoint_every_steps=2,
                    eval_every_steps=1000, eval_batch_size=64, eval_max_batches=1,
                    num_samples=4)
    settings.update(overrides)
    return training.TrainConfig(**settings)


def script_env():
    """This environment for a child process, minus what would mislead it: launcher ranks (it
    would think horovodrun started it) and TF_CPP_MIN_LOG_LEVEL (the scripts set their own)."""
    env = dict(os.environ)
    for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(name, None)
    return env


def run_script(script, *args, expect_ok=True):
    """Run one of the repository's scripts in a fresh Python; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                            env=script_env(), capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


# The library loop, in process, on mocked CIFAR-10.

@pytest.fixture
def cifar_model():
    return ModelConfig(image_shape=(32, 32, 3), levels=2, steps_per_level=1, hidden_width=8)


def test_few_steps_on_mocked_cifar10(tmp_path, cifar_model, mocked_tfds):
    with mocked_tfds(num_examples=40):
        summary = training.train(cifar_model, tiny_train_config(tmp_path, dataset="cifar10"),
                                 log=lambda *a: None)
    assert summary["step"] == 3 and summary["skipped_updates"] == 0
    assert np.isfinite(summary["train_bits_per_dim"])
    assert 0.0 < summary["train_bits_per_dim"] < 20.0
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-3")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert ModelConfig.from_json(json.dumps(saved["model"])) == cifar_model
    assert saved["run"]["dataset"] == "cifar10"
    assert os.listdir(tmp_path / "summaries")


def test_training_lowers_the_loss(tmp_path, mnist_data_dir):
    """30 Adam steps on real MNIST take train bits/dim well below its start (8 for noise)."""
    lines = []
    model_config = preset("mnist", steps_per_level=1, hidden_width=8)
    training.train(model_config, tiny_train_config(
        tmp_path, data_dir=mnist_data_dir, train_steps=30, log_every_steps=5,
        per_replica_batch_size=16, learning_rate=3e-3), log=lines.append)
    bits = [float(line.split("bits/dim")[1].split()[0]) for line in lines
            if line.startswith("step")]
    assert len(bits) == 6 and bits[-1] < bits[0] - 0.5, bits


def test_resume_continues_step_schedule_and_optimizer(tmp_path, cifar_model, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(cifar_model, tiny_train_config(tmp_path, dataset="cifar10"),
                       log=lambda *a: None)
        first = training.Trainer(cifar_model, tiny_train_config(tmp_path, dataset="cifar10"),
                                 log=lambda *a: None)
        tf.train.Checkpoint(model=first.model, optimizer=first.optimizer, step=first.step).read(
            str(tmp_path / "checkpoints" / "ckpt-3")).assert_existing_objects_matched()
        saved = [v.numpy().copy() for v in first.optimizer.variables()]

        lines = []
        resumed = training.Trainer(cifar_model, tiny_train_config(tmp_path, dataset="cifar10",
                                                                  train_steps=5),
                                   log=lines.append)
        assert resumed.restore_or_initialise(lambda: pytest.fail("resume must not re-init")) == 3
        assert int(resumed.optimizer.iterations.numpy()) == 3
        for before, after in zip(saved, resumed.optimizer.variables()):
            np.testing.assert_array_equal(before, after.numpy())
        summary = resumed.fit()
    assert summary["start_step"] == 3 and summary["step"] == 5
    assert int(resumed.optimizer.iterations.numpy()) == 5
    assert any("resumed from" in line and "step 3" in line for line in lines)
    lr = float(resumed.schedule(resumed.optimizer.iterations))
    assert lr == pytest.approx(1e-3)  # past the 2-step warm-up: the schedule continued


def test_warmup_schedule():
    schedule = training.WarmupSchedule(1e-3, 4)
    assert [round(float(schedule(t)), 7) for t in range(6)] == [
        2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]


def test_non_finite_loss_skips_the_update(tmp_path, cifar_model):
    trainer = training.Trainer(cifar_model, tiny_train_config(tmp_path), log=lambda *a: None)
    trainer.model.data_dependent_init(tf.random.uniform([8, 32, 32, 3]) - 0.5)
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    bad = tf.fill([8, 32, 32, 3], float("nan"))
    loss, _, finite = trainer._train_step(bad)
    assert not bool(finite) and not np.isfinite(float(loss))
    for old, variable in zip(before, trainer.model.trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())
    assert int(trainer.optimizer.iterations.numpy()) == 0
    _, _, finite = trainer._train_step(tf.random.uniform([8, 32, 32, 3]) - 0.5)
    assert bool(finite) and int(trainer.optimizer.iterations.numpy()) == 1


def test_many_non_finite_losses_stop_training_and_keep_the_checkpoint(
        tmp_path, cifar_model, mocked_tfds, monkeypatch):
    with mocked_tfds(num_examples=40):
        training.train(cifar_model, tiny_train_config(tmp_path, dataset="cifar10",
                                                      train_steps=2), log=lambda *a: None)
    good = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    nan_batches = tf.data.Dataset.from_tensors(tf.fill([8, 32, 32, 3], float("nan"))).repeat()
    monkeypatch.setattr(data, "train_dataset", lambda *a, **k: nan_batches)
    monkeypatch.setattr(data, "eval_dataset", lambda *a, **k: None)
    with pytest.raises(training.TrainingDiverged, match="4 non-finite losses in a row"):
        training.train(cifar_model, tiny_train_config(
            tmp_path, dataset="cifar10", train_steps=50, max_consecutive_nonfinite=4),
            log=lambda *a: None)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == good
    model, step, _ = workdir.load_trained_model(str(tmp_path))
    assert step == 2
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)


def test_workdir_of_another_model_is_refused(tmp_path, cifar_model, mocked_tfds):
    with mocked_tfds(num_examples=40):
        training.train(cifar_model, tiny_train_config(tmp_path, dataset="cifar10",
                                                      train_steps=1), log=lambda *a: None)
    other = ModelConfig(image_shape=(32, 32, 3), levels=2, steps_per_level=2, hidden_width=8)
    with pytest.raises(UserError, match="holds a run of another model"):
        training.Trainer(other, tiny_train_config(tmp_path, dataset="cifar10"))


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="valid: adam, adamax"):
        training.TrainConfig(workdir="w", optimizer="sgd")
    with pytest.raises(ValueError, match="per_replica_batch_size must be at least 1"):
        training.TrainConfig(workdir="w", per_replica_batch_size=0)


# The scripts, as a user runs them, on the real MNIST files.

@pytest.fixture(scope="module")
def trained_mnist(tmp_path_factory, mnist_data_dir):
    run = tmp_path_factory.mktemp("mnist_run")
    result = run_script("train.py", *TINY_MNIST, f"--workdir={run}",
                        f"--data_dir={mnist_data_dir}", "--train_steps=4",
                        "--per_replica_batch_size=16", "--init_batch_size=32",
                        "--log_every_steps=2", "--eval_every_steps=4", "--eval_max_batches=1",
                        "--eval_batch_size=64")
    return run, result


def test_train_script_on_real_mnist(trained_mnist):
    run, result = trained_mnist
    assert "finished at step 4" in result.stdout
    assert "test bits/dim" in result.stderr + result.stdout
    assert (run / "checkpoints" / "ckpt-4.index").exists()


def test_evaluate_script_is_deterministic_over_the_whole_test_split(trained_mnist,
                                                                    mnist_data_dir):
    run, _ = trained_mnist
    outputs = []
    for name in ("a.json", "b.json"):
        run_script("evaluate.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                   f"--output={run / name}", "--batch_size=500")
        outputs.append(json.loads((run / name).read_text()))
    assert outputs[0] == outputs[1]
    assert outputs[0]["num_images"] == 10000 and outputs[0]["step"] == 4
    assert 0.5 < outputs[0]["bits_per_dim"] < 9.0
    assert 0.0 < outputs[0]["standard_error"] < 0.1
    two = run_script("evaluate.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                     f"--output={run / 'k2.json'}", "--num_dequant_samples=2")
    assert "over 10000 images" in two.stdout
    k2 = json.loads((run / "k2.json").read_text())
    assert abs(k2["bits_per_dim"] - outputs[0]["bits_per_dim"]) < 0.01


def test_sample_script_writes_grids_and_reconstructs(trained_mnist, mnist_data_dir):
    run, _ = trained_mnist
    result = run_script("sample.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                        "--num_samples=4", "--temperatures=0,0.7")
    error = float(result.stdout.split("decode(encode(x))| = ")[1].split()[0])
    assert error < 0.01  # pixel units: far below one grey level
    written = sorted(os.listdir(run / "samples"))
    assert written == ["interpolation.png", "reconstructions.png", "samples_t0.00.png",
                       "samples_t0.70.png"]
    grid = tf.io.decode_png(tf.io.read_file(str(run / "samples" / "samples_t0.70.png")))
    assert tuple(grid.shape) == (56, 56, 1)


def test_main_job_resumes(trained_mnist, mnist_data_dir):
    run, _ = trained_mnist
    result = run_script("train.py", *TINY_MNIST, f"--workdir={run}",
                        f"--data_dir={mnist_data_dir}", "--train_steps=6",
                        "--per_replica_batch_size=16", "--eval_every_steps=1000")
    assert "resumed from" in result.stderr + result.stdout
    assert "finished at step 6" in result.stdout


BAD_INPUTS = {
    "unknown dataset": (["train.py", *TINY_MNIST, "--dataset=mnistt", "--workdir={tmp}"],
                        "unknown dataset"),
    "no checkpoint": (["evaluate.py", "--workdir={tmp}"], "no config.json"),
    "image size vs levels": (["train.py", "--preset=mnist", "--levels=3", "--workdir={tmp}"],
                             "does not fit 3 levels"),
    "n_bits too large": (["train.py", "--preset=mnist", "--n_bits=9", "--workdir={tmp}"],
                         "n_bits must be an integer in 1..8"),
    "n_bits zero": (["train.py", "--preset=mnist", "--n_bits=0", "--workdir={tmp}"],
                    "n_bits must be an integer in 1..8"),
    "unknown mixing": (["train.py", "--preset=mnist", "--mixing=conv3x3", "--workdir={tmp}"],
                       "valid: "),
    "no workdir": (["train.py", "--preset=mnist"], "--workdir is required"),
    "periodic under XLA": (["train.py", "--preset=mnist", "--mixing=periodic", "--jit_compile",
                            "--workdir={tmp}"], "drop --jit_compile"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_with_one_line(case, tmp_path):
    args, message = BAD_INPUTS[case]
    script, *flags = [a.format(tmp=tmp_path) for a in args]
    result = run_script(script, *flags, expect_ok=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_corrupted_checkpoint_is_a_one_line_error(trained_mnist, tmp_path):
    run, _ = trained_mnist
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((run / "config.json").read_text())
    (broken / "checkpoints").mkdir()
    for name in os.listdir(run / "checkpoints"):
        (broken / "checkpoints" / name).write_bytes((run / "checkpoints" / name).read_bytes())
    newest = tf.train.latest_checkpoint(str(broken / "checkpoints"))
    shard = [n for n in os.listdir(broken / "checkpoints")
             if n.startswith(os.path.basename(newest) + ".data")][0]
    (broken / "checkpoints" / shard).write_bytes(b"\0garbage" * 10)
    result = run_script("evaluate.py", f"--workdir={broken}", expect_ok=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be read" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
