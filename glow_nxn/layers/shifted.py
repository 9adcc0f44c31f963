r"""An invertible n×n convolution built by shifting the *inputs* instead of the kernel.

Truong et al. (Future Internet 2021, §3.2, eq. 5) motivate their layer by rewriting an n×n
convolution as ``n²`` 1×1 convolutions of shifted copies of the input: "shift the inputs instead
of the kernels". Their layer then replaces the spatial shift by the per-channel affine map
:class:`~glow_nxn.layers.mixing.InvertibleShift` ``α_c·x + β_c`` (§4.1), which moves no pixel, so
:class:`~glow_nxn.layers.mixing.InvertibleNxNConv` = shift function + 1×1 convolution has a 1×1
receptive field. :class:`ShiftedNxNConv` takes eq. 5 literally instead, with one shift per
channel so that it stays a bijection:

    ``h[:, i, j, c] = x[:, (i + δ_c) mod H, (j + ε_c) mod W, c]``,  ``y = h · W``  (per pixel),

with offsets ``(δ_c, ε_c) ∈ {−r..r}²`` (``r = ⌊n/2⌋``) and ``W: [C, C]`` an
:class:`~glow_nxn.layers.mixing.Invertible1x1Conv`. Each output pixel mixes channels read from
its whole n×n neighbourhood: a true n×n receptive field, with ``C²`` parameters and a 1×1
convolution's cost plus a copy. The shift is a permutation of the ``H·W·C`` entries, log-det 0,
so ``log|det| = H·W·log|det W|`` and the inverse is ``W⁻¹`` then the opposite rolls, exactly.

Channel ``c`` gets offset number ``c mod n²`` of :func:`offsets` (centre first, then by distance),
so the ``n²`` groups of channels sharing an offset differ in size by at most one. With ``C < n²``
only the first ``C`` offsets are used and the receptive field is that subset of the n×n window,
not all of it (``C ≥ n²``, i.e. ``C ≥ 9`` for n = 3, gives the full window; Glow's squeezed RGB
inputs have ``C ≥ 12``). Shifts are cyclic, so border pixels read from the opposite border.
"""
import itertools

import numpy as np
import tensorflow as tf

from glow_nxn.layers.base import Bijector
from glow_nxn.layers.mixing import Invertible1x1Conv


def offsets(kernel_size):
    """The ``n²`` offsets ``(δ, ε)`` of an n×n window: the centre, then by ``|δ| + |ε|``, ties in
    raster order."""
    r = kernel_size // 2
    window = itertools.product(range(-r, r + 1), repeat=2)
    return sorted(window, key=lambda o: (abs(o[0]) + abs(o[1]), o))


def wrap_pad(x, r):
    """Periodic padding: ``[B, H, W, C] → [B, H+2r, W+2r, C]``,
    ``out[:, i, j] = x[:, (i − r) mod H, (j − r) mod W]`` (any ``H, W ≥ 1``, even ``< r``)."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    rows = tf.math.floormod(tf.range(-r, height + r), height)
    columns = tf.math.floormod(tf.range(-r, width + r), width)
    return tf.gather(tf.gather(x, rows, axis=1), columns, axis=2)


class ShiftedNxNConv(Bijector):
    """Per-channel cyclic spatial shift, then an invertible 1×1 convolution (module docstring).

    ``x, y: [B, H, W, C]``. ``y[:, i, j, :] = (x[:, i+δ_c, j+ε_c, c])_c · W``; log-det
    ``H·W·log|det W|``. Parameters: those of ``Invertible1x1Conv(lu, seed)``, ``C²`` for
    ``lu=False``. Receptive field n×n when ``C ≥ n²``.

    The shift is computed as one depthwise n×n convolution of the wrap-padded input whose kernel
    is one-hot per channel (a 1 at ``(r+δ_c, r+ε_c)``): each output is ``1·x`` plus exact zeros,
    so it equals the rolled input bit for bit for finite inputs (a NaN or inf also reaches the
    pixels that read it with weight 0), and on CPU it is several times faster than per-group
    ``tf.roll`` or slicing.
    """

    def __init__(self, kernel_size=3, lu=False, seed=0, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = Invertible1x1Conv(lu=lu, seed=seed)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        n, r = self.kernel_size, self.kernel_size // 2
        window = offsets(n)
        self.channel_offsets = [window[c % len(window)] for c in range(channels)]
        selector = np.zeros([n, n, channels, 1], dtype=np.float32)
        for c, (dy, dx) in enumerate(self.channel_offsets):
            selector[r + dy, r + dx, c, 0] = 1.0
        # Undoing a read at +δ is a read at −δ: the selector rotated by 180°.
        self._selectors = {+1: selector, -1: selector[::-1, ::-1].copy()}

    def _shift(self, x, sign):
        """``sign = +1``: ``h[:, i, j, c] = x[:, i+δ_c, j+ε_c, c]`` (cyclic); ``−1`` undoes it."""
        return tf.nn.depthwise_conv2d(wrap_pad(x, self.kernel_size // 2), self._selectors[sign],
                                      strides=[1, 1, 1, 1], padding="VALID")

    def _forward(self, x):
        return self.conv.forward(self._shift(x, +1))

    def _inverse(self, y):
        h, logdet = self.conv.inverse(y)
        return self._shift(h, -1), logdet
