"""train.py, evaluate.py and sample.py as a user runs them, on the real MNIST files."""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from glow_nxn import data, evaluation
from glow_nxn.distributed import Replicas
from glow_nxn.run_folder import RunFolder, TrainState, training_checkpoint
from test_support import REPO, TINY_MNIST, one_error_line, run_script, script_env


@pytest.fixture(scope="module")
def trained_mnist(tmp_path_factory, mnist_data_dir):
    """A tiny MNIST run of 4 steps. Tests that change a run copy it first (:func:`copy_of`)."""
    run = tmp_path_factory.mktemp("mnist_run") / "run"
    result = run_script("train.py", *TINY_MNIST, f"--workdir={run}",
                        f"--data_dir={mnist_data_dir}", "--train_steps=4",
                        "--per_replica_batch_size=16", "--init_batch_size=32",
                        "--log_every_steps=2", "--eval_every_steps=4", "--eval_max_batches=1",
                        "--eval_batch_size=64")
    return run, result


def copy_of(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def test_train_script_on_real_mnist(trained_mnist):
    run, result = trained_mnist
    assert "finished at step 4 (train_steps reached)" in result.stdout
    assert "0 unreadable images skipped" in result.stdout
    assert "test bits/dim" in result.stdout
    assert (run / "checkpoints" / "ckpt-4.index").exists()
    kinds = [json.loads(line)["kind"] for line in open(run / "metrics.jsonl")]
    assert kinds == ["train", "train", "test"]


def test_evaluate_script_is_deterministic_over_the_whole_test_split(trained_mnist, tmp_path,
                                                                    mnist_data_dir):
    run, _ = trained_mnist
    outputs = []
    for name in ("a.json", "b.json"):
        run_script("evaluate.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                   f"--output={tmp_path / name}", "--batch_size=500")
        outputs.append(json.loads((tmp_path / name).read_text()))
    assert outputs[0] == outputs[1]
    result = outputs[0]
    assert result["num_images"] == 10000 and result["step"] == 4
    assert result["weights"] == "ema" and result["num_nonfinite"] == 0
    assert result["median"] <= result["percentile_99"] <= result["maximum"]
    assert result["worst"][0][1] == result["maximum"]
    two = run_script("evaluate.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                     f"--output={tmp_path / 'k2.json'}", "--num_dequant_samples=2")
    assert "over 10000 images" in two.stdout
    k2 = json.loads((tmp_path / "k2.json").read_text())
    # Two noise draws per image estimate the same expectation: within a few standard errors.
    assert abs(k2["bits_per_dim"] - result["bits_per_dim"]) < 4 * result["standard_error"]


def test_evaluate_mean_and_standard_error_are_numpys(trained_mnist, mnist_data_dir):
    """evaluate()'s numbers against numpy over per-image values computed here, by hand, from
    the same images and the same noise."""
    run, _ = trained_mnist
    loaded = RunFolder(str(run)).load_model()
    config = loaded.run_config.data
    split = data.evaluation_split(config.__class__(dataset="mnist", data_dir=mnist_data_dir),
                                  Replicas(), image_shape=(28, 28, 1), batch_size=250)
    by_hand = []
    for batch_number, batch in enumerate(split):
        if batch_number == 4:
            break
        noise = data.evaluation_noise(batch["index"], (28, 28, 1), seed=3)
        by_hand.append(loaded.model.bits_per_dim(batch["image"], noise).numpy())
    by_hand = np.concatenate(by_hand).astype(np.float64)
    result = evaluation.evaluate(loaded.model, split, seed=3, max_batches=4)
    assert result.num_images == by_hand.size == 1000
    assert result.bits_per_dim == pytest.approx(np.mean(by_hand), rel=1e-6)
    assert result.standard_error == pytest.approx(np.std(by_hand, ddof=1) / np.sqrt(1000),
                                                  rel=1e-4)
    assert result.median == pytest.approx(np.median(by_hand), rel=1e-6)
    assert result.maximum == pytest.approx(np.max(by_hand), rel=1e-6)


def test_evaluate_and_sample_pick_the_named_checkpoint_and_weights(trained_mnist, tmp_path,
                                                                   mnist_data_dir):
    run, _ = trained_mnist
    common = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--batch_size=1000"]
    run_script("evaluate.py", *common, "--checkpoint=ckpt-4", "--weights=raw",
               f"--output={tmp_path / 'raw.json'}")
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert (raw["step"], raw["weights"]) == (4, "raw")
    assert raw["checkpoint"].endswith("ckpt-4")
    missing = run_script("evaluate.py", *common, "--checkpoint=ckpt-3", expect_ok=False)
    assert "no checkpoint" in one_error_line(missing) and "ckpt-3" in missing.stderr


def test_sample_script_writes_grids_and_reconstructs(trained_mnist, tmp_path, mnist_data_dir):
    run, _ = trained_mnist
    result = run_script("sample.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                        "--num_samples=4", "--temperatures=0,0.7",
                        f"--output_dir={tmp_path / 'samples'}")
    error = float(result.stdout.split("decode(encode(x))| = ")[1].split()[0])
    assert error < 0.01  # pixel units: far below one grey level
    assert "ema weights" in result.stdout
    written = sorted(os.listdir(tmp_path / "samples"))
    assert written == ["interpolation.png", "reconstructions.png", "samples_t0.00.png",
                       "samples_t0.70.png"]
    grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "samples" / "samples_t0.70.png")))
    assert tuple(grid.shape) == (56, 56, 1)


def test_main_job_resumes(trained_mnist, tmp_path, mnist_data_dir):
    run = copy_of(trained_mnist[0], tmp_path)
    result = run_script("train.py", *TINY_MNIST, f"--workdir={run}",
                        f"--data_dir={mnist_data_dir}", "--train_steps=6",
                        "--per_replica_batch_size=16", "--eval_every_steps=0")
    assert "resumed from" in result.stdout
    assert "finished at step 6" in result.stdout


def test_a_broken_model_is_reported_not_rendered(trained_mnist, tmp_path, mnist_data_dir):
    """A checkpoint whose weights hold a NaN: evaluate.py and sample.py exit 3 with one line,
    and sample.py writes no picture."""
    run = copy_of(trained_mnist[0], tmp_path)
    folder = RunFolder(str(run))
    loaded = folder.load_model(weights="raw")
    bias = loaded.model.levels[0].bijectors[1].bijectors[0].bias
    bias.assign(tf.fill(bias.shape, float("nan")))
    state = TrainState()
    state.step.assign(5)
    training_checkpoint(loaded.model, state).write(os.path.join(folder.checkpoint_dir, "ckpt-5"))
    common = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--checkpoint=ckpt-5"]
    evaluated = run_script("evaluate.py", *common, "--batch_size=1000", expect_ok=False)
    assert "non-finite bits/dim" in one_error_line(evaluated, code=3)
    sampled = run_script("sample.py", *common, f"--output_dir={tmp_path / 'pictures'}",
                         expect_ok=False)
    assert "not finite" in one_error_line(sampled, code=3)
    assert not (tmp_path / "pictures").exists()


BAD_INPUTS = {
    "unknown dataset": (["train.py", *TINY_MNIST, "--dataset=mnistt", "--workdir={tmp}/w"],
                        "unknown dataset"),
    "no checkpoint": (["evaluate.py", "--workdir={tmp}"], "no config.json"),
    "workdir missing": (["sample.py", "--workdir={tmp}/none"], "does not exist"),
    "workdir is a file": (["train.py", *TINY_MNIST, "--workdir={tmp}/file"],
                          "is a file, not a folder"),
    "image size vs levels": (["train.py", "--preset=mnist", "--levels=3", "--workdir={tmp}/w"],
                             "does not fit 3 levels"),
    "n_bits too large": (["train.py", "--preset=mnist", "--n_bits=9", "--workdir={tmp}/w"],
                         "n_bits must be an integer in 1..8"),
    "n_bits zero": (["train.py", "--preset=mnist", "--n_bits=0", "--workdir={tmp}/w"],
                    "n_bits must be an integer in 1..8"),
    "unknown mixing": (["train.py", "--preset=mnist", "--mixing=conv3x3", "--workdir={tmp}/w"],
                       "value should be one of"),
    "unknown flag": (["train.py", "--workdir={tmp}/w", "--learning_rat=1"],
                     "Unknown command line flag"),
    "no workdir": (["train.py", "--preset=mnist"], "--workdir is required"),
    "periodic under XLA": (["train.py", "--preset=mnist", "--mixing=periodic", "--jit_compile",
                            "--workdir={tmp}/w"], "drop --jit_compile"),
    "negative eval interval": (["train.py", *TINY_MNIST, "--eval_every_steps=-1",
                                "--workdir={tmp}/w"], "eval_every_steps must be an integer >= 0"),
    "seed out of range": (["train.py", *TINY_MNIST, "--seed=-3", "--workdir={tmp}/w"],
                          "seed must be an integer in 0..2147483647"),
    "zero learning rate": (["train.py", *TINY_MNIST, "--learning_rate=0", "--workdir={tmp}/w"],
                           "learning_rate must be a number above 0"),
    "ema decay of one": (["train.py", *TINY_MNIST, "--ema_decay=1", "--workdir={tmp}/w"],
                         "ema_decay must be below 1"),
    "preset without dataset": (["train.py", "--preset=cifar10", "--dataset=mnist",
                                "--workdir={tmp}/w"], "mnist images are (28, 28, 1)"),
    "negative temperature": (["sample.py", "--workdir={tmp}", "--temperatures=-1"],
                             "--temperatures must be >= 0"),
    "zero dequantisation draws": (["evaluate.py", "--workdir={tmp}", "--num_dequant_samples=0"],
                                  "--num_dequant_samples and --batch_size must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_with_one_line(case, tmp_path):
    args, message = BAD_INPUTS[case]
    (tmp_path / "file").write_text("not a folder")
    script, *flags = [a.format(tmp=tmp_path) for a in args]
    line = one_error_line(run_script(script, *flags, expect_ok=False))
    assert message in line, line
    assert not (tmp_path / "w").exists() or not os.listdir(tmp_path / "w")


def test_corrupted_checkpoint_is_a_one_line_error(trained_mnist, tmp_path):
    broken = copy_of(trained_mnist[0], tmp_path)
    newest = tf.train.latest_checkpoint(str(broken / "checkpoints"))
    shard = [n for n in os.listdir(broken / "checkpoints")
             if n.startswith(os.path.basename(newest) + ".data")][0]
    (broken / "checkpoints" / shard).write_bytes(b"\0garbage" * 10)
    line = one_error_line(run_script("evaluate.py", f"--workdir={broken}", expect_ok=False))
    assert "cannot be read" in line


def test_the_readme_python_example_runs_as_written(trained_mnist):
    """The README's "From Python" block, run with its run folder pointed at a trained run."""
    run, _ = trained_mnist
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    block = readme.split("### From Python\n\n```python\n")[1].split("```")[0]
    assert 'glow_nxn.load("runs/mnist")' in block
    namespace = {}
    exec(block.replace('"runs/mnist"', repr(str(run))), namespace)
    assert namespace["samples"].shape == (4, 28, 28, 1)
    assert np.all(np.isfinite(namespace["model"].bits_per_dim(
        tf.zeros([2, 28, 28, 1], tf.uint8)).numpy()))
    np.testing.assert_allclose(namespace["x"].numpy(), 0.0, atol=1e-4)


def limit_file_size_to_20kb():
    """In the child: a write past 20 kB into one file fails with EFBIG, as on a full disk (a
    tiny MNIST checkpoint's data file is 43 kB)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(
        resource.RLIMIT_FSIZE)[1]))


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_exit_74(tmp_path, mnist_data_dir):
    result = run_script("train.py", *TINY_MNIST, f"--workdir={tmp_path / 'run'}",
                        f"--data_dir={mnist_data_dir}", "--train_steps=2",
                        "--per_replica_batch_size=8", "--init_batch_size=8",
                        "--eval_every_steps=0", expect_ok=False,
                        preexec_fn=limit_file_size_to_20kb)
    line = one_error_line(result, code=74)
    assert line.startswith("train.py: error: checkpoint of step 2 could not be written"), line
    assert "File too large" in line and "there is no earlier checkpoint" in line
    assert os.listdir(tmp_path / "run" / "checkpoints") == []


def stop_after_first_progress_line(command, number):
    """Start ``command``, send it signal ``number`` once it has printed a progress line; returns
    ``(the line, CompletedProcess-like result, seconds from the signal to the exit)``."""
    process = subprocess.Popen(command, cwd=REPO, env={**script_env(), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("step"):
            break
    process.send_signal(number)
    signalled = time.time()
    stdout, stderr = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(command, process.returncode, "".join(seen) + stdout,
                                         stderr)
    return seen[-1], result, time.time() - signalled


STOPPED = re.compile(r"^train\.py: stopped: (SIG\w+) received, stopped at step (\d+): newest "
                     r"checkpoint (\S+); the same command resumes from it$")


def test_sigterm_and_sigint_stop_after_a_checkpoint_and_the_same_command_resumes(
        tmp_path, mnist_data_dir):
    """A real signal after the first progress line: exit 75 within seconds, one line naming the
    checkpoint of the step reached; the same command resumes from it (and is stopped again)."""
    command = [sys.executable, os.path.join(REPO, "train.py"), *TINY_MNIST,
               f"--workdir={tmp_path / 'run'}", f"--data_dir={mnist_data_dir}",
               "--train_steps=100000", "--log_every_steps=1", "--checkpoint_every_steps=100000",
               "--eval_every_steps=0", "--per_replica_batch_size=8", "--init_batch_size=8"]
    stopped_at = 0
    for number in (signal.SIGTERM, signal.SIGINT):
        line, result, seconds = stop_after_first_progress_line(command, number)
        first_step = int(line.split()[1])
        match = STOPPED.match(one_error_line(result, code=75))
        assert match, result.stderr
        name, step, checkpoint = match[1], int(match[2]), match[3]
        assert name == number.name and step >= first_step > stopped_at
        assert checkpoint == str(tmp_path / "run" / "checkpoints" / f"ckpt-{step}")
        assert RunFolder(str(tmp_path / "run")).load_model(checkpoint).step == step
        assert f"step {step}: {name} received; stopping" in result.stdout
        if stopped_at:
            assert f"resumed from {tmp_path / 'run'}/checkpoints/ckpt-{stopped_at} at step " \
                   f"{stopped_at}" in result.stdout
        # A few tiny steps and one 50 kB checkpoint, on a busy 2-core machine.
        assert seconds < 30, seconds
        stopped_at = step
