"""The multi-scale machinery (RealNVP §3.6, Glow §3): squeeze, split with a learned prior, top prior.

The priors are written as bijectors that *standardise*: a Gaussian ``N(z; μ, σ)`` prior on ``z`` is
the standard normal ``N(ε; 0, I)`` on ``ε = (z − μ)/σ`` times the Jacobian ``|∂ε/∂z| = Π 1/σ``.
So :class:`Split` and :class:`LearnedPrior` map to ``ε`` with log-det ``−Σ log σ``, the model
scores every latent under ``N(0, I)``, and sampling at temperature ``T`` draws ``ε ~ N(0, T²I)``,
which is ``z ~ N(μ, (T·σ)²)``: the temperature scales the standard deviation of every prior.
"""
import math

import tensorflow as tf

from glow_nxn.keras import keras
from glow_nxn.layers.base import Bijector, batch_logdet, spatial_size, sum_over_pixels
from glow_nxn.layers.nn import ZeroConv2D


class Squeeze(Bijector):
    """Space-to-depth by 2: ``[B, H, W, C] → [B, H/2, W/2, 4C]``; a permutation, log-det 0."""

    def _forward(self, x):
        return tf.nn.space_to_depth(x, 2), batch_logdet(x, 0.0)

    def _inverse(self, y):
        return tf.nn.depth_to_space(y, 2), batch_logdet(y, 0.0)


class Split(Bijector):
    """Glow's split: half the channels leave the flow, scored under a learned conditional Gaussian.

    ``x: [B, H, W, C]`` is cut into ``z₁ = x[..., :k]`` (``k = C − C//2``, stays in the flow) and
    ``z₂ = x[..., k:]`` (leaves). A :class:`ZeroConv2D` of ``z₁`` gives ``μ(z₁)`` and
    ``log σ(z₁)``, each ``[B, H, W, C//2]``, zero at construction (prior ``N(0, I)``); they are
    its even and odd output channels (Glow's layout), which it returns evens first for a
    ``tf.split`` (``ZeroConv2D(deinterleave=True)``).

    ``forward(x) = (concat(z₁, ε), −Σ log σ(z₁))`` with ``ε = (z₂ − μ(z₁)) / σ(z₁)`` (module
    docstring). The caller keeps ``[..., :k]`` and factors out ``ε = [..., k:]``
    (:meth:`divide`); ``inverse`` takes ``concat(z₁, ε)`` back to ``x``.
    """

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.kept = channels - channels // 2
        self.prior = ZeroConv2D(2 * (channels // 2), deinterleave=True)

    def divide(self, y):
        """``concat(z₁, ε) → (z₁, ε)``."""
        return tf.split(y, [self.kept, y.shape[-1] - self.kept], axis=-1)

    def _mean_and_log_std(self, z1):
        return tf.split(self.prior(z1), 2, axis=-1)

    def _forward(self, x):
        z1, z2 = self.divide(x)
        mean, log_std = self._mean_and_log_std(z1)
        eps = (z2 - mean) * tf.exp(-log_std)
        return tf.concat([z1, eps], axis=-1), -sum_over_pixels(log_std)

    def _inverse(self, y):
        z1, eps = self.divide(y)
        mean, log_std = self._mean_and_log_std(z1)
        z2 = mean + eps * tf.exp(log_std)
        return tf.concat([z1, z2], axis=-1), sum_over_pixels(log_std)


class LearnedPrior(Bijector):
    """The learned top prior ``N(z; μ, σ)`` with per-channel ``μ, log σ: [C]`` (Glow's learn-top).

    Both start at zero (a standard normal). ``forward(z) = ((z − μ)/σ, −H·W·Σ_c log σ_c)``.
    """

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=[channels], initializer="zeros")
        self.log_std = self.add_weight(name="log_std", shape=[channels], initializer="zeros")

    def _logdet(self, t):
        return batch_logdet(t, -spatial_size(t) * tf.reduce_sum(self.log_std))

    def _forward(self, z):
        return (z - self.mean) * tf.exp(-self.log_std), self._logdet(z)

    def _inverse(self, eps):
        return self.mean + eps * tf.exp(self.log_std), -self._logdet(eps)


class ClassPrior(keras.layers.Layer):
    r"""The class-conditional prior of the latents (Glow's ``ycond``), and an optional classifier.

    A class-conditional Glow scores the latents ``ε_1 … ε_L`` (``ε_l: [B, H_l, W_l, C_l]``, what
    the unconditional model scores under ``N(0, I)``) of an image of class ``y ∈ {0 … K−1}``
    under

    .. math::  ε_l \sim N\big(μ_l[y],\ \mathrm{diag}\, σ_l[y]^2\big),

    with ``μ_l, log σ_l`` learned per class, zero at construction (every class starts at the
    unconditional ``N(0, I)``). The top latent ``ε_L``, which carries the image's global
    structure, has them per class and position, ``[K, H_L, W_L, C_L]``: a mean latent per class,
    a prototype that sampling at temperature 0 decodes. Each split's latent has them per class
    and channel, ``[K, 1, 1, C_l]``, broadcast over its pixels (Glow's ``ycond`` is the per-channel
    form, on the top alone); so the parameters number ``2·K·(H_L·W_L·C_L + Σ_{l<L} C_l)``, small
    beside the flow's. Through the standardising split and top priors (module docstring) every
    prior becomes class-dependent: ``z₂ ~ N(μ(z₁) + σ(z₁)·μ_l[y], (σ(z₁)·σ_l[y])²)``. The flow
    does not see the class: ``encode`` and ``decode`` are the unconditional model's, and only the
    scoring and drawing of latents depend on ``y``.

    **Every class at once.** Sum ``ε_l`` over the axes its parameters broadcast over (the pixels of
    a split's latent; none for the top): ``S₁ = Σ ε``, ``S₂ = Σ ε²``, ``n`` terms each, flattened
    to ``[B, P]`` like the parameters to ``[K, P]``. With ``w = 1/σ²``, the log-density of level
    ``l`` under class ``k`` is

    .. math::  -\tfrac12 \Big(S_2 w_k^\top - 2\, S_1 (μ_k w_k)^\top + n \sum_p μ_{kp}^2 w_{kp}\Big)
               - n \sum_p \log σ_{kp} - \tfrac{H_l W_l C_l}{2} \log 2π,

    three ``[B, P] × [P, K]`` products: :meth:`log_prob_per_class` scores all ``K`` classes for
    about the cost of one (in float64, where the three terms cancel), so evaluation gets the
    marginal and Bayes' rule for free.

    ``classifier``: logits ``[B, K] = vec(ε_L)·A + b``, a linear classifier of the whole top
    latent, zero at construction; trained with ``TrainConfig.class_weight``. Glow's ``y_logits``
    pools the top latent over its pixels first; on MNIST that leaves 8 numbers per image, and a
    classifier of them reached 17% test accuracy in 600 steps (docs/RESULTS.md), so this one
    keeps the positions (``H_L·W_L·C_L·K`` weights).
    """

    def __init__(self, num_classes, latent_shapes, classifier=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.means, self.log_stds = [], []
        for level, (height, width, channels) in enumerate(latent_shapes):
            top = level == len(latent_shapes) - 1
            shape = [num_classes, height, width, channels] if top else [num_classes, 1, 1, channels]
            self.means.append(self.add_weight(name=f"mean_{level}", shape=shape,
                                              initializer="zeros"))
            self.log_stds.append(self.add_weight(name=f"log_std_{level}", shape=shape,
                                                 initializer="zeros"))
        self.classifier = None
        if classifier:
            features = int(math.prod(latent_shapes[-1]))
            self.classifier = (
                self.add_weight(name="classifier_kernel", shape=[features, num_classes],
                                initializer="zeros"),
                self.add_weight(name="classifier_bias", shape=[num_classes],
                                initializer="zeros"))
        self.built = True

    def log_prob_per_class(self, zs):
        """``log p(ε_1 … ε_L | y = k)`` for every class ``k``: float32 ``[B, K]``."""
        total = 0.0
        for z, mean, log_std in zip(zs, self.means, self.log_stds):
            z = tf.cast(z, tf.float64)
            mean, log_std = tf.cast(mean, tf.float64), tf.cast(log_std, tf.float64)
            per_channel = mean.shape[1] == 1 and mean.shape[2] == 1
            sum1 = tf.reduce_sum(z, axis=[1, 2], keepdims=True) if per_channel else z
            sum2 = (tf.reduce_sum(tf.square(z), axis=[1, 2], keepdims=True) if per_channel
                    else tf.square(z))
            size = tf.cast(tf.size(z[0]), tf.float64)
            terms = size / tf.cast(tf.size(sum1[0]), tf.float64)  # n of the docstring
            weight = _rows(tf.exp(-2.0 * log_std))  # [K, P]
            mean = _rows(mean)
            quadratic = (tf.matmul(_rows(sum2), weight, transpose_b=True)
                         - 2.0 * tf.matmul(_rows(sum1), mean * weight, transpose_b=True)
                         + terms * tf.reduce_sum(tf.square(mean) * weight, axis=1)[None])
            total += (-0.5 * quadratic - terms * tf.reduce_sum(_rows(log_std), axis=1)[None]
                      - 0.5 * size * math.log(2.0 * math.pi))
        return tf.cast(total, tf.float32)

    def log_prob(self, zs, labels):
        """``log p(ε_1 … ε_L | y = labels)``: ``[B]``, for int ``labels [B]`` in ``0 … K−1``."""
        return tf.gather(self.log_prob_per_class(zs), tf.cast(labels, tf.int32), axis=1,
                         batch_dims=1)

    def marginal_log_prob(self, zs):
        """``log p(ε_1 … ε_L) = log (1/K) Σ_k p(ε | k)``, the mixture over equally likely
        classes: ``[B]``. A class-conditional model is also a density of images alone."""
        return self.mixture(self.log_prob_per_class(zs))

    def mixture(self, per_class):
        """``log (1/K) Σ_k exp(per_class[:, k])``: ``[B, K]`` class log-densities (of latents
        or, with the flow's log-det added, of images) → the mixture's ``[B]``."""
        return tf.reduce_logsumexp(per_class, axis=1) - math.log(self.num_classes)

    def draw(self, etas, labels, temperature):
        """Latents of class ``labels [B]`` from standard-normal ``etas`` (shaped as the
        latents): ``ε_l = μ_l[y] + T·σ_l[y]·η_l``, the temperature ``T`` scaling every std."""
        labels = tf.cast(labels, tf.int32)
        return [tf.gather(mean, labels) + temperature * tf.exp(tf.gather(log_std, labels)) * eta
                for eta, mean, log_std in zip(etas, self.means, self.log_stds)]

    def dense_parameters(self, level, latent_shape):
        """``(μ_l, σ_l)`` of every class broadcast to whole latents: two ``[K, H_l, W_l, C_l]``."""
        shape = [self.num_classes, *latent_shape]
        return (tf.broadcast_to(self.means[level], shape),
                tf.broadcast_to(tf.exp(self.log_stds[level]), shape))

    def logits(self, zs):
        """The classifier's logits ``[B, K]`` from the top latent ``zs[-1]``."""
        if self.classifier is None:
            raise ValueError("this class prior has no classifier (ModelConfig.classifier)")
        kernel, bias = self.classifier
        return tf.reshape(zs[-1], [tf.shape(zs[-1])[0], -1]) @ kernel + bias


def _rows(t):
    """``[N, …] → [N, P]``: each of the leading axis's entries flattened row-major."""
    return tf.reshape(t, [tf.shape(t)[0], -1])
