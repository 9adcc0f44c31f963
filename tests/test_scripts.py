"""train.py, evaluate.py, sample.py and export.py as a user runs them, on the real MNIST files."""
import functools
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

import glow_nxn
from glow_nxn import data, evaluation, objectives, sampling
from glow_nxn.config import DataConfig, preset
from glow_nxn.distributed import Replicas
from glow_nxn.run_folder import RunFolder, TrainState, training_checkpoint
from test_support import REPO, TINY_MNIST, one_error_line, run_script, script_env, tiny_run


def train_tiny_mnist(run, data_dir, steps, *extra):
    """train.py of the tiny model on MNIST for ``steps`` steps at batch 16, logging twice and
    evaluating one batch of 64 at the end; ``(run, result)``."""
    result = run_script("train.py", *TINY_MNIST, f"--workdir={run}", f"--data_dir={data_dir}",
                        f"--train_steps={steps}", "--per_replica_batch_size=16",
                        "--init_batch_size=32", f"--log_every_steps={steps // 2}",
                        f"--eval_every_steps={steps}", "--eval_max_batches=1",
                        "--eval_batch_size=64", *extra)
    return run, result


@pytest.fixture(scope="module")
def trained_mnist(tmp_path_factory, mnist_data_dir):
    """A tiny MNIST run of 4 steps. Tests that change a run copy it first (:func:`copy_of`)."""
    return train_tiny_mnist(tmp_path_factory.mktemp("mnist_run") / "run", mnist_data_dir, 4)


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
    kinds = [record["kind"] for record in RunFolder(str(run)).read_metrics()]
    assert kinds == ["start", "train", "train", "test", "end"]


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


def importance_weighted_by_hand(draw_bits):
    """numpy's ``−log₂((1/k) Σ_j 2^(−D·b_j)) / D`` over axis 0 of the draws' bits/dim ``[k, n]``
    of 28×28×1 images (glow_nxn/evaluation.py's docstring), float64 ``[n]``."""
    draw_bits = np.asarray(draw_bits, np.float64)
    nats_per_bit = 784 * np.log(2)
    return -(np.logaddexp.reduce(-nats_per_bit * draw_bits, axis=0)
             - np.log(len(draw_bits))) / nats_per_bit


def test_importance_weighted_bits_are_numpys_over_the_models_draws(trained_mnist, mnist_data_dir):
    """--importance_weighted's per-image values against numpy's log-sum-exp over the model's own
    bits/dim of each of 3 noise draws, computed here; each between the draws' minimum and their
    mean (the mean is what the default reports, also checked), so the mean over images is lower."""
    run, _ = trained_mnist
    model = RunFolder(str(run)).load_model().model
    split = data.eval_dataset("mnist", image_shape=(28, 28, 1), batch_size=250,
                              data_dir=mnist_data_dir)
    batches = list(split.take(2))
    draws = np.stack([np.concatenate([
        model.bits_per_dim(b["image"], data.evaluation_noise(b["index"], (28, 28, 1), 3, draw))
        for b in batches]) for draw in range(3)]).astype(np.float64)
    weighted = evaluation.per_image_bits(model, split, seed=3, num_dequant_samples=3,
                                         max_batches=2, importance_weighted=True)["bits"].numpy()
    np.testing.assert_allclose(weighted, importance_weighted_by_hand(draws), rtol=1e-5)
    assert np.all(weighted <= draws.mean(0) + 1e-6) and np.all(weighted >= draws.min(0) - 1e-6)
    result = evaluation.evaluate(model, split, seed=3, num_dequant_samples=3, max_batches=2,
                                 importance_weighted=True)
    mean = evaluation.evaluate(model, split, seed=3, num_dequant_samples=3, max_batches=2)
    assert result.importance_weighted and not mean.importance_weighted
    assert result.bits_per_dim == pytest.approx(weighted.mean(), rel=1e-6)
    assert mean.bits_per_dim == pytest.approx(draws.mean(), rel=1e-6)
    assert result.bits_per_dim < mean.bits_per_dim
    np.testing.assert_allclose(
        evaluation.combine_draws([tf.constant([1.5, 2.0])], 784, True), [1.5, 2.0], rtol=1e-12)


# Run in a fresh process that never imports glow_nxn: the SavedModel alone must do.
EXPORTED_USER = """
import sys
import numpy as np
import tensorflow as tf
exported = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
images, x = tf.constant(inputs["images"]), tf.constant(inputs["x"])
encoded = exported.signatures["encode"](x=x)
zs = {k: v for k, v in encoded.items() if k.startswith("z")}
results = {
    "bits_per_dim": exported.signatures["bits_per_dim"](images=images,
                                                        seed=tf.constant(3, tf.int64)),
    "log_prob": exported.log_prob(x=x),
    "logdet": {"logdet": encoded["logdet"]},
    "decoded": exported.decode(**zs),
    "sample": exported.sample(n=tf.constant(5), temperature=tf.constant(0.7),
                              seed=tf.constant(1, tf.int64)),
}
assert "glow_nxn" not in sys.modules
np.savez(sys.argv[3], **{f"{name}.{key}": value.numpy() for name, outputs in results.items()
                         for key, value in outputs.items()},
         **{k: v.numpy() for k, v in zs.items()}, latent_shapes=exported.latent_shapes.numpy())
"""


def test_export_runs_without_glow_nxn_and_gives_the_models_numbers(trained_mnist, tmp_path,
                                                                   mnist_data_dir):
    run = trained_mnist[0]
    exported = tmp_path / "new" / "exported"  # its parent is made
    result = run_script("export.py", f"--workdir={run}", f"--output={exported}")
    assert "(step 4, ema weights)" in result.stdout
    assert sorted(os.listdir(tmp_path / "new")) == ["exported"]  # no partial folder left behind
    model = glow_nxn.load(str(run))
    images = next(iter(data.evaluation_split(
        DataConfig(dataset="mnist", data_dir=mnist_data_dir), Replicas(),
        image_shape=model.config.image_shape, batch_size=6)))["image"]
    noise = tf.random.stateless_uniform(tf.shape(images), seed=[3, 0])
    x = objectives.dequantize(images, model.config.n_bits, noise)
    np.savez(tmp_path / "inputs.npz", images=images.numpy(), x=x.numpy())
    subprocess.run([sys.executable, "-c", EXPORTED_USER, str(exported),
                    str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
                   cwd=tmp_path, env=script_env(), check=True, timeout=600)
    out = np.load(tmp_path / "outputs.npz")
    zs, logdet = model.encode(x)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5)
    close(out["bits_per_dim.bits_per_dim"], model.bits_per_dim(images, noise).numpy())
    close(out["log_prob.log_prob"], model.log_prob(x).numpy())
    close(out["logdet.logdet"], logdet.numpy())
    for index, z in enumerate(zs):
        close(out[f"z{index}"], z.numpy())
    close(out["decoded.x"], model.decode(zs).numpy())
    assert out["latent_shapes"].tolist() == [list(shape) for shape in model.latent_shapes]
    latents = [0.7 * tf.random.stateless_normal([5, *shape], seed=[1, index])
               for index, shape in enumerate(model.latent_shapes)]
    sampled = model.decode(latents)
    close(out["sample.x"], sampled.numpy())
    # Its images are its own floats quantised as ours are: compared with those, not with ours,
    # since a float within rounding of a cell's edge may fall in the next cell.
    np.testing.assert_array_equal(out["sample.images"], objectives.to_uint8(
        tf.constant(out["sample.x"]), model.config.n_bits).numpy())


def test_evaluate_and_sample_pick_the_named_checkpoint_and_weights(trained_mnist, tmp_path,
                                                                   mnist_data_dir):
    """A run with ckpt-4 and, newest, ckpt-6: --checkpoint=ckpt-4 and --weights=raw reach the
    numbers and the pictures of those weights, not of the newest checkpoint or the average."""
    run = copy_of(trained_mnist[0], tmp_path)
    train_tiny_mnist(run, mnist_data_dir, 6)
    common = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--batch_size=1000"]
    scores = {}
    for name, flags in (("newest", []), ("ema4", ["--checkpoint=ckpt-4"]),
                        ("raw4", ["--checkpoint=ckpt-4", "--weights=raw"])):
        run_script("evaluate.py", *common, *flags, f"--output={tmp_path / name}.json")
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert [(s["step"], s["weights"]) for s in scores.values()] == [
        (6, "ema"), (4, "ema"), (4, "raw")]
    assert scores["raw4"]["checkpoint"].endswith("ckpt-4")
    bits = [s["bits_per_dim"] for s in scores.values()]
    assert len(set(bits)) == 3, bits  # three different sets of weights
    missing = run_script("evaluate.py", *common, "--checkpoint=ckpt-3", expect_ok=False)
    assert "no checkpoint" in one_error_line(missing) and "ckpt-3" in missing.stderr
    # sample.py draws with the named raw weights: its grid is theirs, pixel for pixel.
    drawn = run_script("sample.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                       "--checkpoint=ckpt-4", "--weights=raw", "--num_samples=4",
                       "--temperatures=0.7", "--seed=5", f"--output_dir={tmp_path / 'raw4'}")
    assert "(step 4, raw weights)" in drawn.stdout
    written = tf.io.decode_png(tf.io.read_file(str(tmp_path / "raw4" / "samples_t0.70.png")))
    raw4 = RunFolder(str(run)).load_model("ckpt-4", weights="raw").model
    np.testing.assert_array_equal(written.numpy(),
                                  sampling.sample_grid(raw4, 4, 0.7, 5).numpy())


def test_evaluate_skips_names_and_counts_undecodable_images(trained_mnist, tmp_path):
    images = tmp_path / "images"
    for split in ("train", "test"):
        (images / split).mkdir(parents=True)
        for index in range(3):
            (images / split / f"{index}.png").write_bytes(
                tf.io.encode_png(tf.fill([28, 28, 1], tf.constant(index, tf.uint8))).numpy())
    (images / "test" / "1b.png").write_bytes(b"\x89PNG truncated")
    result = run_script("evaluate.py", f"--workdir={trained_mnist[0]}",
                        f"--dataset=folder:{images}", f"--output={tmp_path / 'eval.json'}")
    assert f"warning: skipping image {images / 'test' / '1b.png'}: " in result.stdout
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert (scores["skipped_images"], scores["num_images"]) == (1, 3)


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


def test_sample_script_interpolates_chosen_images_and_edits_along_a_class_vector(
        trained_mnist, tmp_path, mnist_data_dir):
    """--interpolate=i,j starts and ends at test images i and j; --edit=3:8 writes a row per
    test image of class 3 (the image, then its edits; scale 0 is its reconstruction)."""
    run, _ = trained_mnist
    common = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--num_samples=1",
              "--temperatures=0"]
    run_script("sample.py", *common, "--interpolate=5,2", "--interpolation_steps=3", "--edit=3:8",
               "--edit_scales=0,1", "--edit_examples=20", f"--output_dir={tmp_path}")
    test = data.eval_dataset("mnist", image_shape=(28, 28, 1), batch_size=10_000,
                             data_dir=mnist_data_dir)
    batch = next(iter(test))
    model = RunFolder(str(run)).load_model().model
    reconstructed, _ = sampling.reconstruct(model, tf.gather(batch["image"], [5, 2]))

    def png(name):
        return tf.io.decode_png(tf.io.read_file(str(tmp_path / name))).numpy()

    def assert_same_picture(actual, expected):  # up to a grey level: other batch, other rounding
        assert np.abs(actual.astype(int) - np.asarray(expected, int)).max() <= 1

    line = png("interpolation.png")
    assert_same_picture(line[:, :28], reconstructed[0])
    assert_same_picture(line[:, -28:], reconstructed[1])
    threes = tf.boolean_mask(batch["image"], batch["label"] == 3)[:4]
    edits = png("edit_3_to_8.png")
    assert edits.shape == (4 * 28, 3 * 28, 1)
    rows = edits.reshape(4, 28, 3, 28, 1).transpose(0, 2, 1, 3, 4)
    np.testing.assert_array_equal(rows[:, 0], threes.numpy())
    assert_same_picture(rows[:, 1], sampling.reconstruct(model, threes)[0])
    assert np.abs(rows[:, 2].astype(int) - rows[:, 1]).max() > 0  # the vector moves the images
    for flag, message in [("--edit=3:x", "no class 'x'; the classes are 0, 1, 2"),
                          ("--interpolate=0,10000", "the test split has 10000 images")]:
        failed = run_script("sample.py", *common, flag, f"--output_dir={tmp_path / 'no'}",
                            expect_ok=False)
        assert message in one_error_line(failed)
    assert not (tmp_path / "no").exists()


def test_a_published_run_has_no_optimizer_state_and_loads_like_its_run(trained_mnist, tmp_path):
    """scripts/publish_model.py copies config.json and the newest checkpoint's model, progress
    and weight average, without the optimizer's slots; the copy loads to the same weights."""
    run, _ = trained_mnist
    published = tmp_path / "published"
    printed = run_script("scripts/publish_model.py", f"--workdir={run}",
                         f"--output={published}").stdout
    assert "ckpt-4" in printed
    names = [name for name, _ in tf.train.list_variables(str(published / "checkpoints" / "ckpt-4"))]
    assert any(name.startswith("ema/") for name in names)
    assert not any(name.startswith("optimizer/") for name in names)
    assert any(name.startswith("optimizer/") for name, _ in tf.train.list_variables(
        str(run / "checkpoints" / "ckpt-4")))
    for weights in ("ema", "raw"):
        original = RunFolder(str(run)).load_model(weights=weights)
        copy = RunFolder(str(published)).load_model(weights=weights)
        assert (copy.step, copy.weights, copy.run_config) == (4, weights, original.run_config)
        for a, b in zip(original.model.variables, copy.model.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    again = run_script("scripts/publish_model.py", f"--workdir={run}", f"--output={published}",
                       expect_ok=False)
    assert "exists: publish into a new folder" in one_error_line(again)


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


@pytest.fixture(scope="module")
def conditional_mnist(tmp_path_factory, mnist_data_dir):
    """A tiny class-conditional MNIST run with a classifier, 30 steps."""
    return train_tiny_mnist(tmp_path_factory.mktemp("conditional_run") / "run", mnist_data_dir,
                            30, "--class_conditional", "--class_weight=0.01")


def test_a_class_conditional_run_trains_evaluates_and_samples_one_class(conditional_mnist,
                                                                         tmp_path,
                                                                         mnist_data_dir):
    """--class_conditional end to end: the run's model has MNIST's 10 classes and a classifier,
    the periodic evaluation reports the class scores, evaluate.py writes them, and sample.py
    --label=3 draws the grid the model draws for class 3 (and, without it, every class in
    turn)."""
    run, result = conditional_mnist
    config = RunFolder(str(run)).load_config()
    assert config.model.num_classes == 10 and config.model.classifier
    assert config.train.class_weight == 0.01
    assert "Bayes-rule accuracy" in result.stdout and "classifier accuracy" in result.stdout
    test = RunFolder(str(run)).read_metrics()[-2]
    assert test["kind"] == "test" and 0 <= test["classifier_accuracy"] <= 1
    evaluated = run_script("evaluate.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                           f"--output={tmp_path / 'eval.json'}", "--batch_size=1000")
    assert "given each image's class" in evaluated.stdout
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["num_images"] == 10000
    classes = scores["classes"]
    assert set(classes) == {"marginal_bits_per_dim", "marginal_standard_error",
                            "bayes_accuracy", "classifier_accuracy"}
    # p(x) = (1/10) Σ_k p(x | k) ≥ p(x | y)/10: the mixture costs each image at most log2(10)
    # bits more than its own class, log2(10)/784 per dimension.
    gap = classes["marginal_bits_per_dim"] - scores["bits_per_dim"]
    assert gap <= np.log2(10) / 784
    loaded = RunFolder(str(run)).load_model()
    for label, name in (([3] * 8, "one"), (None, "every")):
        out = tmp_path / name
        run_script("sample.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                   f"--output_dir={out}", "--temperatures=0.7", "--num_samples=8", "--seed=4",
                   *(["--label=3"] if label else []))
        written = tf.io.decode_png(tf.io.read_file(str(out / "samples_t0.70.png"))).numpy()
        expected = sampling.sample_grid(loaded.model, 8, 0.7, 4, labels=label).numpy()
        np.testing.assert_array_equal(written, expected)
    assert sampling.class_order(loaded.model, 20).numpy().tolist() == [
        k for k in range(10) for _ in range(2)]
    # 20 = 10·2 samples of every class in turn: 2 columns, a row per class.
    assert sampling.sample_grid(loaded.model, 20, 0.7, 4).shape == (10 * 28, 2 * 28, 1)
    assert sampling.grid_columns(loaded.model, 8) is None
    assert sampling.grid_columns(loaded.model, 20, labels=[3] * 20) is None
    unknown = run_script("sample.py", f"--workdir={run}", f"--data_dir={mnist_data_dir}",
                         f"--output_dir={tmp_path / 'none'}", "--label=eleven", expect_ok=False)
    assert "--label: no class 'eleven'; the classes are 0, 1, 2" in one_error_line(unknown)
    # Another dataset whose images have no class cannot score a class-conditional model.
    loose = tmp_path / "loose"
    for split in ("train", "test"):
        (loose / split).mkdir(parents=True)
        tf.io.write_file(str(loose / split / "a.png"), tf.io.encode_png(tf.zeros([28, 28, 1],
                                                                                 tf.uint8)))
    other = run_script("evaluate.py", f"--workdir={run}", f"--dataset=folder:{loose}",
                       expect_ok=False)
    assert ("conditioned on the 10 classes of mnist, and --dataset=folder:" in
            one_error_line(other))


def test_class_scores_are_those_of_the_models_class_likelihoods(conditional_mnist,
                                                               mnist_data_dir):
    """evaluate()'s numbers of a class-conditional model against its own log p(x | k) for every
    class, computed here one image batch at a time: the bits/dim given the true class, the
    mixture's, and the accuracy of argmax_k (Bayes' rule) and of the classifier's logits."""
    loaded = RunFolder(str(conditional_mnist[0])).load_model()
    model = loaded.model
    split = data.eval_dataset("mnist", image_shape=(28, 28, 1), batch_size=200,
                              data_dir=mnist_data_dir)
    result = evaluation.evaluate(model, split, seed=3, max_batches=2)
    batches = list(split.take(2))
    images = tf.concat([b["image"] for b in batches], 0)
    index = tf.concat([b["index"] for b in batches], 0)
    labels = tf.concat([b["label"] for b in batches], 0).numpy()
    x = objectives.dequantize(images, 8, data.evaluation_noise(index, (28, 28, 1), 3))
    per_class = model.class_log_likelihoods(x).numpy().astype(np.float64)
    to_bits = lambda log_prob: (-log_prob + 784 * 8 * np.log(2)) / (784 * np.log(2))  # noqa: E731
    conditional = to_bits(per_class[np.arange(400), labels])
    marginal = to_bits(np.logaddexp.reduce(per_class, axis=1) - np.log(10))
    assert result.num_images == 400
    np.testing.assert_allclose(result.bits_per_dim, conditional.mean(), rtol=1e-5)
    np.testing.assert_allclose(result.classes.marginal_bits_per_dim, marginal.mean(), rtol=1e-5)
    assert result.classes.bayes_accuracy == np.mean(per_class.argmax(1) == labels)
    logits = model.class_prior.logits(model.encode(x)[0]).numpy()
    assert result.classes.classifier_accuracy == np.mean(logits.argmax(1) == labels)
    # 30 steps taught the classifier something: above chance (0.1) on 400 images.
    assert result.classes.classifier_accuracy > 0.2
    # With two noise draws, both predictions read both: argmax of the sums over the draws.
    two = evaluation.evaluate(model, split, seed=3, max_batches=2, num_dequant_samples=2)
    draws = [objectives.dequantize(images, 8, data.evaluation_noise(index, (28, 28, 1), 3, draw))
             for draw in (0, 1)]
    summed = sum(model.class_log_likelihoods(x).numpy().astype(np.float64) for x in draws)
    logits = sum(model.class_prior.logits(model.encode(x)[0]).numpy() for x in draws)
    assert two.classes.bayes_accuracy == np.mean(summed.argmax(1) == labels)
    assert two.classes.classifier_accuracy == np.mean(logits.argmax(1) == labels)
    # Importance-weighted, both scores combine their draws by log-sum-exp; Bayes' rule is as before.
    weighted = evaluation.evaluate(model, split, seed=3, max_batches=2, num_dequant_samples=2,
                                   importance_weighted=True)
    per_draw = [model.class_log_likelihoods(x).numpy().astype(np.float64) for x in draws]
    np.testing.assert_allclose(weighted.bits_per_dim, importance_weighted_by_hand(
        [to_bits(p[np.arange(400), labels]) for p in per_draw]).mean(), rtol=1e-5)
    np.testing.assert_allclose(weighted.classes.marginal_bits_per_dim, importance_weighted_by_hand(
        [to_bits(np.logaddexp.reduce(p, axis=1) - np.log(10)) for p in per_draw]).mean(), rtol=1e-5)
    assert weighted.classes.bayes_accuracy == two.classes.bayes_accuracy


def train(*flags):
    """A train.py command of the tiny model into {tmp}/w, with ``flags`` last (they win)."""
    return ["train.py", *TINY_MNIST, "--workdir={tmp}/w", *flags]


def evaluate(*flags):
    """An evaluate.py command on {tmp}/run, a run folder with a config.json and no checkpoint."""
    return ["evaluate.py", "--workdir={tmp}/run", *flags]


def sample(*flags):
    return ["sample.py", "--workdir={tmp}/run", *flags]


def export(*flags):
    """An export.py command of {tmp}/run to a new folder {tmp}/exported, ``flags`` last."""
    return ["export.py", "--workdir={tmp}/run", "--output={tmp}/exported", *flags]


ENUM = "value should be one of"
NOT_BOOLEAN = "Non-boolean argument to boolean flag"
NO_FOLDER = "{tmp}/file is a file, not a folder"
# (script, flag, command, what the one line says). Every flag of the four scripts has a case
# (test_every_flag_of_every_script_has_a_bad_input_case); {tmp} holds "file" (a file), "run" (a
# run folder without checkpoints) and "images" (one PNG and one file that is not an image).
BAD_INPUTS = [
    ("train.py", "preset", train("--preset=mnistt"), ENUM),
    ("train.py", "preset", ["train.py", "--preset=cifar10", "--dataset=mnist", "--workdir={tmp}/w"],
     "mnist images are (28, 28, 1)"),
    ("train.py", "levels", train("--levels=0"), "levels must be an integer >= 1, got 0"),
    ("train.py", "levels", train("--levels=3"), "does not fit 3 levels"),
    ("train.py", "steps_per_level", train("--steps_per_level=0"),
     "steps_per_level must be an integer >= 1"),
    ("train.py", "hidden_width", train("--hidden_width=-8"), "hidden_width must be an integer >= 1"),
    ("train.py", "mixing", train("--mixing=conv3x3"), ENUM),
    ("train.py", "coupling", train("--coupling=spline"), ENUM),
    ("train.py", "learn_top", train("--learn_top=maybe"), NOT_BOOLEAN),
    ("train.py", "n_bits", train("--n_bits=9"), "n_bits must be an integer in 1..8"),
    ("train.py", "n_bits", train("--n_bits=0"), "n_bits must be an integer in 1..8"),
    ("train.py", "logit_alpha", train("--logit_alpha=0.5"),
     "logit_alpha must be in [0, 0.5) (0: no logit transform), got 0.5"),
    ("train.py", "logit_alpha", train("--logit_alpha=nan"), "logit_alpha must be a number"),
    ("train.py", "dequantizer_width", train("--dequantizer_width=-1"),
     "dequantizer_width must be an integer >= 0, got -1"),
    ("train.py", "network_dtype", train("--network_dtype=float16"), ENUM),
    ("train.py", "seed", train("--seed=-3"), "seed must be an integer in 0..2147483647"),
    ("train.py", "dataset", train("--dataset=mnistt"), "unknown dataset 'mnistt'"),
    ("train.py", "dataset", train("--dataset=folder:{tmp}/none"), "is not a directory"),
    ("train.py", "dataset", train("--dataset=folder:{tmp}/run"), "no .png/.jpg/.jpeg images"),
    ("train.py", "data_dir", train("--data_dir={tmp}/file/tfds"), NO_FOLDER),
    ("train.py", "manual_dir", train("--manual_dir={tmp}/none"),
     "manual_dir {tmp}/none is not a folder"),
    ("train.py", "on_bad_image", train("--on_bad_image=ignore"), ENUM),
    ("train.py", "on_bad_image", train("--dataset=folder:{tmp}/images", "--on_bad_image=stop"),
     "image {tmp}/images/1.png cannot be decoded: Unknown image file format"),
    ("train.py", "shuffle_buffer", train("--shuffle_buffer=-1"),
     "shuffle_buffer must be an integer >= 0"),
    ("train.py", "augment_shift", train("--augment_shift=-1"),
     "augment_shift must be an integer >= 0"),
    ("train.py", "augment_shift", train("--augment_shift=28"),
     "augment_shift must be an integer in 0..27, got 28"),
    ("train.py", "workdir", ["train.py", "--preset=mnist"], "--workdir is required"),
    ("train.py", "workdir", train("--workdir={tmp}/file"), "is a file, not a folder"),
    ("train.py", "workdir", train("--workdir={tmp}/file/w"), NO_FOLDER),
    ("train.py", "per_replica_batch_size", train("--per_replica_batch_size=0"),
     "per_replica_batch_size must be an integer >= 1"),
    ("train.py", "per_replica_batch_size", train("--per_replica_batch_size=99999999999999999999"),
     "per_replica_batch_size must be an integer >= 1 below 2**63"),
    ("train.py", "init_batch_size", train("--init_batch_size=0"),
     "init_batch_size must be an integer >= 1"),
    ("train.py", "optimizer", train("--optimizer=sgd"), ENUM),
    ("train.py", "learning_rate", train("--learning_rate=0"),
     "learning_rate must be a number above 0"),
    ("train.py", "learning_rate", train("--learning_rate=nan"),
     "learning_rate must be a number above 0.0, got nan"),
    ("train.py", "scale_lr_by_workers", train("--scale_lr_by_workers=maybe"), NOT_BOOLEAN),
    ("train.py", "warmup_steps", train("--warmup_steps=-1"), "warmup_steps must be an integer >= 0"),
    ("train.py", "warmup_share", train("--warmup_share=0"),
     "warmup_share must be a number above 0.0 and at most 1.0, got 0.0"),
    ("train.py", "lr_schedule", train("--lr_schedule=linear"), ENUM),
    ("train.py", "lr_floor", train("--lr_floor=2"), "lr_floor must be a number in 0.0..1.0"),
    ("train.py", "grad_clip_norm", train("--grad_clip_norm=-1"),
     "grad_clip_norm must be a number >= 0.0"),
    ("train.py", "ema_decay", train("--ema_decay=1"), "ema_decay must be below 1"),
    ("train.py", "ema_decay", train("--ema_decay=-0.5"), "ema_decay must be a number in 0.0..1.0"),
    ("train.py", "train_steps", train("--train_steps=0"), "train_steps must be an integer >= 1"),
    ("train.py", "train_steps", train("--train_steps=1e3"), "invalid literal for int()"),
    ("train.py", "max_train_seconds", train("--max_train_seconds=-1"),
     "max_train_seconds must be a number >= 0.0"),
    ("train.py", "spike_threshold", train("--spike_threshold=-1"),
     "spike_threshold must be a number >= 0.0"),
    ("train.py", "spike_window", train("--spike_window=0"), "spike_window must be an integer >= 1"),
    ("train.py", "max_recoveries", train("--max_recoveries=-1"),
     "max_recoveries must be an integer >= 0"),
    ("train.py", "recovery_lr_factor", train("--recovery_lr_factor=0"),
     "recovery_lr_factor must be a number above 0.0 and at most 1.0, got 0.0"),
    ("train.py", "max_consecutive_nonfinite", train("--max_consecutive_nonfinite=0"),
     "max_consecutive_nonfinite must be an integer >= 1"),
    ("train.py", "log_every_steps", train("--log_every_steps=0"),
     "log_every_steps must be an integer >= 1"),
    ("train.py", "checkpoint_every_steps", train("--checkpoint_every_steps=0"),
     "checkpoint_every_steps must be an integer >= 1"),
    ("train.py", "keep_checkpoints", train("--keep_checkpoints=0"),
     "keep_checkpoints must be an integer >= 1"),
    ("train.py", "eval_every_steps", train("--eval_every_steps=-1"),
     "eval_every_steps must be an integer >= 0"),
    ("train.py", "eval_max_batches", train("--eval_max_batches=-1"),
     "eval_max_batches must be an integer >= 0"),
    ("train.py", "eval_batch_size", train("--eval_batch_size=0"),
     "eval_batch_size must be an integer >= 1"),
    ("train.py", "eval_weights", train("--eval_weights=best"), ENUM),
    ("train.py", "num_samples", train("--num_samples=0"), "num_samples must be an integer >= 1"),
    ("train.py", "sample_temperature", train("--sample_temperature=-1"),
     "sample_temperature must be a number >= 0.0"),
    ("train.py", "jit_compile", train("--mixing=periodic", "--jit_compile"), "drop --jit_compile"),
    ("train.py", "remat", train("--remat=maybe"), NOT_BOOLEAN),
    ("train.py", "class_conditional", train("--class_conditional=maybe"), NOT_BOOLEAN),
    ("train.py", "class_conditional", train("--class_conditional", "--dataset=folder:{tmp}/images"),
     "{tmp}/images/0.png (and 1 more) is in no class subdirectory"),
    ("train.py", "class_conditional", train("--class_conditional", "--preset=imagenet32",
                                            "--dataset=imagenet32"), "has no class labels"),
    ("train.py", "class_weight", train("--class_weight=0.01"), "add --class_conditional"),
    ("train.py", "class_weight", train("--class_conditional", "--class_weight=-1"),
     "class_weight must be a number >= 0.0, got -1.0"),
    ("train.py", "step_timeout_seconds", train("--step_timeout_seconds=-1"),
     "step_timeout_seconds must be a number >= 0.0"),
    ("train.py", "first_step_timeout_seconds", train("--first_step_timeout_seconds=nan"),
     "first_step_timeout_seconds must be a number >= 0.0"),
    ("train.py", "flagfile", train("--flagfile={tmp}/none.cfg"),
     "train.py: error: Unable to open flagfile"),
    ("train.py", "(unknown)", train("--learning_rat=1"), "Unknown command line flag"),
    ("train.py", "(argument)", train("mnist"), "unexpected arguments ['mnist']"),
    ("evaluate.py", "workdir", ["evaluate.py"], "--workdir is required"),
    ("evaluate.py", "workdir", ["evaluate.py", "--workdir={tmp}"], "no config.json"),
    ("evaluate.py", "workdir", ["evaluate.py", "--workdir={tmp}/none"], "does not exist"),
    ("evaluate.py", "checkpoint", evaluate("--checkpoint=ckpt-9"),
     "no checkpoint {tmp}/run/checkpoints/ckpt-9"),
    ("evaluate.py", "checkpoint", evaluate(), "no checkpoint in {tmp}/run/checkpoints"),
    ("evaluate.py", "weights", evaluate("--weights=best"), ENUM),
    ("evaluate.py", "dataset", evaluate("--dataset=mnistt"), "unknown dataset 'mnistt'"),
    ("evaluate.py", "dataset", evaluate("--dataset=cifar10"),
     "cifar10 images are (32, 32, 3) but the model's image_shape is (28, 28, 1)"),
    ("evaluate.py", "data_dir", evaluate("--data_dir={tmp}/file"), "is a file, not a folder"),
    ("evaluate.py", "manual_dir", evaluate("--manual_dir={tmp}/none"), "is not a folder"),
    ("evaluate.py", "on_bad_image", evaluate("--on_bad_image=ignore"), ENUM),
    ("evaluate.py", "seed", evaluate("--seed=-1"), "--seed must be an integer in 0..2147483647"),
    ("evaluate.py", "num_dequant_samples", evaluate("--num_dequant_samples=0"),
     "--num_dequant_samples must be an integer >= 1, got 0"),
    ("evaluate.py", "importance_weighted", evaluate("--importance_weighted"),
     "--importance_weighted combines several noise draws per image and --num_dequant_samples "
     "is 1: give --num_dequant_samples=16"),
    ("evaluate.py", "batch_size", evaluate("--batch_size=0"),
     "--batch_size must be an integer >= 1, got 0"),
    ("evaluate.py", "output", evaluate("--output={tmp}/none/eval.json"),
     "{tmp}/none is not an existing folder"),
    ("evaluate.py", "output", evaluate("--output={tmp}/run"), "--output {tmp}/run: is a folder"),
    ("sample.py", "workdir", ["sample.py", "--workdir={tmp}/none"], "does not exist"),
    ("sample.py", "checkpoint", sample("--checkpoint=ckpt-9"), "no checkpoint"),
    ("sample.py", "weights", sample("--weights=best"), ENUM),
    ("sample.py", "dataset", sample("--dataset=mnistt"), "unknown dataset 'mnistt'"),
    ("sample.py", "data_dir", sample("--data_dir={tmp}/file"), "is a file, not a folder"),
    ("sample.py", "manual_dir", sample("--manual_dir={tmp}/file"), "is not a folder"),
    ("sample.py", "on_bad_image", sample("--on_bad_image=ignore"), ENUM),
    ("sample.py", "temperatures", sample("--temperatures=-1"),
     "--temperatures must be a number >= 0.0, got -1.0"),
    ("sample.py", "temperatures", sample("--temperatures=inf"),
     "--temperatures must be a number >= 0.0, got inf"),
    ("sample.py", "temperatures", sample("--temperatures=warm"),
     "--temperatures must be numbers, got 'warm'"),
    ("sample.py", "temperatures", sample("--temperatures="), "at least one temperature"),
    ("sample.py", "num_samples", sample("--num_samples=0"), "--num_samples must be an integer >= 1"),
    ("sample.py", "seed", sample("--seed=-1"), "--seed must be an integer in 0..2147483647"),
    ("sample.py", "num_reconstructions", sample("--num_reconstructions=1"),
     "--num_reconstructions must be an integer >= 2"),
    ("sample.py", "interpolation_steps", sample("--interpolation_steps=1"),
     "--interpolation_steps must be an integer >= 2"),
    ("sample.py", "interpolate", sample("--interpolate=4"), "takes two test images"),
    ("sample.py", "interpolate", sample("--interpolate=0,-1"),
     "--interpolate must be an integer >= 0"),
    ("sample.py", "edit", sample("--edit=3"), "two different class names as a:b"),
    ("sample.py", "edit", sample("--edit=3:3"), "two different class names as a:b"),
    ("sample.py", "edit_images", sample("--edit_images=first"),
     "--edit_images must be test image positions"),
    ("sample.py", "edit_scales", sample("--edit_scales=nan"),
     "--edit_scales must be a number, got nan"),
    ("sample.py", "edit_scales", sample("--edit_scales="), "at least one scale"),
    ("sample.py", "edit_examples", sample("--edit_examples=0"),
     "--edit_examples must be an integer >= 1"),
    ("sample.py", "label", sample("--label=3"), "this run's model is not one"),
    ("sample.py", "output_dir", sample("--output_dir={tmp}/file"),
     "--output_dir {tmp}/file: {tmp}/file is a file"),
    ("export.py", "workdir", ["export.py", "--output={tmp}/exported"], "--workdir is required"),
    ("export.py", "workdir", export("--workdir={tmp}/none"), "does not exist"),
    ("export.py", "checkpoint", export(), "no checkpoint in {tmp}/run/checkpoints"),
    ("export.py", "checkpoint", export("--checkpoint=ckpt-9"),
     "no checkpoint {tmp}/run/checkpoints/ckpt-9"),
    ("export.py", "weights", export("--weights=best"), ENUM),
    ("export.py", "output", ["export.py", "--workdir={tmp}/run"], "--output is required"),
    ("export.py", "output", export("--output={tmp}/run"), "{tmp}/run already exists"),
    ("export.py", "output", export("--output={tmp}/run/config.json/exported"),
     "{tmp}/run/config.json is a file, not a folder"),
]


def files_under(root):
    """{path: (size, mtime)} of everything under ``root``."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in root.rglob("*")}


@pytest.mark.parametrize("script, flag, command, message", BAD_INPUTS,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(BAD_INPUTS)])
def test_bad_input_exits_with_one_line_and_writes_nothing(script, flag, command, message,
                                                          tmp_path):
    (tmp_path / "file").write_text("not a folder")
    RunFolder(str(tmp_path / "run")).save_config(tiny_run(preset("mnist", steps_per_level=1,
                                                                 hidden_width=8),
                                                          dataset="mnist"))
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(
        tf.io.encode_png(tf.zeros([28, 28, 1], tf.uint8)).numpy())
    (tmp_path / "images" / "1.png").write_text("not an image")
    before = files_under(tmp_path)
    script, *flags = [a.format(tmp=tmp_path) for a in command]
    line = one_error_line(run_script(script, *flags, expect_ok=False))
    assert message.format(tmp=tmp_path) in line, line
    assert files_under(tmp_path) == before


def project_flags_of(script):
    """The names of the flags ``script`` defines itself and through flags.py."""
    code = ("import runpy, sys; sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], "
            "run_name='script'); from absl import flags; "
            "by_module = flags.FLAGS.flags_by_module_dict(); "
            "print(' '.join(sorted({f.name for m in ('flags', 'script') "
            "for f in by_module.get(m, [])})))")
    listing = subprocess.run([sys.executable, "-c", code, script], cwd=REPO, env=script_env(),
                             capture_output=True, text=True, check=True)
    return set(listing.stdout.split())


def test_every_flag_of_every_script_has_a_bad_input_case():
    for script in ("train.py", "evaluate.py", "sample.py", "export.py"):
        defined = project_flags_of(script)
        assert "workdir" in defined and len(defined) >= 4, defined
        covered = {flag for name, flag, *_ in BAD_INPUTS if name == script}
        assert defined <= covered, (script, sorted(defined - covered))


def test_corrupted_checkpoint_is_a_one_line_error(trained_mnist, tmp_path):
    broken = copy_of(trained_mnist[0], tmp_path)
    newest = tf.train.latest_checkpoint(str(broken / "checkpoints"))
    shard = [n for n in os.listdir(broken / "checkpoints")
             if n.startswith(os.path.basename(newest) + ".data")][0]
    (broken / "checkpoints" / shard).write_bytes(b"\0garbage" * 10)
    line = one_error_line(run_script("evaluate.py", f"--workdir={broken}", expect_ok=False))
    assert "cannot be read" in line


def test_the_readme_python_example_runs_as_written(trained_mnist):
    """The README's "From Python" block, run with its run folder pointed at a trained run, and
    its TensorFlow Probability block after it: that distribution's log_prob is the loaded
    model's."""
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
    tfp_block = readme.split("### With TensorFlow Probability\n\n")[1]
    exec(tfp_block.split("```python\n")[1].split("```")[0], namespace)
    model, x = namespace["model"], namespace["x"]
    np.testing.assert_allclose(namespace["distribution"].log_prob(x).numpy(),
                               model.log_prob(x).numpy(), rtol=1e-5, atol=1e-3)
    assert namespace["draws"].shape == (3, 28, 28, 1)
    assert np.all(np.isfinite(namespace["draws"].numpy()))
    assert namespace["eps"].shape == (2, 784)


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


@pytest.mark.parametrize("name,remat", [("cifar10", False), ("imagenet32", False),
                                        ("imagenet64", False), ("celeba_hq_256", True)])
def test_the_paper_flagfiles_describe_the_papers_setups(name, remat):
    """configs/<name>.cfg is the paper's setup: its preset's model on its dataset, Adam at 1e-3,
    64 images per GPU; celeba_hq_256's also recomputes activations (no GPU fits 64 of its images
    without, docs/PERFORMANCE.md)."""
    code = ("import sys; sys.argv = ['train.py', '--workdir=w', '--flagfile=configs/%s.cfg']; "
            "import flags as f; f.define_model_flags(); f.define_data_flags(); "
            "f.define_train_flags(); f.FLAGS(sys.argv); "
            "from glow_nxn.config import preset; run = f.run_config(); "
            "print(run.model == preset('%s'), run.data.dataset, run.train.optimizer, "
            "run.train.learning_rate, run.train.per_replica_batch_size, run.train.remat)"
            % (name, name))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=script_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", name, "adam", "0.001", "64", str(remat)]


def test_train_flags_default_to_the_configs_defaults():
    """train.py with no flag but --workdir describes the run of the configs' own defaults: the
    mnist preset, DataConfig() and TrainConfig(), so no default is stated twice."""
    code = ("import sys; sys.argv = ['train.py', '--workdir=w']; "
            "import flags as f; f.define_model_flags(); f.define_data_flags(); "
            "f.define_train_flags(); f.FLAGS(sys.argv); "
            "from glow_nxn.config import DataConfig, TrainConfig, preset; "
            "run = f.run_config(); "
            "assert run.train == TrainConfig(), run.train; "
            "assert run.data == DataConfig(), run.data; "
            "assert run.model == preset('mnist'), run.model; print('same')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=script_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "same", result.stderr[-2000:]
