"""Coupling layers (RealNVP, Dinh et al. 2017; Glow §3.3).

The input ``x: [B, H, W, C]`` is cut along channels into ``x_b = x[..., :C−C_a]``, which passes
through unchanged and conditions the transform, and ``x_a = x[..., C−C_a:]`` with
``C_a = C // 2``, which is transformed. Output ``y = concat(x_b, y_a)``. Every cut is a
``tf.split`` (backward a concatenation), never a slice (backward a scatter into zeros).
"""
import tensorflow as tf

from glow_nxn.layers.base import Bijector, batch_logdet, sum_over_pixels
from glow_nxn.layers.nn import CouplingNetwork


class _Coupling(Bijector):
    """``hidden_width``: the network's width; ``compute_dtype``: its arithmetic, ``float32`` or
    ``bfloat16`` (mixed precision, see :class:`~glow_nxn.layers.nn.CouplingNetwork`)."""

    _interleaved_outputs = False  # the network's output holds two quantities, interleaved

    def __init__(self, hidden_width, compute_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.hidden_width = hidden_width
        self.compute_dtype_name = compute_dtype

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError(f"a coupling layer needs at least 2 channels, got {channels}")
        self.transformed = channels // 2
        self.network = CouplingNetwork(self._network_outputs(self.transformed), self.hidden_width,
                                       compute_dtype=self.compute_dtype_name,
                                       deinterleave=self._interleaved_outputs)

    def _halves(self, t):
        return tf.split(t, [t.shape[-1] - self.transformed, self.transformed], axis=-1)


class AffineCoupling(_Coupling):
    """Glow's affine coupling: ``h = NN(x_b)``, ``t = h[..., 0::2]``, ``s = sigmoid(h[..., 1::2] + 2)``,

    ``y_a = (x_a + t)·s``; log-det ``Σ log s = Σ log_sigmoid(h[..., 1::2] + 2)`` over pixels and
    transformed channels. ``s ∈ (0, 1)`` keeps the map contractive-ish and stable; the ``+2``
    makes ``s ≈ 0.88`` where ``NN`` outputs 0. Inverse ``x_a = y_a / s − t``.
    """

    _interleaved_outputs = True  # the network returns them evens first (nn.ZeroConv2D)

    def _network_outputs(self, transformed):
        return 2 * transformed

    def _shift_and_log_scale(self, x_b):
        shift, scale_logit = tf.split(self.network(x_b), 2, axis=-1)
        return shift, tf.math.log_sigmoid(scale_logit + 2.0)

    def _forward(self, x):
        x_b, x_a = self._halves(x)
        shift, log_scale = self._shift_and_log_scale(x_b)
        y_a = (x_a + shift) * tf.exp(log_scale)
        return tf.concat([x_b, y_a], axis=-1), sum_over_pixels(log_scale)

    def _inverse(self, y):
        x_b, y_a = self._halves(y)
        shift, log_scale = self._shift_and_log_scale(x_b)
        x_a = y_a * tf.exp(-log_scale) - shift
        return tf.concat([x_b, x_a], axis=-1), -sum_over_pixels(log_scale)


class AdditiveCoupling(_Coupling):
    """Additive coupling (NICE / Glow's CelebA-HQ models): ``y_a = x_a + NN(x_b)``; log-det 0."""

    def _network_outputs(self, transformed):
        return transformed

    def _forward(self, x):
        x_b, x_a = self._halves(x)
        y = tf.concat([x_b, x_a + self.network(x_b)], axis=-1)
        return y, batch_logdet(x, 0.0)

    def _inverse(self, y):
        x_b, y_a = self._halves(y)
        x = tf.concat([x_b, y_a - self.network(x_b)], axis=-1)
        return x, batch_logdet(y, 0.0)
