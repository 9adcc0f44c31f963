"""Non-invertible networks used inside flow layers (coupling functions, split priors)."""
import tensorflow as tf

from glow_nxn.keras import keras
from glow_nxn.layers.actnorm import ActNorm
from glow_nxn.layers.base import pending_init_reducer


def scaled_conv2d(x, kernel, bias, scale):
    """``(conv(x, kernel) + bias)·scale`` per output channel, computed as one convolution with a
    bias, ``conv(x, kernel·scale) + bias·scale``: equal in exact arithmetic.

    Shapes: ``x [B, H, W, C_in]``, ``kernel [k, k, C_in, C_out]``, ``bias, scale [C_out]``. The
    per-channel affine map then costs no pass over the activations, forward or backward: oneDNN
    fuses the bias (and a ReLU after it) into the convolution, and the gradients of ``bias`` and
    ``scale`` come from the convolution's own bias gradient and its kernel gradient (small
    tensors) instead of reductions over ``[B, H, W, C_out]``.
    """
    y = tf.nn.conv2d(x, kernel * scale, strides=1, padding="SAME")
    return tf.nn.bias_add(y, bias * scale)


class ZeroConv2D(keras.layers.Layer):
    """Zero-initialised ``k×k`` convolution scaled per channel: ``y = (conv(x) + b)·exp(3·s)``.

    Glow's ``conv2d_zeros``: kernel, ``b`` and ``s`` start at zero, so the layer outputs zeros and
    every coupling / prior it feeds starts as the identity / a standard normal. The learned
    ``exp(3·s)`` lets the output scale grow faster than the kernel alone.
    Shapes: ``[B, H, W, C_in] → [B, H, W, filters]``.

    ``deinterleave=True`` outputs the stored channels evens first, ``concat(y[..., 0::2],
    y[..., 1::2])``, for a caller that reads two interleaved quantities (Glow's layout: shift and
    scale, mean and log-std) and takes them apart with ``tf.split``. The kernel's, ``b``'s and
    ``s``'s output channels are reordered before the convolution (:func:`evens_first` of the
    small weights), so the convolution writes each half contiguously: the same values, while two
    strided slices of the output would cost, backward, two scatters into zeros of the whole
    output and their sum (14% of a training step's op time at issue 10's shape R1, by
    bench/profile_step.py, with the cuts of the couplings and splits). The stored weights
    keep Glow's layout either way, so checkpoints load unchanged.
    """

    def __init__(self, filters, kernel_size=3, deinterleave=False, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, kernel_size, padding="same",
                                        kernel_initializer="zeros", bias_initializer="zeros",
                                        dtype=self.dtype_policy)
        if deinterleave and filters % 2:
            raise ValueError(f"deinterleave needs an even number of filters, got {filters}")
        self.filters, self.deinterleave = filters, deinterleave

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.log_scale = self.add_weight(name="log_scale", shape=[self.filters],
                                         initializer="zeros")

    def call(self, x):
        weights = (self.conv.kernel, self.conv.bias, self.log_scale)
        if self.deinterleave:
            weights = [evens_first(w) for w in weights]
        kernel, bias, log_scale = weights
        return scaled_conv2d(x, kernel, bias, tf.exp(3.0 * log_scale))


def evens_first(t):
    """``concat(t[..., 0::2], t[..., 1::2])`` of ``t [..., 2m]`` as a reshape to ``[..., m, 2]``,
    a transpose and a reshape back: its gradient is dense (a gather's, along the last axis, is a
    sparse ``IndexedSlices``, which optimizers and Horovod treat as an embedding's)."""
    pairs = tf.reshape(t, [*t.shape[:-1], t.shape[-1] // 2, 2])
    rank = len(pairs.shape)
    pairs = tf.transpose(pairs, [*range(rank - 2), rank - 1, rank - 2])
    return tf.reshape(pairs, t.shape)


def _small_normal():
    """Glow's N(0, 0.05²) kernel initialiser; a fresh instance per layer, so each draws anew
    (the global seed, ``keras.utils.set_random_seed``, makes the draws repeatable)."""
    return keras.initializers.RandomNormal(stddev=0.05)


class CouplingNetwork(keras.layers.Layer):
    """Glow's coupling network ``NN(x_b)``, shapes ``[B, H, W, C_b] → [B, H, W, out_channels]``.

    3×3 conv (``width``) → ActNorm → ReLU → 1×1 conv (``width``) → ActNorm → ReLU →
    :class:`ZeroConv2D` 3×3 (``out_channels``; ``deinterleave`` passes to it). The convolutions
    before an ActNorm carry no bias (the ActNorm's is enough). The last layer outputs zeros at
    construction, so the coupling that uses it starts as the identity.

    Mixed precision (``compute_dtype="bfloat16"``): the two hidden convolutions compute in
    bfloat16 from float32 weights (Keras' ``mixed_bfloat16`` policy), the ActNorms in float32
    with one rounding of their output to bfloat16, and the last layer in float32 (Keras' advice:
    keep the output layer in float32), so the coupling's shifts and log-scales, every log-det and
    the flow itself are float32. bfloat16 has float32's range, so no loss scaling is needed.
    Every bfloat16 rounding then sits between a convolution and the cast after it, where no graph
    optimisation moves it: the network computes the same values eagerly and in ``tf.function``.
    """

    def __init__(self, out_channels, width, compute_dtype="float32", deinterleave=False,
                 **kwargs):
        super().__init__(**kwargs)
        policy = "mixed_bfloat16" if compute_dtype == "bfloat16" else "float32"
        self.conv_in = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                           kernel_initializer=_small_normal(), dtype=policy)
        self.norm_in = ActNorm()
        self.conv_hidden = keras.layers.Conv2D(width, 1, padding="same", use_bias=False,
                                               kernel_initializer=_small_normal(), dtype=policy)
        self.norm_hidden = ActNorm()
        self.conv_out = ZeroConv2D(out_channels, deinterleave=deinterleave, dtype="float32")

    def call(self, x):
        folded = (self.conv_in.compute_dtype == "float32" and self.norm_hidden.built
                  and pending_init_reducer() is None)
        if not folded:  # building, initialising, or bfloat16 (whose roundings are documented)
            h, _ = self.norm_in.forward(self.conv_in(x))
            h = tf.nn.relu(h)
            h, _ = self.norm_hidden.forward(self.conv_hidden(h))
            return self.conv_out(tf.nn.relu(h))
        h = tf.nn.relu(scaled_conv2d(x, self.conv_in.kernel, self.norm_in.bias,
                                     tf.exp(self.norm_in.log_scale)))
        h = tf.nn.relu(scaled_conv2d(h, self.conv_hidden.kernel, self.norm_hidden.bias,
                                     tf.exp(self.norm_hidden.log_scale)))
        return self.conv_out(h)
