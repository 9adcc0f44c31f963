"""glow_nxn.probability: a model as a TFP bijector and distribution, against the model's own
numbers. The README's example runs on a trained, loaded run in tests/test_scripts.py."""
import numpy as np
import pytest
import tensorflow as tf

import flow_checks
from glow_nxn.config import ModelConfig
from glow_nxn.model import Glow
from glow_nxn.probability import GlowBijector, as_distribution

IMAGE_SHAPE = (4, 4, 3)
DIMS = 48


def initialised_model():
    """A tiny model (D = 48, two levels) with its ActNorms initialised on data, and a batch of 3
    of that data: uniform in [-0.5, 0.5), the range of dequantised images."""
    model = Glow(ModelConfig(image_shape=IMAGE_SHAPE, levels=2, steps_per_level=2,
                             hidden_width=8))
    x = tf.random.stateless_uniform([16, *IMAGE_SHAPE], seed=[3, 4]) - 0.5
    model.data_dependent_init(x)
    return model, x[:3]


@pytest.fixture
def model_and_x():
    """:func:`initialised_model` with every weight then perturbed, so that no log-det is zero
    and no layer an identity (the model's encode log-dets are of order 50 here)."""
    model, x = initialised_model()
    flow_checks.perturb(model.variables, scale=0.05)
    return model, x


def assert_log_prob_is_the_models(distribution, model, x):
    np.testing.assert_allclose(distribution.log_prob(x).numpy(), model.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-4)


def test_log_prob_is_the_models(model_and_x):
    """For a batch, for any batch shape (here [2, 3] and none), eagerly and traced with an
    unknown batch size."""
    model, x = model_and_x
    distribution = as_distribution(model)
    assert distribution.event_shape == IMAGE_SHAPE and distribution.batch_shape == []
    assert_log_prob_is_the_models(distribution, model, x)
    six = tf.concat([x, x[::-1]], axis=0)
    np.testing.assert_allclose(
        distribution.log_prob(tf.reshape(six, [2, 3, *IMAGE_SHAPE])).numpy(),
        tf.reshape(model.log_prob(six), [2, 3]).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(distribution.log_prob(x[0]).numpy(),
                               model.log_prob(x[:1])[0].numpy(), rtol=1e-5, atol=1e-4)
    traced = tf.function(distribution.log_prob,
                         input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE])])
    np.testing.assert_allclose(traced(x).numpy(), model.log_prob(x).numpy(), rtol=1e-5,
                               atol=1e-4)


class WrongSignBijector(GlowBijector):
    """A GlowBijector whose log-dets have the wrong sign: what the tests must catch."""

    def _inverse_with_ildj(self, x):
        eps, attributes = super()._inverse_with_ildj(x)
        return eps, {"ildj": -attributes["ildj"]}


def test_the_checks_fail_on_a_wrong_log_det_sign(model_and_x):
    """The log-prob check and the shared log-det check of :func:`test_bijector_contract`."""
    model, x = model_and_x
    bijector = WrongSignBijector(model)
    distribution = as_distribution(model).copy(bijector=bijector)
    assert isinstance(distribution.bijector, WrongSignBijector)
    with pytest.raises(AssertionError):
        assert_log_prob_is_the_models(distribution, model, x)
    with pytest.raises(AssertionError, match="brute force"):
        flow_checks.check_logdet(tfp_as_flow(bijector)[0], x)


def tfp_as_flow(bijector):
    """The bijector in the house's direction, for :mod:`flow_checks`: data → latent is its
    inverse. Each call passes on a new tensor (``tf.identity``), so TFP's cache, keyed on tensor
    identity, cannot hand a round trip back its own input."""
    def data_to_latent(x):
        x = tf.identity(x)
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=3)

    def latent_to_data(eps):
        eps = tf.identity(eps)
        return bijector.forward(eps), bijector.forward_log_det_jacobian(eps, event_ndims=1)

    return data_to_latent, latent_to_data


@pytest.mark.parametrize("check", ["round_trip", "logdet_vs_jacobian", "eager_equals_function"])
def test_bijector_contract(model_and_x, check):
    """The three shared checks on the bijector, both directions (data → latent → data) with
    their log-dets: the inverse's log-det against float64 slogdet of the brute-force Jacobian of
    ``inverse``, a 48 × 48 matrix."""
    model, x = model_and_x
    data_to_latent, latent_to_data = tfp_as_flow(GlowBijector(model))
    if check == "round_trip":
        flow_checks.check_round_trip(data_to_latent, latent_to_data, x)
    elif check == "logdet_vs_jacobian":
        flow_checks.check_logdet(data_to_latent, x)
    else:
        flow_checks.check_eager_equals_function(data_to_latent, latent_to_data, x)


def test_latents_and_log_dets_are_the_models(model_and_x):
    """``inverse(x)`` is the model's latents flattened and concatenated level by level;
    ``inverse_log_det_jacobian`` the model's encode log-det, and ``forward_log_det_jacobian`` minus
    it, both from the cache of a transform (one pass) and computed afresh."""
    model, x = model_and_x
    bijector = GlowBijector(model)
    zs, logdet = model.encode(x)
    eps = bijector.inverse(x)
    np.testing.assert_allclose(eps.numpy(), flow_checks.flatten(zs).numpy(), atol=1e-6)
    assert eps.shape == [3, DIMS] and bijector.inverse_event_shape(IMAGE_SHAPE) == [DIMS]
    assert bijector.forward_event_shape([DIMS]) == IMAGE_SHAPE
    for ildj, fldj in [(bijector.inverse_log_det_jacobian(x, event_ndims=3),
                        bijector.forward_log_det_jacobian(eps, event_ndims=1)),
                       (bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=3),
                        bijector.forward_log_det_jacobian(tf.identity(eps), event_ndims=1))]:
        np.testing.assert_allclose(ildj.numpy(), logdet.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(fldj.numpy(), -logdet.numpy(), rtol=1e-5, atol=1e-4)


def test_log_prob_encodes_once_and_never_decodes(model_and_x, monkeypatch):
    """The log-det comes with the latents, from one pass of ``encode`` (the module docstring)."""
    model, x = model_and_x
    calls = []

    def counted(name):
        method = getattr(model, name)

        def call(*args):
            calls.append(name)
            return method(*args)
        return call

    for name in ("encode", "inverse"):
        monkeypatch.setattr(model, name, counted(name))
    as_distribution(model).log_prob(x)
    assert calls == ["encode"]


def test_sample_decodes_the_base_draw():
    """``sample(n, seed)`` is ``[n, H, W, C]``, finite, and the model's decoding of the standard
    normal draw of the same seed, split into the latents' shapes here by hand.

    The model's coupling networks keep their zero start: decoding draws the model never produced
    from data is expansive with perturbed couplings (tests/test_model.py's ``sampling_model``)."""
    model, _ = initialised_model()
    distribution = as_distribution(model)
    samples = distribution.sample(5, seed=[1, 2])
    assert samples.shape == (5, *IMAGE_SHAPE)
    assert np.all(np.isfinite(samples.numpy()))
    eps = distribution.distribution.sample(5, seed=[1, 2])
    level_1, top = eps[:, :24], eps[:, 24:]
    expected = model.decode([tf.reshape(level_1, [5, 2, 2, 6]), tf.reshape(top, [5, 1, 1, 24])])
    np.testing.assert_allclose(samples.numpy(), expected.numpy(), atol=1e-6)
    traced = tf.function(lambda: distribution.sample(5, seed=[1, 2]))()
    np.testing.assert_allclose(traced.numpy(), samples.numpy(), atol=1e-5)


def test_a_class_conditional_model_is_its_class_prior_or_their_mixture():
    """Of a class-conditional model (class priors perturbed far from their start), the
    distribution of a label scores ``log p(x | label)`` and draws latents of that class; without
    a label it scores the mixture, the model's own ``log_prob(x)``. A bad label is refused."""
    model = Glow(ModelConfig(image_shape=IMAGE_SHAPE, levels=2, steps_per_level=2,
                             hidden_width=8, num_classes=3))
    x = tf.random.stateless_uniform([16, *IMAGE_SHAPE], seed=[3, 4]) - 0.5
    model.data_dependent_init(x)
    flow_checks.perturb(model.variables, scale=0.05)
    for variable in model.class_prior.variables:
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]) * 0.5)
    x = x[:3]
    assert_log_prob_is_the_models(as_distribution(model), model, x)
    for label in range(3):
        np.testing.assert_allclose(as_distribution(model, label).log_prob(x).numpy(),
                                   model.log_prob(x, labels=[label] * 3).numpy(),
                                   rtol=1e-5, atol=1e-4)
    # The classes' scores differ by far more than the tolerance.
    scores = [as_distribution(model, k).log_prob(x).numpy() for k in range(3)]
    assert np.min(np.ptp(scores, axis=0)) > 1.0
    # A sample of class 2 encodes to latents whose mean is near class 2's mean.
    samples = as_distribution(model, 2).sample(400, seed=5)
    zs, _ = model.encode(samples)
    for z, mean in zip(zs, model.class_prior.means):
        np.testing.assert_allclose(tf.reduce_mean(z - mean[2], axis=[0, 1, 2]).numpy(), 0.0,
                                   atol=0.15)
    with pytest.raises(ValueError, match="label must be a class in 0..2, got 3"):
        as_distribution(model, 3)
    with pytest.raises(ValueError, match="not class-conditional"):
        as_distribution(initialised_model()[0], 0)
