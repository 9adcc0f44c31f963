"""The multi-scale machinery (RealNVP §3.6, Glow §3): squeeze, split with a learned prior, top prior.

The priors are written as bijectors that *standardise*: a Gaussian ``N(z; μ, σ)`` prior on ``z`` is
the standard normal ``N(ε; 0, I)`` on ``ε = (z − μ)/σ`` times the Jacobian ``|∂ε/∂z| = Π 1/σ``.
So :class:`Split` and :class:`LearnedPrior` map to ``ε`` with log-det ``−Σ log σ``, the model
scores every latent under ``N(0, I)``, and sampling at temperature ``T`` draws ``ε ~ N(0, T²I)``,
which is ``z ~ N(μ, (T·σ)²)``: the temperature scales the standard deviation of every prior.
"""
import tensorflow as tf

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
    ``log σ(z₁)``, each ``[B, H, W, C//2]``, zero at construction (prior ``N(0, I)``).

    ``forward(x) = (concat(z₁, ε), −Σ log σ(z₁))`` with ``ε = (z₂ − μ(z₁)) / σ(z₁)`` (module
    docstring). The caller keeps ``[..., :k]`` and factors out ``ε = [..., k:]``
    (:meth:`divide`); ``inverse`` takes ``concat(z₁, ε)`` back to ``x``.
    """

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.kept = channels - channels // 2
        self.prior = ZeroConv2D(2 * (channels // 2))

    def divide(self, y):
        """``concat(z₁, ε) → (z₁, ε)``."""
        return y[..., :self.kept], y[..., self.kept:]

    def _mean_and_log_std(self, z1):
        h = self.prior(z1)
        return h[..., 0::2], h[..., 1::2]

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
