"""Helpers shared by the test modules: running the repository's scripts, tiny runs."""
import os
import subprocess
import sys

from glow_nxn.config import DataConfig, ModelConfig, RunConfig, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The mnist preset cut down to one flow step per level and width-8 networks: seconds per run.
TINY_MNIST = ["--preset=mnist", "--steps_per_level=1", "--hidden_width=8"]
TINY_CIFAR = ModelConfig(image_shape=(32, 32, 3), levels=2, steps_per_level=1, hidden_width=8)


def tiny_run(model=TINY_CIFAR, dataset="cifar10", data=None, **train_overrides):
    """A RunConfig of a few tiny steps: batch 8, evaluation off, every step logged."""
    settings = dict(per_replica_batch_size=8, init_batch_size=16, warmup_steps=2, train_steps=3,
                    log_every_steps=1, checkpoint_every_steps=2, eval_every_steps=0,
                    eval_batch_size=64, eval_max_batches=1, num_samples=4)
    settings.update(train_overrides)
    data = data or DataConfig(dataset=dataset)
    return RunConfig(model=model, data=data, train=TrainConfig(**settings))


def script_env():
    """This environment for a child process, minus what would mislead it: launcher ranks (it
    would think horovodrun started it) and TF_CPP_MIN_LOG_LEVEL (the scripts set their own)."""
    env = dict(os.environ)
    for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(name, None)
    return env


def run_script(script, *args, expect_ok=True, env=None, timeout=600, preexec_fn=None):
    """Run one of the repository's scripts in a fresh Python; returns the CompletedProcess.
    ``preexec_fn`` runs in the child before the script (e.g. to set a resource limit)."""
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                            env={**script_env(), **(env or {})}, capture_output=True, text=True,
                            timeout=timeout, preexec_fn=preexec_fn)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def one_error_line(result, code=2):
    """The single stderr line of a script that failed on purpose with exit ``code``."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]
