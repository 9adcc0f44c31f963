"""Every bijector through the three shared checks, and the paper's claims about its layer."""
import concurrent.futures
import threading

import numpy as np
import pytest
import tensorflow as tf

import flow_checks
from glow_nxn.keras import keras
from glow_nxn.layers import (MIXINGS, ActNorm, AdditiveCoupling, AffineCoupling, Chain,
                             InvertibleNxNConv, Invertible1x1Conv, InvertibleShift, LearnedPrior,
                             Logit, Split, Squeeze, VariationalDequantizer)
from glow_nxn import objectives
from glow_nxn.layers import nn
from glow_nxn.layers.nn import CouplingNetwork

SHAPE = (2, 4, 4, 6)

# name -> (factory of a fresh layer, input shape). Every mixing layer of MIXINGS is included.
CASES = {
    "actnorm": (ActNorm, SHAPE),
    "invertible_shift": (InvertibleShift, SHAPE),
    "affine_coupling": (lambda: AffineCoupling(8), SHAPE),
    "additive_coupling": (lambda: AdditiveCoupling(8), SHAPE),
    "squeeze": (Squeeze, (2, 4, 4, 3)),
    "split": (Split, SHAPE),
    "split_odd_channels": (Split, (2, 4, 4, 5)),
    "learned_prior": (LearnedPrior, SHAPE),
    "chain": (lambda: Chain([ActNorm(), Invertible1x1Conv(seed=1), AffineCoupling(8)]), SHAPE),
    **{f"mixing_{name}": (lambda factory=factory: factory(3), SHAPE)
       for name, factory in MIXINGS.items()},
}

CHECKS = {
    "round_trip": lambda layer, x: flow_checks.check_round_trip(layer.forward, layer.inverse, x),
    "logdet_vs_jacobian": lambda layer, x: flow_checks.check_logdet(layer.forward, x),
    "eager_equals_function": lambda layer, x: flow_checks.check_eager_equals_function(
        layer.forward, layer.inverse, x),
}


def perturbed_layer(name):
    """Layer ``name`` built on a standard normal input and perturbed; returns ``(layer, x)``."""
    factory, shape = CASES[name]
    layer = factory()
    x = tf.constant(np.random.normal(size=shape), tf.float32)
    layer.forward(x)  # builds the layer
    flow_checks.perturb(layer.variables)
    return layer, x


@pytest.mark.parametrize("seed", flow_checks.SEEDS, ids=flow_checks.seed_id)
@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_contract(name, check, seed):
    """``check`` on layer ``name``, its input and weights drawn from ``seed``."""
    flow_checks.reseed(seed)
    layer, x = perturbed_layer(name)
    CHECKS[check](layer, x)


@pytest.mark.parametrize("seed", flow_checks.SEEDS, ids=flow_checks.seed_id)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_logit_contract_on_dequantised_range(check, seed):
    """The logit transform's domain is the dequantised range ``[−½, ½]``: the shared checks on
    inputs drawn there, with both ends included (where its derivative is largest)."""
    flow_checks.reseed(seed)
    x = np.random.uniform(-0.5, 0.5, size=SHAPE).astype(np.float32)
    x[0, 0, 0, :2], x[1, 0, 0, :2] = -0.5, 0.5
    CHECKS[check](Logit(0.05), tf.constant(x))


def test_logit_values_and_bounded_inverse():
    """``logit(α + (1−2α)(x+½))`` at the ends and the middle; every real latent, however large,
    decodes into ``[−½ − α/(1−2α), ½ + α/(1−2α)]``; α outside (0, ½) is refused."""
    layer = Logit(0.05)
    y, logdet = layer.forward(tf.constant([-0.5, 0.0, 0.5], shape=[1, 1, 3, 1]))
    np.testing.assert_allclose(y.numpy().ravel(), [np.log(0.05 / 0.95), 0.0, np.log(0.95 / 0.05)],
                               rtol=1e-5)
    expected = sum(np.log(0.9) - np.log(p) - np.log(1 - p) for p in (0.05, 0.5, 0.95))
    np.testing.assert_allclose(logdet.numpy(), [expected], rtol=1e-5)
    x, inverse_logdet = layer.inverse(tf.constant([-1e4, -30.0, 0.0, 30.0, 1e4],
                                                  shape=[1, 1, 5, 1]))
    bound = 0.5 + 0.05 / 0.9
    assert np.all(np.abs(x.numpy()) <= bound + 1e-6)
    assert np.all(np.isfinite(inverse_logdet.numpy()))
    for alpha in (0.0, 0.5, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            Logit(alpha)


def perturbed_dequantizer(n_bits, shape=SHAPE, scale=0.1):
    """A :class:`VariationalDequantizer` of ``n_bits`` built on ``shape`` and perturbed far
    enough that its maps differ from cell to cell."""
    layer = VariationalDequantizer(n_bits, width=8)
    layer.forward(tf.zeros(shape))
    flow_checks.perturb(layer.variables, scale=scale)
    return layer


@pytest.mark.parametrize("seed", flow_checks.SEEDS, ids=flow_checks.seed_id)
@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("n_bits", [3, 8])
def test_variational_dequantizer_contract(n_bits, check, seed):
    """The shared checks on the dequantised range ``[−½, ½)``, where the layer is a bijection."""
    flow_checks.reseed(seed)
    layer = perturbed_dequantizer(n_bits)
    x = np.random.uniform(-0.5, 0.5, size=SHAPE).astype(np.float32)
    CHECKS[check](layer, tf.constant(x))


def test_variational_dequantizer_starts_as_the_identity():
    """Its last convolution starts at zero: ``g(y) = y`` and log-det 0, so a model with it
    starts as the same flow under uniform dequantisation."""
    layer = VariationalDequantizer(8, width=8)
    y = tf.random.stateless_uniform(SHAPE, seed=[1, 2]) - 0.5
    y_new, logdet = layer.forward(y)
    np.testing.assert_allclose(y_new.numpy(), y.numpy(), atol=1e-6)
    np.testing.assert_allclose(logdet.numpy(), 0.0, atol=1e-3)


@pytest.mark.parametrize("n_bits", [1, 5])
def test_variational_dequantizer_keeps_every_cell_and_its_probability(n_bits):
    """``g`` maps each cell onto itself: forward and inverse keep every value's image, the
    inverse of values outside ``[−½, ½)`` (a sample's) lands in the nearest cell, and
    ``∫_cell |g′(y)| dy`` is the cell's width (a midpoint sum over 20,000 points per cell of a
    one-pixel image), so the model in front of which ``g`` sits gives each cell the same
    probability as the flow behind it."""
    flow_checks.reseed(0)
    layer = perturbed_dequantizer(n_bits, shape=(4, 3, 3, 2), scale=0.5)
    y = tf.random.uniform((4, 3, 3, 2)) - 0.5
    y_new, _ = layer.forward(y)
    assert not np.allclose(y_new.numpy(), y.numpy(), atol=1e-3), "the map is still the identity"
    cells = objectives.to_uint8(y, n_bits).numpy()
    np.testing.assert_array_equal(objectives.to_uint8(y_new, n_bits).numpy(), cells)
    np.testing.assert_array_equal(objectives.to_uint8(layer.inverse(y)[0], n_bits).numpy(),
                                  cells)
    far = layer.inverse(tf.constant([-3.0, -0.6, 0.6, 3.0], shape=[1, 2, 2, 1]) *
                        tf.ones([4, 1, 1, 2]))[0].numpy()
    assert np.all((far >= -0.5) & (far < 0.5))
    np.testing.assert_array_equal(far[:, 0] < -0.5 + 1 / 2**n_bits, True)  # −3 and −0.6
    np.testing.assert_array_equal(far[:, 1] >= 0.5 - 1 / 2**n_bits, True)  # 0.6 and 3

    pixel = perturbed_dequantizer(n_bits, shape=(1, 1, 1, 1), scale=0.5)
    points = 20_000
    width = 1.0 / 2**n_bits
    for cell in range(2**n_bits):
        y = -0.5 + width * (cell + (np.arange(points) + 0.5) / points)
        _, logdet = pixel.forward(tf.constant(y.reshape(points, 1, 1, 1), tf.float32))
        mass = float(np.sum(np.exp(logdet.numpy().astype(np.float64))) * width / points)
        np.testing.assert_allclose(mass, width, rtol=2e-3, err_msg=f"cell {cell}")


def test_variational_dequantizer_derivative_stays_bounded_whatever_its_weights():
    """However large the network's outputs (weights perturbed by N(0, 3²), at five draws), the
    map's derivative ``du′/du`` stays within [0.05, 10] at every position of every cell (one-pixel
    images, 4,000 positions in each 3-bit cell): the bounds of the class docstring."""
    positions = (np.arange(4000) + 0.5) / 4000
    y = np.concatenate([-0.5 + (cell + positions) / 8 for cell in range(8)])
    y = tf.constant(y.reshape(-1, 1, 1, 1), tf.float32)
    lowest, highest = np.inf, 0.0
    for seed in range(5):
        flow_checks.reseed(seed)
        layer = perturbed_dequantizer(3, shape=(1, 1, 1, 1), scale=3.0)
        derivative = np.exp(layer.forward(y)[1].numpy())
        lowest, highest = min(lowest, derivative.min()), max(highest, derivative.max())
    assert 0.05 <= lowest and highest <= 10.0, (lowest, highest)
    assert highest / lowest > 5.0, "the perturbed maps are still close to the identity"


def test_checks_catch_a_wrong_logdet():
    """The helper itself can fail: a layer whose log-det is off by 1% is caught."""
    layer, x = perturbed_layer("invertible_shift")

    def wrong(t):
        y, logdet = layer.forward(t)
        return y, logdet * 1.01

    with pytest.raises(AssertionError, match="relative error"):
        flow_checks.check_logdet(wrong, x)


def test_checks_catch_a_wrong_inverse():
    layer, x = perturbed_layer("invertible_shift")
    with pytest.raises(AssertionError, match="round-trip"):
        flow_checks.check_round_trip(layer.forward, lambda y: (y, -layer.forward(y)[1]), x)


def test_actnorm_data_dependent_init_standardises():
    x = 3.0 + 2.5 * tf.random.stateless_normal([16, 8, 8, 5], seed=[0, 1])
    x = x * tf.constant([1.0, 0.1, 10.0, 2.0, 0.5])
    layer = ActNorm()
    layer.data_dependent_init(x)
    y, _ = layer.forward(x)
    mean, variance = tf.nn.moments(y, axes=[0, 1, 2])
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(variance.numpy(), 1.0, atol=1e-3)


def two_replica_means():
    """The ``reduce_mean`` of each of two simulated replicas (run them in two threads): a call
    waits until the other replica makes its matching call, and both get the average of the two
    tensors, as from a Horovod allreduce (average) over two processes."""
    barrier = threading.Barrier(2, timeout=60)
    sent = [None, None]

    def reduce_mean(rank):
        def mean_of_both(t):
            sent[rank] = t
            barrier.wait()
            mean = (sent[0] + sent[1]) / 2
            barrier.wait()  # both have read before either sends again
            return mean
        return mean_of_both

    return reduce_mean(0), reduce_mean(1)


def test_actnorm_init_across_two_replicas_equals_the_init_on_their_whole_batch():
    """Two replicas, each holding half of a batch whose halves differ in mean (3 against 0) and
    spread (0.5 against 2), initialise their ActNorms through a real two-way average: both get
    the parameters of one ActNorm initialised on the whole batch. Fails if either moment skipped
    the average, or if the variance were taken around each replica's own mean (that misses the
    spread between the halves' means)."""
    x = tf.random.stateless_normal([8, 4, 4, 3], seed=[0, 1])
    x = tf.concat([3.0 + 0.5 * x[:4], 2.0 * x[4:]], axis=0)
    whole = ActNorm()
    whole.data_dependent_init(x)
    halves = [ActNorm(), ActNorm()]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(halves[rank].data_dependent_init, x[4 * rank:4 * rank + 4], mean)
                for rank, mean in enumerate(two_replica_means())]
        for run in runs:
            run.result()
    for replica in halves:
        np.testing.assert_allclose(replica.bias.numpy(), whole.bias.numpy(), rtol=1e-5)
        np.testing.assert_allclose(replica.log_scale.numpy(), whole.log_scale.numpy(), rtol=1e-5)
    alone = ActNorm()
    alone.data_dependent_init(x[:4])
    assert np.all(np.abs(alone.log_scale.numpy() - whole.log_scale.numpy()) > 0.5)


def test_invertible_shift_starts_as_identity():
    layer = InvertibleShift()
    x = tf.random.stateless_normal(SHAPE, seed=[0, 1])
    y, logdet = layer.forward(x)
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(layer.alpha().numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(logdet.numpy(), 0.0, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_invertible_shift_alpha_never_reaches_zero(optimizer):
    """Gradient steps that push α towards 0 as hard as they can never get it there."""
    layer = InvertibleShift(min_scale=1e-3)
    x = tf.random.stateless_normal(SHAPE, seed=[0, 1])
    layer.forward(x)
    opt = {"sgd": keras.optimizers.SGD(1e4), "adam": keras.optimizers.Adam(10.0)}[optimizer]
    for _ in range(200):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer.alpha())  # minimised by α → 0
        opt.apply_gradients(zip(tape.gradient(loss, [layer.theta]), [layer.theta]))
    alpha = layer.alpha().numpy()
    assert np.all(alpha >= 0.999999e-3) and np.all(np.isfinite(alpha)), alpha
    assert float(tf.reduce_max(layer.theta)) < -10.0  # the steps really pushed α to its floor
    flow_checks.check_round_trip(layer.forward, layer.inverse, x)
    assert np.all(np.isfinite(layer.forward(x)[1].numpy()))


def test_invertible_shift_alpha_is_bounded_for_any_parameter():
    layer = InvertibleShift(min_scale=1e-3)
    layer.forward(tf.zeros(SHAPE))
    layer.theta.assign([-np.inf, -1e30, -1e3, 0.0, 1.0, 30.0])
    alpha = layer.alpha().numpy()
    assert np.all(alpha >= 0.999999e-3), alpha
    np.testing.assert_allclose(alpha[:3], 1e-3, rtol=1e-6)
    np.testing.assert_allclose(alpha[3], 1.0, rtol=1e-6)


def test_invertible_1x1_conv_starts_as_a_rotation():
    for lu in (False, True):
        layer = Invertible1x1Conv(lu=lu, seed=5)
        layer.forward(tf.zeros(SHAPE))
        w = layer.weight().numpy().astype(np.float64)
        np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(w), 1.0, atol=1e-5)
        np.testing.assert_allclose(layer.log_abs_det().numpy(), 0.0, atol=1e-5)
    plain, lu = Invertible1x1Conv(seed=5), Invertible1x1Conv(lu=True, seed=5)
    plain.forward(tf.zeros(SHAPE))
    lu.forward(tf.zeros(SHAPE))
    np.testing.assert_allclose(lu.weight().numpy(), plain.weight().numpy(), atol=1e-5)


def test_invertible_1x1_conv_logdet_is_float64_accurate():
    """A 256-channel W far from orthogonal: log|det W| matches numpy's float64 slogdet."""
    layer = Invertible1x1Conv(seed=0)
    layer.forward(tf.zeros([1, 1, 1, 256]))
    rng = np.random.RandomState(0)
    w = (np.eye(256) + 0.5 * rng.normal(size=(256, 256)) / 16).astype(np.float32)
    layer.kernel.assign(w)
    expected = np.linalg.slogdet(w.astype(np.float64))[1]
    assert abs(float(layer.log_abs_det()) - expected) < 1e-5 * max(1.0, abs(expected))


@pytest.mark.parametrize("channels", [4, 12, 48, 96])
def test_nxn_conv_has_c_squared_plus_2c_parameters(channels):
    """The paper's parameter claim: C² + 2C, against n²·C² for a standard n×n convolution."""
    layer = InvertibleNxNConv(seed=0)
    layer.forward(tf.zeros([1, 4, 4, channels]))
    assert layer.count_params() == channels**2 + 2 * channels
    standard = keras.layers.Conv2D(channels, 3, use_bias=False)
    standard.build([None, 4, 4, channels])
    assert standard.count_params() == 9 * channels**2
    assert layer.count_params() < standard.count_params()


def test_shuffle_is_seeded():
    from glow_nxn.layers import ShufflePermutation
    x = tf.reshape(tf.range(12.0), [1, 1, 1, 12])
    a, b, c = ShufflePermutation(seed=1), ShufflePermutation(seed=1), ShufflePermutation(seed=2)
    ya, yb, yc = a.forward(x)[0], b.forward(x)[0], c.forward(x)[0]
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    assert not np.array_equal(ya.numpy(), yc.numpy())
    assert sorted(ya.numpy().ravel()) == list(range(12))


def test_log_abs_det_value_and_gradient_match_slogdet():
    from glow_nxn.layers.mixing import log_abs_det
    rng = np.random.RandomState(1)
    matrix = tf.constant(rng.normal(size=(7, 7)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(matrix)
        ours = log_abs_det(matrix)
        reference = tf.linalg.slogdet(matrix)[1]
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tape.gradient(ours, matrix).numpy(),
                               tape.gradient(reference, matrix).numpy(), rtol=1e-9, atol=1e-12)


def test_the_coupling_network_folded_equals_its_layers_one_by_one():
    """In float32 the network runs each convolution and the affine map after it as one
    convolution (``nn.scaled_conv2d``); that must be the layers' own composition: conv → ActNorm
    → ReLU → conv → ActNorm → ReLU → conv, ``+ bias``, ``·exp(3·log_scale)``."""
    network = CouplingNetwork(out_channels=6, width=16)
    x = tf.random.stateless_normal([3, 8, 8, 5], seed=[0, 1])
    network(x)
    flow_checks.perturb(network.variables, scale=0.3)
    h = tf.nn.relu(network.norm_in.forward(network.conv_in(x))[0])
    h = tf.nn.relu(network.norm_hidden.forward(network.conv_hidden(h))[0])
    out = network.conv_out
    expected = out.conv(h) * tf.exp(3.0 * out.log_scale)
    assert float(tf.reduce_max(tf.abs(expected))) > 0.1  # the last layer no longer outputs zeros
    np.testing.assert_allclose(network(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_couplings_and_splits_read_glows_interleaved_channels():
    """The stored weights keep Glow's layout: an affine coupling's shift is the even output
    channels of its network's last layer and its scale logit the odd ones; a split's mean and
    log-std likewise. Computed here from the stored kernel, bias and scale with strided slices,
    against the layers, which reorder the weights and ``tf.split`` (``ZeroConv2D(deinterleave)``)."""
    x = tf.random.stateless_normal([3, 6, 6, 6], seed=[0, 4])
    coupling, split = AffineCoupling(16), Split()
    coupling.forward(x)
    split.forward(x)
    flow_checks.perturb(coupling.variables + split.variables, scale=0.3)

    def stored_layout(layer, h):
        """``(y[..., 0::2], y[..., 1::2])`` of the layer's convolution in its stored order."""
        y = (tf.nn.conv2d(h, layer.conv.kernel, 1, "SAME") + layer.conv.bias) * tf.exp(
            3.0 * layer.log_scale)
        return y[..., 0::2], y[..., 1::2]

    x_b, x_a = x[..., :3], x[..., 3:]
    network = coupling.network
    h = tf.nn.relu(network.norm_in.forward(network.conv_in(x_b))[0])
    h = tf.nn.relu(network.norm_hidden.forward(network.conv_hidden(h))[0])
    shift, scale_logit = stored_layout(network.conv_out, h)
    log_scale = tf.math.log_sigmoid(scale_logit + 2.0)
    assert float(tf.reduce_max(tf.abs(shift))) > 0.1
    y, logdet = coupling.forward(x)
    np.testing.assert_allclose(y.numpy(), tf.concat(
        [x_b, (x_a + shift) * tf.exp(log_scale)], axis=-1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logdet.numpy(), tf.reduce_sum(log_scale, [1, 2, 3]).numpy(),
                               rtol=1e-5)

    mean, log_std = stored_layout(split.prior, x[..., :3])
    y, logdet = split.forward(x)
    np.testing.assert_allclose(y[..., 3:].numpy(), ((x[..., 3:] - mean) * tf.exp(-log_std)).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logdet.numpy(), -tf.reduce_sum(log_std, [1, 2, 3]).numpy(),
                               rtol=1e-5)


def test_evens_first_reorders_the_last_axis_with_a_dense_gradient():
    """``evens_first(t) = concat(t[..., 0::2], t[..., 1::2])``; its gradient is a dense tensor
    (an optimizer and Horovod treat ``IndexedSlices`` as an embedding's sparse gradient)."""
    t = tf.Variable(tf.reshape(tf.range(3 * 2 * 6, dtype=tf.float32), [3, 2, 6]))
    with tf.GradientTape() as tape:
        out = nn.evens_first(t)
        loss = tf.reduce_sum(out * tf.range(6, dtype=tf.float32))
    np.testing.assert_array_equal(out.numpy(), tf.concat([t[..., 0::2], t[..., 1::2]], -1).numpy())
    gradient = tape.gradient(loss, t)
    assert isinstance(gradient, tf.Tensor)
    np.testing.assert_array_equal(gradient[0, 0].numpy(), [0, 3, 1, 4, 2, 5])
    with pytest.raises(ValueError, match="even number of filters"):
        nn.ZeroConv2D(5, deinterleave=True)
