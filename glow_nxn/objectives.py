r"""Numerical conventions, in one place: n-bit reduction, dequantisation, bits/dim, and back.

For an 8-bit image ``x ∈ {0..255}^D`` (``D = H·W·C`` of the image itself) and a model of
``n_bits`` bits:

1. reduction      ``x_n = floor(x / 2^(8 − n_bits)) ∈ {0 .. 2^n_bits − 1}``
2. scaling        ``y = x_n / 2^n_bits − 0.5 ∈ [−0.5, 0.5)``
3. dequantisation ``y ← y + u / 2^n_bits`` with ``u ~ U(0, 1)^D``, i.e. noise ``U(0, 1/2^n_bits)``

so ``y`` fills the cell ``[x_n/2^n − 0.5, (x_n+1)/2^n − 0.5)`` of volume ``2^(−n_bits·D)``. The flow
gives a density ``p(y) = N(z; 0, I)·|det ∂z/∂y|`` and the discrete model's code length is

.. math::

    \text{bits/dim} = \frac{-\log p(z) - \sum \log|\det J| + D \ln 2^{n}}{D \ln 2},

the ``D ln 2^n`` term being minus the log volume of one cell. A uniform density over the unit
cube (``log p(y) = 0``) therefore scores exactly ``n_bits``; a density that puts all its mass on
the right cells scores between 0 and ``n_bits``.
"""
import math

import numpy as np
import tensorflow as tf

from glow_nxn.config import check_n_bits

_BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))


def reduce_bits(images, n_bits):
    """``floor(x / 2^(8−n_bits))`` of uint8 ``images`` ``[..., H, W, C]``, as float32."""
    check_n_bits(n_bits)
    x = tf.cast(images, tf.float32)
    return tf.floor(x / 2.0 ** (8 - n_bits))


def dequantize(images, n_bits, uniform_noise):
    """uint8 ``images`` → continuous ``y`` (steps 1–3 of the module docstring).

    ``uniform_noise`` has the shape of ``images`` with values in ``[0, 1)``; pass zeros for the
    cell's lower corner and 0.5 for its centre. Returns float32 ``y ∈ [−0.5, 0.5)``.
    """
    bins = 2.0**n_bits
    y = (reduce_bits(images, n_bits) + uniform_noise) / bins - 0.5
    # float32 rounding can take the top cell's y = (2^n − 1 + u)/2^n − 0.5 to exactly 0.5 for u
    # within 2⁻²⁴ of 1: keep it inside the cell.
    return tf.minimum(y, _BELOW_HALF)


def to_uint8(y, n_bits):
    """Continuous ``y`` → the uint8 image of the cell it lies in (the inverse of :func:`dequantize`).

    Values outside ``[−0.5, 0.5)``, as a sample may give, are clipped to the nearest cell.
    """
    check_n_bits(n_bits)
    return tf.cast(cell_index(y, n_bits) * 2.0 ** (8 - n_bits), tf.uint8)


def cell_index(y, n_bits):
    """The cell ``k = floor((y + ½)·2^n)`` that continuous ``y`` lies in, clipped to
    ``0 .. 2^n − 1``: float, the shape of ``y``. :func:`to_uint8` and the variational dequantiser
    (:mod:`glow_nxn.layers.dequantizer`) read cells with it."""
    bins = 2.0**n_bits
    return tf.clip_by_value(tf.floor((y + 0.5) * bins), 0.0, bins - 1.0)


def standard_normal_log_prob(z):
    """``log N(z; 0, I)`` summed over all but the batch axis: ``[B, ...] → [B]``."""
    flat = tf.reshape(z, [tf.shape(z)[0], -1])
    return tf.reduce_sum(-0.5 * (math.log(2.0 * math.pi) + tf.square(flat)), axis=1)


def bits_per_dim(log_prob, num_dims, n_bits):
    """The bits/dim of the module docstring from ``log_prob = log p(y)`` ``[B]`` (nats).

    ``num_dims`` is ``D = H·W·C`` of the image. Returns ``[B]`` in the dtype of ``log_prob``; the
    arithmetic is float64 (``D·n·ln 2`` is in the thousands, where float32 keeps ~4 digits after
    the point).
    """
    check_n_bits(n_bits)
    d = float(num_dims)
    log_prob = tf.convert_to_tensor(log_prob)
    bits = (-tf.cast(log_prob, tf.float64) + d * n_bits * math.log(2.0)) / (d * math.log(2.0))
    return tf.cast(bits, log_prob.dtype)


def classification_bits(logits, labels):
    """The mean cross-entropy of ``logits [B, K]`` for int ``labels [B]``, in bits per image
    (``−log₂ softmax(logits)[label]``; Glow's ``bits_y``)."""
    nats = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                          logits=logits)
    return tf.reduce_mean(nats) / math.log(2.0)
