"""The logit input transform (RealNVP, Dinh et al. 2017, §4.1), as a bijector."""
import tensorflow as tf

from glow_nxn.layers.base import Bijector, sum_over_pixels


class Logit(Bijector):
    """``y = logit(p)`` with ``p = α + (1 − 2α)·(x + ½)``, elementwise, for ``x ∈ [−½, ½]``.

    Shapes ``[B, H, W, C] → [B, H, W, C]``; no weights. Dequantised images (see
    :mod:`glow_nxn.objectives`) lie in ``[−½, ½]``; ``p`` squeezes them into ``[α, 1 − α]``, away
    from the logit's poles, so ``y`` is finite for every input, including the edges.

    Log-det per example ``Σ [log(1 − 2α) − log p − log(1 − p)]`` over every element. The
    derivative ``(1 − 2α) / (p(1 − p))`` is largest near the ends of the intensity range, where
    photographs and scans pile up (a black background, a saturated sky): the transform widens
    those narrow dequantisation bins before the first flow step sees them, which the flow's own
    per-channel scales would otherwise have to learn. Inverse ``x = (sigmoid(y) − α)/(1 − 2α) − ½``,
    which maps every real ``y`` into ``[−½ − α/(1 − 2α), ½ + α/(1 − 2α)]``: decoded samples stay
    bounded whatever the latents.

    ``alpha`` in ``(0, ½)``; RealNVP used 0.05.
    """

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"the logit transform's alpha must be in (0, 0.5), got {alpha!r}")
        self.alpha = alpha

    def _log_derivative(self, y):
        """``log dy/dx`` at ``y``: ``log(1 − 2α) − log p − log(1 − p)`` written as
        ``log(1 − 2α) + softplus(y) + softplus(−y)``, exact even where ``p`` rounds to 0 or 1."""
        return tf.math.log(1.0 - 2.0 * self.alpha) + tf.math.softplus(y) + tf.math.softplus(-y)

    def _forward(self, x):
        p = self.alpha + (1.0 - 2.0 * self.alpha) * (x + 0.5)
        y = tf.math.log(p) - tf.math.log1p(-p)
        return y, sum_over_pixels(self._log_derivative(y))

    def _inverse(self, y):
        x = (tf.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha) - 0.5
        return x, -sum_over_pixels(self._log_derivative(y))
