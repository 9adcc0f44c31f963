r"""Polyak averaging of the weights: an exponential moving average kept beside the model.

After update ``t`` (``t = 1, 2, …``) every trainable variable ``θ`` has a shadow

.. math::  \bar θ_t = d_t\,\bar θ_{t-1} + (1 - d_t)\,θ_t,\qquad
           d_t = \min\Big(d, \frac{1 + t}{10 + t}\Big),\qquad \bar θ_0 = θ_0,

with ``d = ema_decay`` (Glow's Polyak averaging; the ``(1+t)/(10+t)`` ramp is TensorFlow's
``ExponentialMovingAverage(num_updates=t)``, so early shadows are not dominated by the random
start). The shadows average roughly the last ``1/(1−d)`` updates, which removes most of the
step-to-step noise of Adam at a constant learning rate; evaluation and sampling use them by
default. Shadows are float32 variables tracked under ``ema/`` in checkpoints.
"""
import contextlib

import tensorflow as tf


class WeightAverage(tf.Module):
    """Shadows of ``variables`` (a model's trainable variables), starting equal to them."""

    def __init__(self, variables, decay):
        super().__init__(name="ema")
        self.decay = float(decay)
        self._targets = list(variables)
        with tf.init_scope():
            self.shadows = [tf.Variable(v, trainable=False, name=f"shadow_{i}")
                            for i, v in enumerate(self._targets)]

    def update(self, num_updates):
        """Move every shadow towards its variable (module docstring), ``num_updates = t``."""
        t = tf.cast(num_updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        # θ̄ ← θ̄ − (1 − d)(θ̄ − θ), the same update, as one fused kernel per shadow.
        for shadow, variable in zip(self.shadows, self._targets):
            tf.raw_ops.ResourceApplyGradientDescent(var=shadow.handle, alpha=1.0 - decay,
                                                    delta=shadow - variable)

    def reset(self):
        """Shadows := the variables (after a data-dependent init, say)."""
        for shadow, variable in zip(self.shadows, self._targets):
            shadow.assign(variable)

    def copy_to_model(self):
        """Variables := shadows, for good (loading averaged weights for evaluation)."""
        for shadow, variable in zip(self.shadows, self._targets):
            variable.assign(shadow)

    @contextlib.contextmanager
    def swapped_in(self):
        """Inside the block the variables hold the averages; afterwards their own values again."""
        saved = [tf.identity(v) for v in self._targets]
        self.copy_to_model()
        try:
            yield
        finally:
            for value, variable in zip(saved, self._targets):
                variable.assign(value)
