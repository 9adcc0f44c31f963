"""The numerical conventions of glow_nxn.objectives, checked by hand."""
import math

import numpy as np
import pytest
import tensorflow as tf

from glow_nxn import objectives


@pytest.mark.parametrize("n_bits", range(1, 9))
def test_uniform_density_on_the_unit_cell_scores_exactly_n_bits(n_bits):
    bpd = objectives.bits_per_dim(tf.zeros([3]), num_dims=28 * 28, n_bits=n_bits)
    np.testing.assert_allclose(bpd.numpy(), float(n_bits), rtol=0, atol=1e-6)


def test_bits_per_dim_hand_computed():
    # log p = -1000 nats over D = 784 dims at 8 bits: (1000 + 784·8·ln2) / (784·ln2).
    expected = (1000.0 + 784 * 8 * math.log(2)) / (784 * math.log(2))
    actual = objectives.bits_per_dim(tf.constant([-1000.0], tf.float64), 784, 8).numpy()[0]
    assert abs(actual - expected) < 1e-6
    assert abs(actual - 9.8401722) < 1e-6  # 1000 / 543.4273 + 8, by hand


def test_reduce_bits_and_dequantize_by_hand():
    images = tf.constant([[0, 7, 8, 255]], dtype=tf.uint8)
    np.testing.assert_array_equal(objectives.reduce_bits(images, 5).numpy(), [[0, 0, 1, 31]])
    y = objectives.dequantize(images, 5, tf.constant([[0.0, 0.5, 0.25, 0.999]]))
    np.testing.assert_allclose(y.numpy(), [[-0.5, 0.5 / 32 - 0.5, 1.25 / 32 - 0.5,
                                            31.999 / 32 - 0.5]], atol=1e-7)


@pytest.mark.parametrize("n_bits", [1, 5, 8])
def test_to_uint8_inverts_dequantize_for_any_noise(n_bits):
    images = tf.constant(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1))
    reduced = (np.arange(256) // 2 ** (8 - n_bits)) * 2 ** (8 - n_bits)
    for noise in (0.0, 0.5, 0.9999):
        y = objectives.dequantize(images, n_bits, tf.fill(images.shape, noise))
        assert float(tf.reduce_min(y)) >= -0.5 and float(tf.reduce_max(y)) < 0.5
        back = objectives.to_uint8(y, n_bits).numpy().ravel()
        np.testing.assert_array_equal(back, reduced)
    clipped = objectives.to_uint8(tf.constant([-3.0, 3.0]), n_bits).numpy()
    np.testing.assert_array_equal(clipped, [0, (2**n_bits - 1) * 2 ** (8 - n_bits)])


def test_standard_normal_log_prob():
    z = tf.constant([[[0.0, 1.0]], [[2.0, -1.0]]])
    expected = [-math.log(2 * math.pi) - 0.5, -math.log(2 * math.pi) - 2.5]
    np.testing.assert_allclose(objectives.standard_normal_log_prob(z).numpy(), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("n_bits", [0, 9, 2.5])
def test_n_bits_outside_range_is_rejected(n_bits):
    with pytest.raises(ValueError, match="1..8"):
        objectives.bits_per_dim(tf.zeros([1]), 10, n_bits)


def test_dequantize_stays_below_one_half():
    """The top cell with noise just below 1 rounds to 0.5 in float32 unless kept inside."""
    y = objectives.dequantize(tf.constant([255], tf.uint8), 8,
                              tf.constant([np.float32(1.0) - np.float32(2.0**-24)]))
    assert float(y[0]) < 0.5
    assert objectives.to_uint8(y, 8).numpy()[0] == 255
