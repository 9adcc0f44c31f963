"""The whole model: the three shared checks, init, shapes, sampling, checkpoints, configuration."""
import numpy as np
import pytest
import tensorflow as tf

import flow_checks
from glow_nxn.config import PRESETS, ModelConfig, preset
from glow_nxn.layers import MIXINGS, ActNorm
from glow_nxn.model import Glow

TINY = dict(image_shape=(8, 8, 3), levels=2, steps_per_level=2, hidden_width=8)

MODEL_CASES = {
    **{f"{mixing}_affine": dict(mixing=mixing) for mixing in MIXINGS},
    "nxn_additive": dict(coupling="additive"),
    "nxn_no_learn_top": dict(learn_top=False),
    "nxn_3_levels": dict(image_shape=(8, 8, 1), levels=3),
    "nxn_bfloat16_networks": dict(network_dtype="bfloat16"),
}


def perturbed_model(name):
    model = Glow(ModelConfig(**{**TINY, **MODEL_CASES[name]}))
    x = tf.random.stateless_uniform([16, *model.config.image_shape], seed=[3, 4]) - 0.5
    model.data_dependent_init(x)
    flow_checks.perturb(model.variables, scale=0.05, seed=7)
    return model, x[:2]


@pytest.mark.parametrize("check", ["round_trip", "logdet_vs_jacobian", "eager_equals_function"])
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_contract(name, check):
    model, x = perturbed_model(name)
    if check == "round_trip":
        flow_checks.check_round_trip(model.forward, model.inverse, x)
    elif check == "logdet_vs_jacobian":
        flow_checks.check_logdet(model.forward, x)
    else:
        # bfloat16 networks too: their roundings do not depend on tracing.
        flow_checks.check_eager_equals_function(model.forward, model.inverse, x)


def test_latent_shapes_per_level():
    model = Glow(ModelConfig(image_shape=(16, 16, 3), levels=3, steps_per_level=1,
                             hidden_width=4))
    zs, _ = model.encode(tf.zeros([5, 16, 16, 3]))
    assert [tuple(z.shape) for z in zs] == [(5, 8, 8, 6), (5, 4, 4, 12), (5, 2, 2, 48)]
    assert model.latent_shapes == [(8, 8, 6), (4, 4, 12), (2, 2, 48)]
    assert sum(np.prod(s) for s in model.latent_shapes) == 16 * 16 * 3


def test_data_dependent_init_standardises_every_flow_actnorm():
    model = Glow(ModelConfig(**TINY))
    x = 0.3 * tf.random.stateless_normal([32, 8, 8, 3], seed=[0, 1]) + 0.1
    model.data_dependent_init(x)
    h, checked = x, 0
    for index, level in enumerate(model.levels):
        squeeze, *steps = level.bijectors
        h, _ = squeeze.forward(h)
        for step in steps:
            actnorm = step.bijectors[0]
            assert isinstance(actnorm, ActNorm)
            mean, variance = tf.nn.moments(actnorm.forward(h)[0], axes=[0, 1, 2])
            np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4)
            np.testing.assert_allclose(variance.numpy(), 1.0, atol=1e-3)
            checked += 1
            h, _ = step.forward(h)
        if index < len(model.splits):
            h, _ = model.splits[index].forward(h)
            h, _ = model.splits[index].divide(h)
    assert checked == 4


def test_data_dependent_init_is_not_traced():
    model = Glow(ModelConfig(**TINY))
    with pytest.raises(RuntimeError, match="eagerly"):
        tf.function(model.data_dependent_init)(tf.zeros([2, 8, 8, 3]))


def test_sample_at_temperature_zero_is_deterministic():
    model, _ = perturbed_model("nxn_affine")
    a = model.sample(3, temperature=0.0)
    b = model.sample(3, temperature=0.0, seed=5)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    zeros = [tf.zeros([3, *s]) for s in model.latent_shapes]
    np.testing.assert_allclose(a.numpy(), model.decode(zeros).numpy(), atol=1e-6)
    np.testing.assert_allclose(a[0].numpy(), a[1].numpy(), atol=1e-6)


def test_sample_temperature_scales_every_prior():
    model, _ = perturbed_model("nxn_affine")
    for temperature in (0.5, 1.0):
        x = model.sample(4, temperature=temperature, seed=11)
        zs, _ = model.encode(x)
        for index, (z, shape) in enumerate(zip(zs, model.latent_shapes)):
            expected = temperature * tf.random.stateless_normal([4, *shape], seed=[11, index])
            np.testing.assert_allclose(z.numpy(), expected.numpy(), atol=2e-3)
    seeded = model.sample(2, 1.0, seed=1).numpy()
    np.testing.assert_array_equal(seeded, model.sample(2, 1.0, seed=1).numpy())
    assert not np.allclose(seeded, model.sample(2, 1.0, seed=2).numpy())


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
    with pytest.raises(ValueError, match="valid: .*conv1x1.*nxn.*reverse"):
        ModelConfig(**{**TINY, "mixing": "bogus"})
    with pytest.raises(ValueError, match="valid: additive, affine"):
        ModelConfig(**{**TINY, "coupling": "bogus"})
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
