r"""A trained Glow as a TensorFlow SavedModel: usable without this package, from any TF 2 program.

    exported = tf.saved_model.load(path)      # no glow_nxn import needed
    exported.bits_per_dim(images=uint8 [B, H, W, C], seed=0)    → {"bits_per_dim": [B]}
    exported.log_prob(x=float32 [B, H, W, C])                  → {"log_prob": [B]}
    exported.encode(x=float32 [B, H, W, C])                    → {"z0": …, "z<L-1>": …, "logdet": [B]}
    exported.decode(z0=…, …, z<L-1>=…)                         → {"x": [B, H, W, C]}
    exported.sample(n=16, temperature=0.7, seed=0)             → {"x": [n, H, W, C], "images": uint8}

Each is a serving signature (``exported.signatures[name]``, what TF Serving and
``saved_model_cli`` see) and, with the same keyword arguments and results, an attribute of the
loaded object. The numbers are the model's (:mod:`glow_nxn.model`): continuous ``x`` lies in
``[-½, ½]`` (:mod:`glow_nxn.objectives`), ``z_l`` are the latents of level ``l`` with the shapes
in ``exported.latent_shapes``, ``bits_per_dim`` dequantises with
``tf.random.stateless_uniform(images.shape, seed=[seed, 0])``, ``sample`` draws
``ε_l ~ N(0, temperature²·I)`` with ``tf.random.stateless_normal(…, seed=[seed, l])`` and returns
the images quantised as sample.py's pictures are (``n_bits`` levels spread over 0..255).
A class-conditional model is exported as the density of images alone: ``log_prob`` and
``bits_per_dim`` score the mixture of its classes and ``sample`` draws each image's class
uniformly from the seed (:meth:`glow_nxn.model.Glow.sample`); a class is chosen in Python
(``sample.py --label``, ``Glow.sample(labels=…)``, ``as_distribution(model, label)``).

The exported object holds the weights it was given (the run's weight average by default, see
:func:`glow_nxn.load`) and the functions traced for a variable batch size; the Keras model itself
is not saved (its layers are not Keras-serialisable, and nothing needs them).
"""
import dataclasses
import functools
import json
import types

import tensorflow as tf

from glow_nxn import objectives

SIGNATURES = ("bits_per_dim", "log_prob", "encode", "decode", "sample")


class ExportedGlow(tf.Module):
    """The functions of the module docstring around ``model``, as concrete functions (what
    ``tf.saved_model.save`` keeps); :func:`save` writes it."""

    def __init__(self, model):
        super().__init__(name="glow")
        # A plain holder, so that saving does not track the Keras model (and try Keras's own
        # serialisation); its variables are tracked, below.
        self._held = types.SimpleNamespace(model=model)
        self.weights = list(model.variables)
        config = model.config
        self.config_json = tf.Variable(json.dumps(dataclasses.asdict(config), sort_keys=True),
                                       trainable=False)
        self.latent_shapes = tf.Variable(tf.constant(model.latent_shapes, tf.int64),
                                         trainable=False)
        image = tf.TensorSpec([None, *config.image_shape], tf.float32)
        latents = {f"z{index}": tf.TensorSpec([None, *shape], tf.float32)
                   for index, shape in enumerate(model.latent_shapes)}
        scalar = functools.partial(tf.TensorSpec, [])
        self.bits_per_dim = tf.function(self._bits_per_dim).get_concrete_function(
            images=tf.TensorSpec([None, *config.image_shape], tf.uint8), seed=scalar(tf.int64))
        self.log_prob = tf.function(self._log_prob).get_concrete_function(x=image)
        self.encode = tf.function(self._encode).get_concrete_function(x=image)
        self.decode = tf.function(self._decode).get_concrete_function(**latents)
        self.sample = tf.function(self._sample).get_concrete_function(
            n=scalar(tf.int32), temperature=scalar(tf.float32), seed=scalar(tf.int64))

    def _bits_per_dim(self, images, seed):
        noise = tf.random.stateless_uniform(tf.shape(images), seed=tf.stack([seed, 0]))
        return {"bits_per_dim": self._held.model.bits_per_dim(images, uniform_noise=noise)}

    def _log_prob(self, x):
        return {"log_prob": self._held.model.log_prob(x)}

    def _encode(self, x):
        zs, logdet = self._held.model.encode(x)
        return {**{f"z{index}": z for index, z in enumerate(zs)}, "logdet": logdet}

    def _decode(self, **zs):
        return {"x": self._held.model.decode([zs[f"z{index}"] for index in range(len(zs))])}

    def _sample(self, n, temperature, seed):
        x = self._held.model.sample(n, temperature, seed)
        return {"x": x, "images": objectives.to_uint8(x, self._held.model.config.n_bits)}

def save(model, path):
    """Write ``model`` (a :class:`glow_nxn.model.Glow`) to ``path`` as a SavedModel whose serving
    signatures are :data:`SIGNATURES`."""
    exported = ExportedGlow(model)
    tf.saved_model.save(exported, path, signatures={name: getattr(exported, name)
                                                    for name in SIGNATURES})
