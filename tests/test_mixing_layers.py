"""Layer-specific checks of the n×n mixing layers, beyond the three shared checks of test_layers.py.

Receptive fields (which input pixels an output pixel reads), parameter counts, each layer against
a direct implementation of its formula, and inverse accuracy at a realistic size.
"""
import numpy as np
import pytest
import tensorflow as tf

import flow_checks
from glow_nxn.layers import (MIXINGS, EmergingConv, InvertibleNxNConv, PeriodicConv,
                             ShiftedNxNConv)
from glow_nxn.layers.emerging import causal_conv
from glow_nxn.layers.shifted import offsets


def built(layer, shape, seed=0):
    """``layer`` built on a standard normal ``x`` of ``shape`` (drawn from ``seed``) and
    perturbed away from its start (drawn from the test's seed); returns ``(layer, x)``."""
    x = tf.random.stateless_normal(shape, seed=[seed, 7])
    layer.forward(x)
    flow_checks.perturb(layer.variables)
    return layer, x


def receptive_field(layer, shape, pixel):
    """The set of input pixel offsets from ``pixel`` that output ``pixel`` depends on."""
    layer, x = built(layer, shape)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer.forward(x)[0][0, pixel[0], pixel[1], :]
    jacobian = tape.jacobian(y, x).numpy()  # [C_out, B, H, W, C_in]
    weight = np.abs(jacobian[:, 0]).sum(axis=(0, 3))  # [H, W]
    reads = weight > 1e-5 * weight.max()  # the FFT path leaves float32 round-off everywhere
    return {(int(i) - pixel[0], int(j) - pixel[1]) for i, j in zip(*np.nonzero(reads))}


def window(r):
    return {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)}


@pytest.mark.parametrize("name, layer, kernel_size", [
    ("invertible_nxn_is_1x1", lambda: InvertibleNxNConv(seed=1), 1),
    ("shifted_3x3", lambda: ShiftedNxNConv(seed=1), 3),
    ("shifted_5x5", lambda: ShiftedNxNConv(kernel_size=5, seed=1), 5),
    ("emerging_3x3", lambda: EmergingConv(seed=1), 3),
    ("emerging_5x5", lambda: EmergingConv(kernel_size=5, seed=1), 5),
    ("periodic_3x3", lambda: PeriodicConv(seed=1), 3),
])
def test_receptive_field_is_exactly_the_window(name, layer, kernel_size):
    """An interior output pixel reads its whole n×n neighbourhood and nothing else.

    The paper's layer (shift function + 1×1) reads only its own pixel. 26 channels ≥ 5² so every
    offset of the shifted layer is used.
    """
    assert receptive_field(layer(), (1, 9, 9, 26), (4, 4)) == window(kernel_size // 2)


def test_shifted_with_fewer_channels_than_offsets_uses_the_first_ones():
    """C < n²: channel c reads offset c; the field is the centre and its 3 nearest neighbours."""
    field = receptive_field(ShiftedNxNConv(seed=1), (1, 7, 7, 4), (3, 3))
    assert field == set(offsets(3)[:4]) == {(0, 0), (-1, 0), (0, -1), (0, 1)}


def test_shifted_rolls_each_channel_by_its_offset():
    """With W = I the layer is the shift: ``y[:, i, j, c] = x[:, i+δ, j+ε, c]``, cyclic,
    ``(δ, ε) = offsets(3)[c mod 9]``."""
    layer, x = built(ShiftedNxNConv(seed=1), (2, 5, 6, 12))
    layer.conv.kernel.assign(tf.eye(12))
    y = layer.forward(x)[0].numpy()
    for c in range(12):
        dy, dx = offsets(3)[c % 9]
        expected = np.roll(x.numpy()[..., c], shift=(-dy, -dx), axis=(1, 2))
        np.testing.assert_array_equal(y[..., c], expected)


@pytest.mark.parametrize("channels", [4, 12, 48])
def test_parameter_counts(channels):
    """Shifted: C² (the 1×1's). Emerging: 7C² + C for n = 3, 17C² + C for n = 5 (module
    docstring); with the 1×1 of MIXINGS["emerging"]: 8C² + C. Periodic: n²C²."""
    def count(layer):
        layer.forward(tf.zeros([1, 4, 4, channels]))
        return layer.count_params()

    c2 = channels**2
    assert count(ShiftedNxNConv(seed=0)) == c2
    assert count(ShiftedNxNConv(kernel_size=5, seed=0)) == c2
    assert count(EmergingConv(seed=0)) == 7 * c2 + channels
    assert count(EmergingConv(kernel_size=5, seed=0)) == 17 * c2 + channels
    assert count(MIXINGS["emerging"](0)) == 8 * c2 + channels
    assert count(PeriodicConv(seed=0)) == 9 * c2
    assert count(PeriodicConv(kernel_size=5, seed=0)) == 25 * c2


def circular_conv(x, kernel):
    """A direct circular correlation: wrap-pad by r, then a VALID ``tf.nn.conv2d``."""
    r = kernel.shape[0] // 2
    x = tf.concat([x[:, -r:], x, x[:, :r]], axis=1)
    x = tf.concat([x[:, :, -r:], x, x[:, :, :r]], axis=2)
    return tf.nn.conv2d(x, kernel, strides=1, padding="VALID")


@pytest.mark.parametrize("shape, kernel_size", [
    ((2, 8, 8, 6), 3), ((2, 6, 5, 4), 3), ((1, 7, 9, 3), 5)])
def test_periodic_equals_a_direct_circular_convolution(shape, kernel_size):
    layer, x = built(PeriodicConv(kernel_size=kernel_size, seed=2), shape)
    y = layer.forward(x)[0]
    np.testing.assert_allclose(y.numpy(), circular_conv(x, layer.kernel).numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 8, 6, 5), (1, 5, 7, 4)])
def test_periodic_logdet_is_the_sum_of_log_det_over_all_frequencies(shape):
    """Against numpy's full 2-D FFT of the wrapped kernel and complex ``slogdet`` at each of the
    H·W frequencies (the layer takes complex128 ``slogdet`` on the half spectrum ``v = 0..⌊W/2⌋``
    only and counts twice each column whose conjugate lies in the other half)."""
    layer, x = built(PeriodicConv(seed=4), shape)
    kernel = layer.kernel.numpy().astype(np.float64)
    _, height, width, channels = shape
    r = kernel.shape[0] // 2
    wrapped = np.zeros([height, width, channels, channels])
    for a in range(-r, r + 1):
        for e in range(-r, r + 1):
            wrapped[-a % height, -e % width] += kernel[a + r, e + r]
    transfer = np.fft.fft2(wrapped, axes=(0, 1))
    expected = np.sum(np.linalg.slogdet(transfer)[1])
    np.testing.assert_allclose(layer.forward(x)[1].numpy(), [expected], rtol=1e-5)


def test_emerging_kernels_have_the_autoregressive_masks():
    """For n = 3 the first kernel lives on the top-left 2×2 quadrant with a channel-upper-
    triangular centre (input c ≤ output o), the second is its 180° rotation, and the forward
    pass is exactly those two "SAME" convolutions."""
    layer, x = built(EmergingConv(seed=3), (2, 6, 7, 5))
    first, second = (k.numpy() for k in layer.kernels())
    spatial = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    mask = np.broadcast_to(spatial[:, :, None, None], first.shape).copy()
    mask[1, 1] = np.triu(np.ones([5, 5], dtype=bool))
    assert np.all(first[~mask] == 0) and np.all(first[mask] != 0)
    rotated = mask[::-1, ::-1, ::-1, ::-1]
    assert np.all(second[~rotated] == 0) and np.all(second[rotated] != 0)
    direct = tf.nn.conv2d(tf.nn.conv2d(x, first, 1, "SAME"), second, 1, "SAME")
    np.testing.assert_allclose(layer.forward(x)[0].numpy(), direct.numpy(), atol=1e-5)


def test_emerging_starts_as_documented():
    """Every stored entry but the diagonal starts as N(0, 0.02²) and the diagonal at exactly 1
    (module docstring, docs/MIXING.md): at C = 48 the 2·(3·48² + 48·47/2) = 16,080 drawn
    entries have a mean within 0.001 of 0 and a std within 3% of 0.02 (6 and 5 standard
    errors)."""
    layer = EmergingConv(seed=0)
    layer.forward(tf.zeros([1, 4, 4, 48]))
    drawn = np.concatenate([np.ravel(v.numpy()) for taps, upper, _ in layer.factors
                            for v in (taps, upper)])
    assert drawn.size == 2 * (3 * 48**2 + 48 * 47 // 2)
    assert abs(np.mean(drawn)) < 0.001 and abs(np.std(drawn) / 0.02 - 1) < 0.03
    for _, _, log_diag in layer.factors:
        np.testing.assert_array_equal(log_diag.numpy(), 0.0)


def test_causal_conv_is_triangular_in_raster_channel_order():
    """The Jacobian of the first convolution in raster-then-channel order is lower triangular
    (output (p, o) reads inputs (p', c) ≤ (p, o)) with diagonal d = exp(log_d)."""
    layer, x = built(EmergingConv(seed=4), (1, 4, 5, 3))
    quadrant = layer.quadrants()[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(causal_conv(x, quadrant), [-1])
    jacobian = tf.reshape(tape.jacobian(y, x), [60, 60]).numpy()  # [output, input]
    np.testing.assert_array_equal(np.triu(jacobian, 1), 0.0)
    diagonal = np.tile(np.exp(layer.factors[0][2].numpy()), 20)
    np.testing.assert_allclose(np.diag(jacobian), diagonal, rtol=1e-6)
    assert np.count_nonzero(np.tril(jacobian, -1)) > 100  # it is not merely diagonal


@pytest.mark.parametrize("name, layer, shape", [
    ("emerging_5x5", lambda: EmergingConv(kernel_size=5, seed=5), (2, 5, 6, 4)),
    ("emerging_image_smaller_than_kernel", lambda: EmergingConv(seed=5), (2, 2, 1, 3)),
    ("periodic_odd_width", lambda: PeriodicConv(seed=5), (2, 4, 5, 4)),
    ("periodic_image_smaller_than_kernel", lambda: PeriodicConv(seed=5), (2, 2, 1, 3)),
    ("periodic_5x5", lambda: PeriodicConv(kernel_size=5, seed=5), (2, 6, 6, 3)),
    ("shifted_few_channels", lambda: ShiftedNxNConv(seed=5), (2, 4, 4, 5)),
    ("shifted_lu", lambda: ShiftedNxNConv(lu=True, seed=5), (2, 4, 4, 10)),
])
def test_variants_pass_the_three_checks(name, layer, shape):
    """Variants that MIXINGS does not register: other kernel sizes, odd and tiny images."""
    layer, x = built(layer(), shape)
    flow_checks.check_all(layer.forward, layer.inverse, x)


@pytest.mark.parametrize("name", ["shifted_nxn", "emerging", "periodic"])
def test_inverse_is_accurate_at_16x16x12(name):
    layer, x = built(MIXINGS[name](6), (4, 16, 16, 12), seed=6)
    y, logdet = layer.forward(x)
    x_back, inverse_logdet = tf.function(layer.inverse)(y)
    assert float(tf.reduce_max(tf.abs(x_back - x))) < 1e-4
    np.testing.assert_allclose(inverse_logdet.numpy(), -logdet.numpy(), rtol=1e-5)


def test_bare_emerging_inverse_is_accurate_at_16x16x12():
    layer, x = built(EmergingConv(seed=6), (4, 16, 16, 12), seed=6)
    x_back = layer.inverse(layer.forward(x)[0])[0]
    assert float(tf.reduce_max(tf.abs(x_back - x))) < 1e-4


@pytest.mark.parametrize("name", ["emerging", "periodic"])
def test_inverse_traces_with_unknown_spatial_size(name):
    """One trace serves every image size (the wavefront loop and the FFTs take dynamic shapes)."""
    layer, _ = built(MIXINGS[name](7), (1, 4, 4, 6))
    inverse = tf.function(lambda t: layer.inverse(t)[0],
                          input_signature=[tf.TensorSpec([None, None, None, 6])])
    for shape in [(2, 4, 4, 6), (1, 6, 3, 6)]:
        x = tf.random.stateless_normal(shape, seed=[0, 1])
        assert float(tf.reduce_max(tf.abs(inverse(layer.forward(x)[0]) - x))) < 1e-4


@pytest.mark.parametrize("name", ["shifted_nxn", "emerging", "periodic"])
def test_log_likelihood_gradients_reach_every_weight(name):
    """The forward pass and its log-det are differentiable in every trainable weight."""
    layer, x = built(MIXINGS[name](8), (2, 4, 4, 6))
    with tf.GradientTape() as tape:
        y, logdet = layer.forward(x)
        loss = tf.reduce_sum(y**2) - tf.reduce_sum(logdet)
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert gradients and all(g is not None for g in gradients)
    assert all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0) for g in gradients)
