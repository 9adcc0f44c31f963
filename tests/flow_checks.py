"""The three checks every bijector and the whole model go through (one helper, used everywhere).

A *flow* here is a pair of callables ``forward(x) -> (y, logdet[B])`` and
``inverse(y) -> (x, logdet[B])``; ``y`` may be a tensor or a list of tensors (the model's
latents). Inputs are small (``D = H·W·C`` in the hundreds) so brute-force Jacobians are cheap.

Random draws: the tests' fixture (``tests/conftest.py``) seeds Python, NumPy and TensorFlow from
``GLOW_TEST_SEED`` (default 0) before every test; the coupling networks' initial weights and
:func:`perturb` draw from that seed. The shared checks run again at the next two seeds
(:data:`SEEDS`, :func:`reseed`), so CI sees three draws of every layer and model; a failing
test's id names its seed, and ``GLOW_TEST_SEED=N`` shifts all three.
"""
import os

import numpy as np
import tensorflow as tf

from glow_nxn.keras import keras

ROUND_TRIP_TOLERANCE = 1e-4
LOGDET_RELATIVE_TOLERANCE = 1e-4

SUITE_SEED = int(os.environ.get("GLOW_TEST_SEED", "0"))
# The seeds the shared checks run at: the suite's and the next two.
SEEDS = (SUITE_SEED, SUITE_SEED + 1, SUITE_SEED + 2)


def seed_id(seed):
    """A test id for ``seed``: ``seed1``."""
    return f"seed{seed}"


def reseed(seed):
    """Seed Python, NumPy and TensorFlow with ``seed`` (the suite's: what the fixture did)."""
    keras.utils.set_random_seed(seed)


def perturb(variables, scale=0.1):
    """Move every trainable float variable away from its (often identity) starting value by
    ``N(0, scale²)`` noise drawn from NumPy's global generator (seeded per test)."""
    for variable in variables:
        if variable.trainable and variable.dtype.is_floating:
            noise = np.random.normal(scale=scale, size=variable.shape).astype(np.float32)
            variable.assign_add(noise)


def flatten(y):
    """A tensor or list of ``[B, ...]`` tensors → ``[B, D]``."""
    parts = y if isinstance(y, (list, tuple)) else [y]
    return tf.concat([tf.reshape(p, [tf.shape(p)[0], -1]) for p in parts], axis=1)


def check_round_trip(forward, inverse, x):
    """``inverse(forward(x)) == x`` to 1e-4, and the inverse's log-det is minus the forward's."""
    y, logdet = forward(x)
    x_back, inverse_logdet = inverse(y)
    assert logdet.shape == [x.shape[0]], f"log-det shape {logdet.shape}, want [{x.shape[0]}]"
    assert inverse_logdet.shape == logdet.shape, \
        f"inverse log-det shape {inverse_logdet.shape}, want [{x.shape[0]}]"
    error = float(tf.reduce_max(tf.abs(x_back - x)))
    assert error < ROUND_TRIP_TOLERANCE, f"round-trip error {error}"
    np.testing.assert_allclose(inverse_logdet.numpy(), -logdet.numpy(), rtol=1e-5, atol=1e-3)


def brute_force_logdet(forward, x):
    """``log|det ∂forward(x)/∂x|`` per example, by ``batch_jacobian`` and float64 ``slogdet``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = flatten(forward(x)[0])
    jacobian = tape.batch_jacobian(y, x)  # [B, D, H, W, C]
    jacobian = tf.reshape(jacobian, [x.shape[0], y.shape[1], -1]).numpy().astype(np.float64)
    sign, logabsdet = np.linalg.slogdet(jacobian)
    assert np.all(sign != 0), "the Jacobian is singular"
    return logabsdet


def check_logdet(forward, x):
    """The returned log-det equals the brute-force one to a relative error of 1e-4."""
    expected = brute_force_logdet(forward, x)
    actual = forward(x)[1].numpy().astype(np.float64)
    scale = np.maximum(np.abs(expected), 1.0)
    relative = np.max(np.abs(actual - expected) / scale)
    assert relative < LOGDET_RELATIVE_TOLERANCE, (
        f"log-det {actual} vs brute force {expected}: relative error {relative}")


def check_eager_equals_function(forward, inverse, x, atol=1e-5):
    """The same results eagerly and inside ``tf.function`` (forward and inverse), to ``atol`` on
    outputs and ``10·atol`` on log-dets: float32 round-off of operations that graph optimisations
    fuse or reorder."""
    y, logdet = forward(x)
    y_graph, logdet_graph = tf.function(forward)(x)
    np.testing.assert_allclose(flatten(y_graph).numpy(), flatten(y).numpy(), atol=atol)
    np.testing.assert_allclose(logdet_graph.numpy(), logdet.numpy(), rtol=1e-5, atol=atol * 10)
    x_back, inverse_logdet = inverse(y)
    x_back_graph, inverse_logdet_graph = tf.function(inverse)(y)
    np.testing.assert_allclose(x_back_graph.numpy(), x_back.numpy(), atol=atol)
    np.testing.assert_allclose(inverse_logdet_graph.numpy(), inverse_logdet.numpy(), rtol=1e-5,
                               atol=atol * 10)


def check_all(forward, inverse, x):
    """The three checks, in order."""
    check_round_trip(forward, inverse, x)
    check_logdet(forward, x)
    check_eager_equals_function(forward, inverse, x)
