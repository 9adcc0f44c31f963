"""The MNIST model published in models/mnist: read like any run, and as good as documented.

Its eval.json is evaluate.py's output on all 10,000 test images (written by ``python evaluate.py
--workdir=models/mnist``); docs/RESULTS.md quotes it. Here 1,000 of those images are scored again
with the same noise, and the mean must lie within 3 standard errors of the documented figure.
"""
import json
import os

import tensorflow as tf

import glow_nxn
from glow_nxn import data, evaluation
from glow_nxn.config import DataConfig
from glow_nxn.distributed import Replicas
from test_support import REPO, run_script

PUBLISHED = os.path.join(REPO, "models", "mnist")


def documented():
    with open(os.path.join(PUBLISHED, "eval.json")) as handle:
        return json.load(handle)


def test_the_published_figure_is_the_one_docs_quote():
    result = documented()
    assert (result["num_images"], result["weights"], result["dataset"]) == (10_000, "ema", "mnist")
    with open(os.path.join(REPO, "docs", "RESULTS.md")) as handle:
        assert f"{result['bits_per_dim']:.4f} ± {result['standard_error']:.4f}" in handle.read()


def test_the_published_model_scores_its_documented_bits_per_dim(mnist_data_dir):
    result = documented()
    model = glow_nxn.load(PUBLISHED)
    test = data.evaluation_split(DataConfig(dataset="mnist", data_dir=mnist_data_dir), Replicas(),
                                 image_shape=model.config.image_shape, batch_size=250)
    part = evaluation.evaluate(model, test, seed=result["seed"], max_batches=4)
    assert part.num_images == 1000
    assert abs(part.bits_per_dim - result["bits_per_dim"]) <= 3 * part.standard_error, (
        part.bits_per_dim, part.standard_error, result["bits_per_dim"])


def test_sample_py_draws_from_the_published_model(tmp_path, mnist_data_dir):
    printed = run_script("sample.py", f"--workdir={PUBLISHED}", f"--data_dir={mnist_data_dir}",
                         "--num_samples=4", "--temperatures=0.7",
                         f"--output_dir={tmp_path}").stdout
    assert "ema weights" in printed
    grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "samples_t0.70.png")))
    assert tuple(grid.shape) == (56, 56, 1) and int(tf.reduce_max(grid)) > 0
