"""Channel-mixing bijectors: the paper's invertible n×n convolution and the layers it is compared to.

All act on ``[B, H, W, C]`` tensors and follow the :class:`~glow_nxn.layers.base.Bijector`
contract. Matrices act on the channel vector of each pixel as a row vector: ``y = x·W``.
"""
import math

import numpy as np
import tensorflow as tf

from glow_nxn.layers.base import Bijector, batch_logdet, spatial_size


def random_rotation(channels, seed):
    """A ``[C, C]`` float64 orthogonal matrix with determinant +1, drawn from ``seed``.

    Q of the QR decomposition of a Gaussian matrix, with column signs fixed so the draw is
    uniform (Haar), and one column negated if needed so that ``det = +1``.
    """
    rng = np.random.RandomState(seed)
    q, r = np.linalg.qr(rng.normal(size=(channels, channels)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@tf.custom_gradient
def log_abs_det(matrix):
    """``log|det A|`` of a square matrix ``A = QR``, with the gradient ``A^{-T} = Q·R^{-T}``.

    ``Σ_i log|R_ii|``: slogdet's value, from ops XLA compiles (XLA has no kernel for
    LogMatrixDeterminant or Lu); the gradient is explicit, one triangular solve.
    """
    q, r = tf.linalg.qr(matrix)
    value = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))))

    def gradient(upstream):
        eye = tf.eye(tf.shape(matrix)[0], dtype=matrix.dtype)
        r_inverse_transposed = tf.linalg.triangular_solve(tf.transpose(r), eye, lower=True)
        return upstream * (q @ r_inverse_transposed)

    return value, gradient


def _pointwise(x, matrix):
    """``y[b, h, w, :] = x[b, h, w, :] · matrix`` for ``matrix: [C_in, C_out]``."""
    return tf.nn.conv2d(x, matrix[tf.newaxis, tf.newaxis], strides=1, padding="VALID")


class InvertibleShift(Bijector):
    """The paper's invertible shift function (§4.1, eqs. 7–10): ``y = α_c·x + β_c``.

    Shapes: ``x, y: [B, H, W, C]``; ``α, β: [C]``. At construction ``α = 1``, ``β = 0``.
    Log-det ``H·W·Σ_c log|α_c|``.

    **α is never 0, by construction.** The trainable parameter is ``θ_c ∈ ℝ`` and

        ``α_c = α_min + (1 − α_min)·exp(θ_c)``,  ``α_min = min_scale`` (default 1e-3),

    so ``α_c > α_min > 0`` for every real (or infinite) ``θ``: there is no parameter value, hence
    no sequence of gradient steps, that reaches ``α = 0`` — even when ``exp(θ)`` underflows to 0,
    ``α = α_min``. ``log α_c = log α_min + softplus(θ_c + log((1 − α_min)/α_min))`` is computed in
    that stable form and used for both ``α`` and the log-det, so they always agree. ``θ = 0``
    gives ``α = 1``. The sign of ``α`` is fixed positive: the 1×1 convolution that follows in
    :class:`InvertibleNxNConv` can flip any channel's sign, so nothing is lost.
    """

    def __init__(self, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_scale < 1.0:
            raise ValueError(f"min_scale must lie in (0, 1), got {min_scale}")
        self.min_scale = min_scale

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.theta = self.add_weight(name="theta", shape=[channels], initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=[channels], initializer="zeros")

    def log_alpha(self):
        """``log α`` ``[C]``, bounded below by ``log(min_scale)`` (see the class docstring)."""
        offset = math.log((1.0 - self.min_scale) / self.min_scale)
        return math.log(self.min_scale) + tf.nn.softplus(self.theta + offset)

    def alpha(self):
        """``α`` ``[C]``, always ``> min_scale``."""
        return tf.exp(self.log_alpha())

    def _forward(self, x):
        log_alpha = self.log_alpha()
        y = x * tf.exp(log_alpha) + self.beta
        return y, batch_logdet(x, spatial_size(x) * tf.reduce_sum(log_alpha))

    def _inverse(self, y):
        log_alpha = self.log_alpha()
        x = (y - self.beta) * tf.exp(-log_alpha)
        return x, batch_logdet(y, -spatial_size(y) * tf.reduce_sum(log_alpha))


class Invertible1x1Conv(Bijector):
    """Glow's invertible 1×1 convolution ``y = x·W`` per pixel, ``W: [C, C]``.

    ``W`` starts as a random rotation (``seed``). Log-det ``H·W·log|det W|``.

    * ``lu=False``: ``W`` is a free matrix; ``log|det W|`` and ``W⁻¹`` are computed in float64
      (float32 ``slogdet`` loses digits for ``C`` in the hundreds).
    * ``lu=True``: ``W = P·L·(U + diag(sign·exp(log_s)))`` with ``P`` a fixed permutation, ``L``
      unit lower-triangular and ``U`` strictly upper-triangular (both trainable), ``sign`` fixed
      and ``log_s`` trainable. ``det W = ±Π exp(log_s)`` is never 0, so the layer is invertible
      by construction, and ``log|det W| = Σ log_s`` costs ``O(C)`` instead of ``O(C³)``.
      ``P, L, U, s`` start as the LU decomposition of the same random rotation.
    """

    def __init__(self, lu=False, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.lu = lu
        self.seed = seed

    def build(self, input_shape):
        channels = int(input_shape[-1])
        rotation = random_rotation(channels, self.seed)
        if not self.lu:
            self.kernel = self.add_weight(
                name="kernel", shape=[channels, channels],
                initializer=tf.constant_initializer(rotation.astype(np.float32)))
            return
        # tf.linalg.lu returns LU of the row-permuted matrix: rotation[perm] = L·U.
        lower_upper, perm = tf.linalg.lu(tf.constant(rotation))
        lower_upper = lower_upper.numpy()
        permutation = np.eye(channels)[perm.numpy()].T  # rotation = permutation·L·U
        diag = np.diag(lower_upper)
        const = tf.constant_initializer
        self.permutation = self.add_weight(name="permutation", shape=[channels, channels],
                                           initializer=const(permutation), trainable=False)
        self.sign_s = self.add_weight(name="sign_s", shape=[channels],
                                      initializer=const(np.sign(diag)), trainable=False)
        self.log_s = self.add_weight(name="log_s", shape=[channels],
                                     initializer=const(np.log(np.abs(diag))))
        self.lower = self.add_weight(name="lower", shape=[channels, channels],
                                     initializer=const(np.tril(lower_upper, -1)))
        self.upper = self.add_weight(name="upper", shape=[channels, channels],
                                     initializer=const(np.triu(lower_upper, 1)))

    def weight(self):
        """``W`` ``[C, C]`` float32 (assembled from its LU factors when ``lu=True``)."""
        if not self.lu:
            return self.kernel
        channels = self.log_s.shape[0]
        eye = tf.eye(channels)
        lower = tf.linalg.band_part(self.lower, -1, 0) * (1.0 - eye) + eye
        upper = (tf.linalg.band_part(self.upper, 0, -1) * (1.0 - eye)
                 + tf.linalg.diag(self.sign_s * tf.exp(self.log_s)))
        return self.permutation @ lower @ upper

    def log_abs_det(self):
        """``log|det W|`` as a float32 scalar (float64 arithmetic for the free matrix)."""
        if self.lu:
            return tf.reduce_sum(self.log_s)
        return tf.cast(log_abs_det(tf.cast(self.kernel, tf.float64)), tf.float32)

    def _forward(self, x):
        y = _pointwise(x, self.weight())
        return y, batch_logdet(x, spatial_size(x) * self.log_abs_det())

    def _inverse(self, y):
        inverse = tf.cast(tf.linalg.inv(tf.cast(self.weight(), tf.float64)), tf.float32)
        x = _pointwise(y, inverse)
        return x, batch_logdet(y, -spatial_size(y) * self.log_abs_det())


class InvertibleNxNConv(Bijector):
    """The paper's invertible n×n convolution (Algorithm 1): :class:`InvertibleShift` then
    :class:`Invertible1x1Conv`.

    ``y = (α ⊙ x + β)·W`` per pixel; log-det ``H·W·(Σ_c log|α_c| + log|det W|)``.
    Parameters: ``2C`` (α, β) + ``C²`` (W) = ``C² + 2C``, against ``n²·C²`` for a standard n×n
    convolution of ``C`` channels (``9C²`` for n = 3): the paper's "fewer parameters" claim. Note
    that both parts act on one pixel at a time, so the layer's receptive field is 1×1; see
    :class:`~glow_nxn.layers.shifted.ShiftedNxNConv` for a layer whose receptive field is n×n.
    """

    def __init__(self, lu=False, seed=0, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.shift = InvertibleShift(min_scale=min_scale)
        self.conv = Invertible1x1Conv(lu=lu, seed=seed)

    def _forward(self, x):
        h, logdet_shift = self.shift.forward(x)
        y, logdet_conv = self.conv.forward(h)
        return y, logdet_shift + logdet_conv

    def _inverse(self, y):
        h, logdet_conv = self.conv.inverse(y)
        x, logdet_shift = self.shift.inverse(h)
        return x, logdet_conv + logdet_shift


class ReversePermutation(Bijector):
    """RealNVP/Glow's channel reversal ``y[..., c] = x[..., C−1−c]``; log-det 0."""

    def _forward(self, x):
        return tf.reverse(x, axis=[-1]), batch_logdet(x, 0.0)

    def _inverse(self, y):
        return tf.reverse(y, axis=[-1]), batch_logdet(y, 0.0)


class ShufflePermutation(Bijector):
    """A fixed random channel permutation drawn from ``seed``; log-det 0.

    The permutation is stored as a non-trainable weight so a checkpoint carries it.
    """

    def __init__(self, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape):
        channels = int(input_shape[-1])
        perm = np.random.RandomState(self.seed).permutation(channels)
        self.perm = self.add_weight(name="perm", shape=[channels], dtype=tf.int32,
                                    initializer=tf.constant_initializer(perm), trainable=False)

    def _forward(self, x):
        return tf.gather(x, self.perm, axis=-1), batch_logdet(x, 0.0)

    def _inverse(self, y):
        return tf.gather(y, tf.math.invert_permutation(self.perm), axis=-1), batch_logdet(y, 0.0)
