"""The whole model: the three shared checks, init, shapes, sampling, checkpoints, configuration,
XLA, and the round trip and log-det at the cifar10 preset's full size and depth."""
import collections
import functools

import numpy as np
import pytest
import tensorflow as tf

import flow_checks
from glow_nxn import objectives
from glow_nxn.layers import nn
from glow_nxn.config import PRESETS, ModelConfig, preset
from glow_nxn.layers import (COUPLINGS, MIXINGS, NOT_XLA_COMPILABLE, ActNorm, AffineCoupling,
                             Chain, InvertibleNxNConv, LearnedPrior, Split, Squeeze,
                             initialising)
from glow_nxn.model import Glow

TINY = dict(image_shape=(8, 8, 3), levels=2, steps_per_level=2, hidden_width=8)

MODEL_CASES = {
    **{f"{mixing}_affine": dict(mixing=mixing) for mixing in MIXINGS},
    "nxn_additive": dict(coupling="additive"),
    "nxn_no_learn_top": dict(learn_top=False),
    "nxn_3_levels": dict(image_shape=(8, 8, 1), levels=3),
    "nxn_bfloat16_networks": dict(network_dtype="bfloat16"),
    "nxn_logit_input": dict(logit_alpha=0.05),
    # At 5 bits (the paper's CelebA-HQ). The dequantiser's inverse reads positions inside cells
    # of 2⁻ⁿ, so the float32 error of the flow's inverse before it (~1e-7..1e-6 in y) moves them
    # by 2ⁿ times that: at 8 bits the inverse's log-det is off by up to ~1e-2 nats in ~200,
    # beyond the checks' 1e-3 (test_variational_dequantizer_model_at_8_bits measures it).
    "nxn_variational_dequantizer": dict(dequantizer_width=8, logit_alpha=0.05, n_bits=5),
    # log_prob without labels: the mixture over the classes, which reads every class prior.
    "nxn_class_conditional": dict(num_classes=3),
}


@pytest.mark.parametrize("seed", flow_checks.SEEDS, ids=flow_checks.seed_id)
@pytest.mark.parametrize("logit_alpha", [0.0, 0.05])
def test_variational_dequantizer_model_at_8_bits(logit_alpha, seed):
    """The whole model with the dequantiser at 8 bits (as trained on MNIST and photographs), with
    and without the logit transform: the forward's log-det equals the Jacobian's and the traced
    forward the eager one (the shared checks); the inverse gives the input back to the shared
    1e-4 and every value in its cell; the inverse's log-dets, eager and traced, agree with minus
    the forward's to 5e-2 nats in ~200 (measured up to 1.4e-2, the float32 limit of MODEL_CASES'
    comment), not the shared 1e-3."""
    flow_checks.reseed(seed)
    model, x = perturbed_model("nxn_variational_dequantizer", n_bits=8, logit_alpha=logit_alpha)
    flow_checks.check_logdet(model.forward, x)
    y, logdet = model.forward(x)
    y_graph, logdet_graph = tf.function(model.forward)(x)
    np.testing.assert_allclose(flow_checks.flatten(y_graph), flow_checks.flatten(y), atol=1e-5)
    np.testing.assert_allclose(logdet_graph, logdet, rtol=1e-5, atol=1e-4)
    for x_back, inverse_logdet in (model.inverse(y), tf.function(model.inverse)(y)):
        assert float(tf.reduce_max(tf.abs(x_back - x))) < flow_checks.ROUND_TRIP_TOLERANCE
        np.testing.assert_array_equal(objectives.to_uint8(x_back, 8), objectives.to_uint8(x, 8))
        np.testing.assert_allclose(inverse_logdet, -logdet, atol=5e-2)


def init_batch(model, batch=16):
    """Uniform ``[batch, H, W, C]`` images in [-0.5, 0.5), the range of dequantised data."""
    return tf.random.stateless_uniform([batch, *model.config.image_shape], seed=[3, 4]) - 0.5


def perturbed_model(name, **overrides):
    """Model ``name`` (its configuration changed by ``overrides``) with its ActNorms initialised
    on data and every weight then perturbed; and two of the images it was initialised on."""
    model = Glow(ModelConfig(**{**TINY, **MODEL_CASES[name], **overrides}))
    x = init_batch(model)
    model.data_dependent_init(x)
    flow_checks.perturb(model.variables, scale=0.05)
    return model, x[:2]


@pytest.mark.parametrize("seed", flow_checks.SEEDS, ids=flow_checks.seed_id)
@pytest.mark.parametrize("check", ["round_trip", "logdet_vs_jacobian", "eager_equals_function"])
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_contract(name, check, seed):
    """``check`` on model ``name`` drawn from ``seed``; the bfloat16 networks too at float32
    tolerances (their roundings do not depend on tracing)."""
    flow_checks.reseed(seed)
    model, x = perturbed_model(name)
    if check == "round_trip":
        flow_checks.check_round_trip(model.forward, model.inverse, x)
    elif check == "logdet_vs_jacobian":
        flow_checks.check_logdet(model.forward, x)
    else:
        flow_checks.check_eager_equals_function(model.forward, model.inverse, x)


def test_latent_shapes_per_level():
    model = Glow(ModelConfig(image_shape=(16, 16, 3), levels=3, steps_per_level=1,
                             hidden_width=4))
    zs, _ = model.encode(tf.zeros([5, 16, 16, 3]))
    assert [tuple(z.shape) for z in zs] == [(5, 8, 8, 6), (5, 4, 4, 12), (5, 2, 2, 48)]
    assert model.latent_shapes == [(8, 8, 6), (4, 4, 12), (2, 2, 48)]
    assert sum(np.prod(s) for s in model.latent_shapes) == 16 * 16 * 3


def test_data_dependent_init_standardises_every_actnorm_in_flow_order(monkeypatch):
    """After the init pass, every ActNorm of the model standardises its input on the init batch:
    per channel, zero mean and unit variance. Every one means the flow steps' and the two inside
    each coupling network (``norm_in``, ``norm_hidden``); a forward pass of the init batch,
    recorded at ``ActNorm._forward`` and, for the networks' ActNorms, which run folded into their
    convolution after the init, at ``nn.scaled_conv2d`` (by the ActNorm whose bias it is given),
    must reach them all, in flow order, each exactly once.

    Fails if an ActNorm were left out of the init pass, or initialised from activations that the
    layers before it produce only once initialised themselves (its input would then change), or
    if folding changed what a network's ActNorm outputs."""
    model = Glow(ModelConfig(**TINY))
    x = 0.3 * tf.random.stateless_normal([32, 8, 8, 3], seed=[0, 1]) + 0.1
    model.data_dependent_init(x)
    actnorms = [m for m in model.submodules if isinstance(m, ActNorm)]
    by_bias = {id(layer.bias): layer for layer in actnorms}
    seen = []
    forward, scaled_conv2d = ActNorm._forward, nn.scaled_conv2d

    def recording_forward(self, t):
        y, logdet = forward(self, t)
        seen.append((self, y))
        return y, logdet

    def recording_conv(t, kernel, bias, scale):
        y = scaled_conv2d(t, kernel, bias, scale)
        if id(bias) in by_bias:
            seen.append((by_bias[id(bias)], y))
        return y

    monkeypatch.setattr(ActNorm, "_forward", recording_forward)
    monkeypatch.setattr(nn, "scaled_conv2d", recording_conv)
    model.encode(x)
    in_flow_order = [actnorm
                     for level in model.levels for step in level.bijectors[1:]
                     for actnorm in (step.bijectors[0], step.bijectors[2].network.norm_in,
                                     step.bijectors[2].network.norm_hidden)]
    assert len(in_flow_order) == 3 * 4
    assert [layer for layer, _ in seen] == in_flow_order
    assert len(actnorms) == len(in_flow_order)
    for layer, y in seen:
        mean, variance = tf.nn.moments(tf.cast(y, tf.float32), axes=[0, 1, 2])
        np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4, err_msg=layer.name)
        np.testing.assert_allclose(variance.numpy(), 1.0, atol=1e-3, err_msg=layer.name)


def test_data_dependent_init_is_not_traced():
    model = Glow(ModelConfig(**TINY))
    with pytest.raises(RuntimeError, match="eagerly"):
        tf.function(model.data_dependent_init)(tf.zeros([2, 8, 8, 3]))


def sampling_model(**overrides):
    """TINY with its ActNorms initialised on data and every weight perturbed but the coupling
    networks', which keep their zero-output start (each coupling scales its half by sigmoid(2)).

    Why not the perturbed model: sampling decodes latents the model never produced from data,
    and with perturbed coupling networks that decoder is exponentially expansive on some draws.
    An affine coupling's inverse multiplies by ``1/sigmoid(h + 2) = 1 + exp(−h − 2)``, and ``h``
    grows with the network's input, so an off-data input feeds on itself through the steps
    (samples at T = 1 reached |x| = 83 and 502 at seeds 6 and 8, 2·10⁹ and infinite latents at
    seed 57). A latent round trip ``encode(decode(ε))`` inherits float32 round-off times that
    expansion: the luck behind the 2e-3 tolerance these tests once had. With the couplings at
    their start the decoder is affine but for the split priors' ``σ(z₁) = exp(linear(z₁))``,
    with a Jacobian of modest condition, and the round trip returns ε to a few 1e-6 (at most
    3.2e-6 over 30 perturbations): the shared round-trip tolerance holds for every draw.
    """
    model = Glow(ModelConfig(**TINY, **overrides))
    model.data_dependent_init(init_batch(model))
    couplings = {v.ref() for level in model.levels for step in level.bijectors[1:]
                 for v in step.bijectors[2].variables}
    flow_checks.perturb([v for v in model.variables if v.ref() not in couplings], scale=0.05)
    return model


def test_sample_at_temperature_zero_decodes_every_priors_mean():
    """T = 0 decodes the mean of every prior: computed here level by level from the priors'
    parameters (the top prior's ``μ``; each split's ``μ(z₁)``, the even channels of its network's
    output), not through ``LearnedPrior``/``Split.inverse`` or ``sample``. The same for every
    image and seed, and ``encode`` maps it back to all-zero latents of the model's shapes."""
    model = sampling_model()
    samples = model.sample(3, temperature=0.0, seed=5)
    np.testing.assert_allclose(model.sample(3, temperature=0.0).numpy(), samples.numpy(),
                               atol=1e-6)
    h = tf.broadcast_to(model.top_prior.mean, [3, *model.latent_shapes[-1]])
    for index in reversed(range(len(model.levels))):
        if index < len(model.splits):
            prior = model.splits[index].prior  # its stored layout: the mean is the evens
            conditional_mean = ((tf.nn.conv2d(h, prior.conv.kernel[..., 0::2], 1, "SAME")
                                 + prior.conv.bias[0::2]) * tf.exp(3.0 * prior.log_scale[0::2]))
            h = tf.concat([h, conditional_mean], axis=-1)
        h, _ = model.levels[index].inverse(h)
    np.testing.assert_allclose(samples.numpy(), h.numpy(), atol=1e-6)
    np.testing.assert_allclose(samples[0].numpy(), samples[1].numpy(), atol=1e-6)
    zs, _ = model.encode(samples)
    assert [tuple(z.shape[1:]) for z in zs] == model.latent_shapes
    for z in zs:
        np.testing.assert_allclose(z.numpy(), 0.0, atol=flow_checks.ROUND_TRIP_TOLERANCE)


def test_sample_temperature_scales_every_prior():
    """``sample(n, T, seed)`` decodes ``ε_l = T·N(0, I)`` drawn with the stateless seed
    ``[seed, l]`` at every level ``l``: ``encode`` gives those ε back, to the round-trip
    tolerance (see :func:`sampling_model`). Fails if T scaled only some levels, scaled the
    prior's ``z = μ + σ·ε`` instead of ε (at T = 0.5 that is off by ``μ/(2σ)``, and the perturbed
    priors' means are of order 0.05, 500 times the tolerance), or the levels' draws were swapped;
    and a seed fixes the draw."""
    model = sampling_model()
    for temperature in (0.5, 1.0):
        x = model.sample(4, temperature=temperature, seed=11)
        zs, _ = model.encode(x)
        for index, (z, shape) in enumerate(zip(zs, model.latent_shapes)):
            expected = temperature * tf.random.stateless_normal([4, *shape], seed=[11, index])
            np.testing.assert_allclose(z.numpy(), expected.numpy(),
                                       atol=flow_checks.ROUND_TRIP_TOLERANCE)
    seeded = model.sample(2, 1.0, seed=1).numpy()
    np.testing.assert_array_equal(seeded, model.sample(2, 1.0, seed=1).numpy())
    assert not np.allclose(seeded, model.sample(2, 1.0, seed=2).numpy())


def conditional_model(classifier=False):
    """TINY, class-conditional with 3 classes, as :func:`sampling_model` (couplings at their
    start), with every class prior's mean and log-std drawn at scale 0.3: far from the zero start,
    so a wrong class, level or channel shows."""
    model = sampling_model(num_classes=3, classifier=classifier)
    for variable in model.class_prior.variables:
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[7, len(variable.name)])
                        * 0.3)
    return model


def direct_class_log_prob(model, zs, label):
    """``Σ_l Σ_{h,w,c} log N(ε; μ_l[y], σ_l[y])`` element by element, in float64 numpy."""
    total = 0.0
    for z, mean, log_std in zip(zs, model.class_prior.means, model.class_prior.log_stds):
        z = z.numpy().astype(np.float64)
        mu, sigma = mean.numpy()[label], np.exp(log_std.numpy()[label].astype(np.float64))
        total = total + np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma)
                               - 0.5 * np.log(2 * np.pi), axis=(1, 2, 3))
    return total


def test_class_conditional_log_prob_is_the_class_gaussian_of_every_latent():
    """``log p(x | y)`` = the flow's log-det + every latent scored element by element under its
    class's ``N(μ_l[y], σ_l[y])`` (the sufficient-statistics form of ClassPrior against the
    direct sum); every class at once; the mixture is ``logsumexp − log K``."""
    model = conditional_model()
    # The top latent's parameters are per class and position, the split's per class and channel.
    (height, width, channels), split = model.latent_shapes[-1], model.latent_shapes[0]
    assert model.class_prior.means[-1].shape == (3, height, width, channels)
    assert model.class_prior.log_stds[0].shape == (3, 1, 1, split[-1])
    x = init_batch(model, batch=4)
    zs, logdet = model.encode(x)
    per_class = model.class_log_likelihoods(x).numpy()
    assert per_class.shape == (4, 3)
    for label in range(3):
        expected = logdet.numpy() + direct_class_log_prob(model, zs, label)
        np.testing.assert_allclose(per_class[:, label], expected, rtol=1e-5)
        labelled = model.log_prob(x, labels=tf.fill([4], label)).numpy()
        np.testing.assert_allclose(labelled, expected, rtol=1e-5)
    mixture = np.logaddexp.reduce(per_class, axis=1) - np.log(3)
    np.testing.assert_allclose(model.log_prob(x).numpy(), mixture, rtol=1e-5)
    # The classes differ by much more than the tolerance, so a swapped class would show.
    assert np.min(np.ptp(per_class, axis=1)) > 1.0


def test_a_class_conditional_model_starts_as_the_unconditional_one():
    """Every class prior starts at N(0, I): the same seed's unconditional model scores every
    class, and the mixture, alike; an unconditional model refuses labels."""
    plain = Glow(ModelConfig(**TINY))
    conditional = Glow(ModelConfig(**TINY, num_classes=4, classifier=True))
    x = init_batch(plain, batch=3)
    expected = plain.log_prob(x).numpy()
    np.testing.assert_allclose(conditional.log_prob(x).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(conditional.log_prob(x, labels=[0, 2, 3]).numpy(), expected,
                               rtol=1e-6)
    np.testing.assert_array_equal(conditional.class_prior.logits(conditional.encode(x)[0]), 0.0)
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.log_prob(x, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.sample(3, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        plain.class_log_likelihoods(x)
    with pytest.raises(ValueError, match="has no classifier"):
        Glow(ModelConfig(**TINY, num_classes=2)).class_prior.logits(plain.encode(x)[0])


def test_class_conditional_samples_draw_from_their_class_prior():
    """``sample(n, T, seed, labels)`` decodes ``ε_l = μ_l[y] + T·σ_l[y]·η_l`` with ``η_l`` the
    seeded standard-normal draw: ``encode`` gives those ε back (the round-trip tolerance, see
    :func:`sampling_model`); at T = 0 every sample of a class is that class's mean. Without
    labels the classes are drawn from the seed."""
    model = conditional_model()
    labels = tf.constant([2, 0, 1, 2])
    for temperature in (0.0, 0.5):
        zs, _ = model.encode(model.sample(4, temperature, seed=11, labels=labels))
        for index, (z, mean, log_std) in enumerate(zip(zs, model.class_prior.means,
                                                       model.class_prior.log_stds)):
            eta = tf.random.stateless_normal([4, *model.latent_shapes[index]], seed=[11, index])
            expected = (tf.gather(mean, labels)
                        + temperature * tf.exp(tf.gather(log_std, labels)) * eta)
            np.testing.assert_allclose(z.numpy(), expected.numpy(),
                                       atol=flow_checks.ROUND_TRIP_TOLERANCE)
    drawn = model.sample(6, 0.0, seed=3).numpy()
    np.testing.assert_array_equal(drawn, model.sample(6, 0.0, seed=3).numpy())
    # At T = 0 a sample is its class's mean: six samples show at most three images.
    distinct = {tuple(np.round(image.ravel(), 4)) for image in drawn}
    assert 1 <= len(distinct) <= 3


def test_checkpoint_round_trip(tmp_path):
    model, x = perturbed_model("nxn_affine")
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    fresh = Glow(ModelConfig(**{**TINY, "seed": 99}))
    assert not np.allclose(fresh.log_prob(x).numpy(), model.log_prob(x).numpy())
    tf.train.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(fresh.log_prob(x).numpy(), model.log_prob(x).numpy(), rtol=1e-6)


def test_bits_per_dim_by_hand():
    """An untrained reverse/additive model is a permutation: bits/dim from N(y; 0, I) by hand."""
    model = Glow(ModelConfig(image_shape=(4, 4, 1), levels=1, steps_per_level=1, hidden_width=4,
                             mixing="reverse", coupling="additive"))
    images = tf.constant(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1) * 16)
    noise = tf.fill([1, 4, 4, 1], 0.25)
    y = (np.arange(16) * 16 + 0.25) / 256.0 - 0.5
    log_prob = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * y**2)
    expected = (-log_prob + 16 * 8 * np.log(2)) / (16 * np.log(2))
    actual = model.bits_per_dim(images, noise).numpy()
    assert actual.shape == (1,)
    assert abs(actual[0] - expected) < 1e-6 * max(1.0, expected), (actual, expected)


def test_invalid_configs_name_the_valid_values():
    """A bad choice's error lists every valid name."""
    for field, names in (("mixing", MIXINGS), ("coupling", COUPLINGS)):
        with pytest.raises(ValueError, match=f"unknown {field} 'bogus'; valid: ") as error:
            ModelConfig(**{**TINY, field: "bogus"})
        listed = str(error.value).split("valid: ")[1].split(", ")
        assert sorted(listed) == sorted(names)
    with pytest.raises(ValueError, match="1..8"):
        ModelConfig(**{**TINY, "n_bits": 9})
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels = 8"):
        ModelConfig(**{**TINY, "image_shape": (28, 28, 1), "levels": 3})
    with pytest.raises(ValueError, match="valid: celeba_hq_256, cifar10, imagenet32"):
        preset("imagenet128")


def test_presets_are_the_papers_setups():
    shapes = {name: (c.image_shape, c.levels, c.steps_per_level, c.n_bits, c.mixing)
              for name, c in PRESETS.items()}
    assert shapes["cifar10"] == ((32, 32, 3), 3, 32, 8, "nxn")
    assert shapes["imagenet32"] == ((32, 32, 3), 3, 48, 8, "nxn")
    assert shapes["imagenet64"] == ((64, 64, 3), 4, 48, 8, "nxn")
    assert shapes["celeba_hq_256"] == ((256, 256, 3), 6, 32, 5, "nxn")
    assert PRESETS["celeba_hq_256"].coupling == "additive"
    assert shapes["mnist"][:2] == ((28, 28, 1), 2)


def test_bfloat16_networks_compute_in_bfloat16_and_keep_float32_weights():
    """The hidden convolutions compute in bfloat16; the last layer, every weight, the latents and
    the log-det stay float32 (see :class:`glow_nxn.layers.nn.CouplingNetwork`)."""
    model = Glow(ModelConfig(**{**TINY, "network_dtype": "bfloat16"}))
    network = model.levels[0].bijectors[1].bijectors[2].network
    assert network.conv_in.compute_dtype == "bfloat16"
    assert network.conv_hidden.compute_dtype == "bfloat16"
    assert network.conv_out.conv.compute_dtype == "float32"
    assert all(v.dtype == tf.float32 for v in model.variables if v.dtype.is_floating)
    zs, logdet = model.encode(tf.zeros([2, 8, 8, 3]))
    assert logdet.dtype == tf.float32 and all(z.dtype == tf.float32 for z in zs)


def loss_and_gradients(model, x, recompute=False):
    """The mean negative log-likelihood of ``x`` and its gradient for every trainable weight."""
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x, recompute=recompute))
    return loss, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("mixing", sorted(MIXINGS))
def test_training_step_compiles_with_xla(mixing):
    """jit_compile=True (--jit_compile) equals the eager step for every mixing, log-dets
    included, except those listed in NOT_XLA_COMPILABLE, which must really fail to compile."""
    model = Glow(ModelConfig(image_shape=(8, 8, 3), levels=2, steps_per_level=1, hidden_width=8,
                             mixing=mixing))
    x = tf.random.stateless_uniform([4, 8, 8, 3], seed=[0, 1]) - 0.5
    model.data_dependent_init(x)
    flow_checks.perturb(model.variables, scale=0.05)
    compiled = tf.function(functools.partial(loss_and_gradients, model), jit_compile=True)
    eager_loss, eager_gradients = loss_and_gradients(model, x)
    if mixing in NOT_XLA_COMPILABLE:
        with pytest.raises(tf.errors.InvalidArgumentError, match="XLA_CPU_JIT"):
            compiled(x)
        return
    xla_loss, xla_gradients = compiled(x)
    np.testing.assert_allclose(xla_loss.numpy(), eager_loss.numpy(), rtol=1e-4)
    for a, b in zip(eager_gradients, xla_gradients):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-4)


# How far a recomputed gradient may be from the plain one, as a share of the largest entry of
# that weight's gradient, by the coupling networks' arithmetic. Eagerly the two are bit for bit
# the same (the same kernels on the same inputs). In a graph, grappler fuses and orders the
# recomputed forward pass apart from the kept one, so sums come out in another order: with
# float32 networks up to 6e-7 of the gradient's scale was seen (about ten float32 ulps, 2⁻²⁴ ≈
# 6e-8 each), and 1e-5 leaves a factor 15. With bfloat16 networks a fused and an unfused
# convolution round to bfloat16 at different points, and one rounding that falls the other way
# moves a value by up to 2⁻⁸ ≈ 4e-3 of it: 2.3e-4 of the scale was seen, and 4e-3 allows one
# such rounding at full scale. Both are far below what a wrong recomputation gives (a weight
# left out has no gradient at all; a step recomputed on another input changes its gradient by
# O(1)).
RECOMPUTE_TOLERANCE = {"float32": 1e-5, "bfloat16": 4e-3}


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "function"])
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_recomputed_gradients_equal_the_plain_ones(name, traced):
    """``recompute=True`` (training's ``remat``) gives the plain loss and, for every trainable
    weight, a gradient (none missing) equal to the plain one up to float32 rounding."""
    model, _ = perturbed_model(name)
    x = init_batch(model, batch=4)
    run = functools.partial(loss_and_gradients, model)
    run = tf.function(run) if traced else run
    plain_loss, plain = run(x, recompute=False)
    loss, recomputed = run(x, recompute=True)
    tolerance = RECOMPUTE_TOLERANCE[model.config.network_dtype]
    np.testing.assert_allclose(loss.numpy(), plain_loss.numpy(), rtol=1e-6)
    assert len(recomputed) == len(model.trainable_variables) > 0
    for variable, gradient, expected in zip(model.trainable_variables, recomputed, plain):
        assert gradient is not None, f"no gradient for {variable.name}"
        scale = float(np.max(np.abs(expected.numpy())))
        assert scale > 0, variable.name
        np.testing.assert_allclose(gradient.numpy(), expected.numpy(),
                                   rtol=0, atol=tolerance * scale,
                                   err_msg=variable.name)


def test_recompute_runs_each_flow_step_again_in_the_backward_pass(monkeypatch):
    """What makes the equality above worth testing: with ``recompute`` the gradient's backward
    pass runs every flow step's forward a second time (from the step's input, which it kept);
    without it, each runs once."""
    model, x = perturbed_model("nxn_affine")
    steps = [step for level in model.levels for step in level.bijectors[1:]]
    runs = collections.Counter()
    for step in steps:
        monkeypatch.setattr(step, "forward", lambda t, step=step, forward=step.forward: (
            runs.update([step.name]), forward(t))[1])
    for recompute, expected in ((False, 1), (True, 2)):
        runs.clear()
        loss_and_gradients(model, x, recompute)
        assert runs == {step.name: expected for step in steps}, (recompute, runs)


def test_recompute_is_refused_during_the_data_dependent_init():
    model = Glow(ModelConfig(**TINY))
    with initialising(), pytest.raises(RuntimeError, match="runs forward, not "
                                                             "forward_recomputing"):
        model.encode(tf.zeros([2, 8, 8, 3]), recompute=True)


# float32's unit round-off: a float32 result is the exact one times (1 + δ), |δ| ≤ 2⁻²⁴.
FLOAT32_ROUNDOFF = 2.0**-24
# Roundings a log-det term passes through on its way into the model's float32 log-det: ≤ 32 in
# the reduction over a layer's pixels and channels (TensorFlow's CPU reduce_sum adds in vector
# blocks, then pairwise: m equal terms lose 8·2⁻²⁴ at m = 1536 and 32·2⁻²⁴ at m = 10⁵,
# measured, where adding them one by one loses up to m·2⁻²⁴), ≤ 42 in the running totals (a
# step's 3 layers, a level's 33 bijectors, the model's 6 parts) and 1 in evaluating the term.
LOGDET_ROUNDINGS = 32 + 42 + 1


def flow_layers(model, x):
    """``[(bijector, h)]``: every bijector of ``model``'s forward pass, in flow order, with the
    input it receives from ``x`` (each split followed by the divide that keeps ``z₁``)."""
    pairs = []

    def run(bijector, h):
        if isinstance(bijector, Chain):
            for inner in bijector.bijectors:
                h = run(inner, h)
            return h
        pairs.append((bijector, h))
        return bijector.forward(h)[0]

    h = x
    for index, level in enumerate(model.levels):
        h = run(level, h)
        if index < len(model.splits):
            h = model.splits[index].divide(run(model.splits[index], h))[0]
    if model.top_prior is not None:
        run(model.top_prior, h)
    return pairs


def independent_logdet(bijector, h):
    """``log|det ∂bijector(h)/∂h|`` per example, float64, by forward-mode autodiff of the map
    itself (not the layer's log-det formula), with what the float32 error budget needs.

    * Per-pixel affine maps (ActNorm, the n×n convolution, the top prior) apply one ``C×C``
      matrix ``A`` at every pixel: its rows are the derivatives along the ``C`` unit vectors at
      one pixel, and the log-det is ``H·W·log|det A|`` (float64 ``slogdet``).
    * Triangular maps (affine coupling, split) transform the last ``C//2`` channels elementwise,
      conditioned on the others, which pass unchanged: the derivative along ones on those
      channels is the Jacobian's diagonal there (and zero on the others, checked), and the
      log-det is ``Σ log|diagonal|``.
    * Squeeze permutes: 0.

    The structures are those the brute-force Jacobians of the shared checks confirm at small
    sizes. Returns ``(logdet [B], magnitude [B], terms)``: ``magnitude`` bounds the sum of the
    absolute values of the terms the layer's float32 log-det adds up (for ``A``: ``H·W·Σ|log σ|``
    over its singular values, which for a diagonal ``A`` are the ``|log scale|`` terms),
    ``terms`` counts the float32-derived values behind the float64 result here, each off by at
    most about 2⁻²⁴ in its log.
    """
    batch, height, width, channels = h.shape
    if isinstance(bijector, Squeeze):
        return np.zeros(batch), np.zeros(batch), 0
    if isinstance(bijector, (ActNorm, InvertibleNxNConv, LearnedPrior)):
        pixels = tf.tile(h[:1, :1, :1], [channels, 1, 1, 1])
        with tf.autodiff.ForwardAccumulator(pixels, tf.eye(channels)[:, None, None]) as acc:
            y = bijector.forward(pixels)[0]
        matrix = tf.reshape(acc.jvp(y), [channels, channels]).numpy().astype(np.float64)
        pixel_logdet = np.linalg.slogdet(matrix)[1]
        pixel_magnitude = np.sum(np.abs(np.log(np.linalg.svd(matrix, compute_uv=False))))
        return (np.full(batch, height * width * pixel_logdet),
                np.full(batch, height * width * pixel_magnitude), height * width * channels)
    if isinstance(bijector, (AffineCoupling, Split)):
        kept = channels - channels // 2
        tangent = tf.concat([tf.zeros_like(h[..., :kept]), tf.ones_like(h[..., kept:])], -1)
        with tf.autodiff.ForwardAccumulator(h, tangent) as acc:
            y = bijector.forward(h)[0]
        derivative = acc.jvp(y).numpy().astype(np.float64)
        assert np.all(derivative[..., :kept] == 0), f"{bijector.name} is not triangular"
        logs = np.log(np.abs(derivative[..., kept:]))
        return (logs.sum(axis=(1, 2, 3)), np.abs(logs).sum(axis=(1, 2, 3)),
                height * width * (channels - kept))
    raise TypeError(f"no independent log-det for {type(bijector).__name__}")


def check_logdet_layer_by_layer(model, x):
    """Every bijector's log-det, and the model's, against :func:`independent_logdet`; and every
    bijector's round trip on the activations it really receives (the shared check, 1e-4).

    Tolerance ``2⁻²⁴·(LOGDET_ROUNDINGS·S + N)``, per bijector and for the whole model: the
    float32 log-det of terms whose magnitudes add up to ``S`` is off by at most
    ``LOGDET_ROUNDINGS·2⁻²⁴·S`` (see that constant), and the float64 sum here of ``N``
    float32-derived terms by at most ``N·2⁻²⁴``.
    """
    total, magnitude, terms = 0.0, 0.0, 0
    for bijector, h in flow_layers(model, x):
        expected, layer_magnitude, layer_terms = independent_logdet(bijector, h)
        actual = bijector.forward(h)[1].numpy().astype(np.float64)
        tolerance = FLOAT32_ROUNDOFF * (LOGDET_ROUNDINGS * layer_magnitude + layer_terms)
        assert np.all(np.abs(actual - expected) <= tolerance), (
            f"{bijector.name}: log-det {actual} vs independent {expected} (tolerance {tolerance})")
        flow_checks.check_round_trip(bijector.forward, bijector.inverse, h)
        total, magnitude, terms = total + expected, magnitude + layer_magnitude, terms + layer_terms
    logdet = model.forward(x)[1].numpy().astype(np.float64)
    tolerance = FLOAT32_ROUNDOFF * (LOGDET_ROUNDINGS * magnitude + terms)
    assert np.all(np.abs(logdet - total) <= tolerance), (
        f"model log-det {logdet} vs the sum of independent ones {total} (tolerance {tolerance})")


def test_layer_by_layer_logdet_check_catches_a_one_percent_error(monkeypatch):
    """The check above can fail: couplings whose log-det is off by 1% are caught."""
    model, x = perturbed_model("nxn_affine")
    check_logdet_layer_by_layer(model, x)
    forward = AffineCoupling._forward

    def wrong_forward(self, t):
        y, logdet = forward(self, t)
        return y, 1.01 * logdet

    monkeypatch.setattr(AffineCoupling, "_forward", wrong_forward)
    with pytest.raises(AssertionError, match="affine_coupling.*vs independent"):
        check_logdet_layer_by_layer(model, x)


def test_cifar10_preset_round_trip_and_logdet_at_full_size_and_depth():
    """The cifar10 preset as trained (32×32×3, L = 3, K = 32, width 512: 96 flow steps, 44 M
    weights), where float32 error adds up over 294 bijectors, on 2 images:
    :func:`check_logdet_layer_by_layer` (every bijector's log-det and round trip, and the model's
    log-det against the float64 sum of independent per-layer ones, to a derived tolerance), then
    the whole model's round trip with the shared check (1e-4; the inverse's log-det minus the
    forward's).

    Weights: every one perturbed by N(0, 0.005²), then the ActNorms initialised on 4 images, as a
    trained model's ActNorms keep every step's activations near unit scale. 0.005 gives the
    coupling networks' last convolution (fan-in 9·512) outputs of spread ≈ 0.005·√(9·512/2) ≈
    0.24, about the TINY models' 0.05·√(9·8/2) = 0.3 in the shared checks; the whole round trip
    is then 1.3e-5. Twice that (0.01) makes 96 random couplings chaotic: decoding amplifies a
    latent perturbation 1.2·10⁴ times (3.4 times at 0.005) and the round trip is 2.5e-2 while
    every bijector still reproduces its own input to 1.4e-6. That is the conditioning of random
    deep flows, not float32 accumulation, which the per-bijector checks bound separately.
    """
    model = Glow(preset("cifar10"))
    x = init_batch(model, batch=4)
    flow_checks.perturb(model.variables, scale=0.005)
    model.data_dependent_init(x)
    check_logdet_layer_by_layer(model, x[:2])
    flow_checks.check_round_trip(model.forward, model.inverse, x[:2])
