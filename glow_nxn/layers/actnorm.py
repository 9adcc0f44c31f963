"""Activation normalisation (Glow, Kingma & Dhariwal 2018, §3.1)."""
import tensorflow as tf

from glow_nxn.layers.base import (Bijector, batch_logdet, identity_mean, pending_init_reducer,
                                  spatial_size)


class ActNorm(Bijector):
    """Per-channel affine map ``y = (x + b_c)·s_c`` with ``s_c = exp(log_scale_c)``.

    Shapes: ``x, y: [B, H, W, C]``; parameters ``b, log_scale: [C]``, zero at construction
    (the identity). Log-det ``H·W·Σ_c log|s_c| = H·W·Σ_c log_scale_c`` per example.

    The arithmetic is float32 whatever the input's dtype, and the output has the input's dtype:
    inside a bfloat16 coupling network (:class:`~glow_nxn.layers.nn.CouplingNetwork`) the
    convolution's output is rounded to bfloat16 once, here, after the affine map, as Keras'
    BatchNormalization does under mixed precision. Computed in bfloat16, ``x + b`` would round
    differently in a graph, where oneDNN fuses the add into the convolution before it, than
    eagerly, and a model would give other values inside ``tf.function`` than outside.

    :meth:`data_dependent_init` sets ``b`` and ``s`` so that the output of the init batch is
    zero-mean and unit-variance per channel. It is called explicitly, or for every ActNorm of a
    model by one forward pass inside :func:`glow_nxn.layers.base.initialising`.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.bias = self.add_weight(name="bias", shape=[channels], initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=[channels], initializer="zeros")

    def data_dependent_init(self, x, reduce_mean=identity_mean):
        """Standardise ``x`` ``[B, H, W, C]`` per channel; ``reduce_mean`` averages across replicas.

        Two passes (mean, then the mean squared deviation from it), each averaged across replicas,
        so with equal per-replica batches the statistics are those of the global batch.
        """
        self._build_for(x)
        x = tf.cast(x, tf.float32)
        mean = reduce_mean(tf.reduce_mean(x, axis=[0, 1, 2]))
        variance = reduce_mean(tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2]))
        self.bias.assign(-mean)
        self.log_scale.assign(-tf.math.log(tf.sqrt(variance) + self.epsilon))

    def _forward(self, x):
        reducer = pending_init_reducer()
        if reducer is not None:
            self.data_dependent_init(x, reducer)
        y = (tf.cast(x, tf.float32) + self.bias) * tf.exp(self.log_scale)
        return tf.cast(y, x.dtype), self._logdet(x)

    def _inverse(self, y):
        x = tf.cast(y, tf.float32) * tf.exp(-self.log_scale) - self.bias
        return tf.cast(x, y.dtype), -self._logdet(y)

    def _logdet(self, t):
        return batch_logdet(t, spatial_size(t) * tf.reduce_sum(self.log_scale))
