r"""Hoogeboom et al.'s emerging convolution: two autoregressive convolutions whose composition is a
dense n×n convolution.

Reference: E. Hoogeboom, R. van den Berg, M. Welling, "Emerging Convolutions for Generative
Normalizing Flows", ICML 2019, §3.1; the masks follow the authors' code
(``get_conv_square_ar_mask``). Shapes are ``[B, H, W, C]``, ``r = ⌊n/2⌋``.

**The masks.** The first convolution is *causal*: output pixel ``(i, j)``, channel ``o`` reads
inputs ``(i − a, j − e)`` for ``a, e ∈ {0..r}`` only (the top-left ``(r+1)×(r+1)`` quadrant of an
n×n kernel, every pixel of it earlier than or equal to ``(i, j)`` in raster order), and at the
centre tap only channels ``c ≤ o``. So the Jacobian is triangular in the raster-then-channel
ordering of ``H·W·C``, with diagonal ``d_c`` (the centre tap's ``[c, c]`` entries). The second
convolution's mask is the first's rotated by 180° over all four kernel axes
(``mask[::-1, ::-1, ::-1, ::-1]``): it reads ``(i + a, j + e)`` and, at the centre, ``c ≥ o``;
it is triangular in the reversed ordering. For n = 3::

    first (causal)        second (rotated 180°)      composed: receptive field
      ■ ■ □                 □ □ □                        ■ ■ ■
      ■ ◩ □                 □ ◩ ■                        ■ ■ ■
      □ □ □                 □ ■ ■                        ■ ■ ■
    (◩: centre tap, channel-triangular)

Composing two ``(r+1)×(r+1)`` quadrants gives exactly the n×n neighbourhood: the "emerging"
receptive field of a standard n×n convolution. (A half-plane raster mask, as in PixelCNN, would
also be triangular, but two of them compose to a ``(2n−1)×(2n−1)`` field; the quadrant is what
the authors use.) Padding is zero ("SAME"), so the border keeps the triangular structure.

**Log-det.** ``H·W·Σ_c (log d¹_c + log d²_c)``. The diagonals are parametrised as
``d_c = exp(log_d_c)``, so they are never 0 and the layer is invertible for every parameter value
(the authors' code learns ``d_c`` freely and takes ``log|d_c|``).

**Parameters** (stored exactly, no masked-out entries): per convolution
``((r+1)² − 1)·C²`` off-centre taps + ``C(C−1)/2`` strictly triangular centre entries + ``C``
log-diagonal; for both ``2((r+1)² − 1)·C² + C² + C`` = ``7C² + C`` for n = 3, against
``n²·C²`` = ``9C²`` for a standard convolution. There is no bias (ActNorm precedes every mixing
layer). Every stored entry but the diagonal (the off-centre taps and the centre's strictly
triangular entries) starts as ``N(0, init_scale²)`` with ``init_scale = 0.02``, and the diagonal
at exactly 1 (``log_d = 0``), so the layer starts near the identity; the authors' code
(``get_conv_weight_np``) draws every tap from ``N(0, 0.02²)`` and adds 1 on the centre's
diagonal. The authors always put a 1×1 convolution before it
(``glow_nxn.layers.MIXINGS["emerging"]`` does the same).

**Inverse: a wavefront solve.** Pixel ``(i, j)`` of the causal system depends on pixels with a
smaller ``i + j``, so all pixels of one anti-diagonal ``s = i + j`` can be solved at once from
the ``2r`` anti-diagonals before it. The input is *skewed* (row ``i`` shifted right by ``i``) so
anti-diagonals become columns, and a ``tf.while_loop`` runs over the ``H + W − 1`` columns; each
step is one small convolution of the last ``2r`` solved columns (vectorised over batch, the rows
the anti-diagonal crosses, and channels) with the inverse of the triangular centre matrix
(precomputed in float64) folded in. Cost per convolution: about the forward pass's arithmetic,
but spread over ``H + W − 1`` *dependent* steps (63 at 32×32, 127 at 64×64), each a few small
ops, against one parallel convolution forward. The second convolution is inverted by the same
solver on the 180°-flipped data (flipping ``H``, ``W`` and ``C`` turns it into a causal
convolution). The solve is exact substitution (no iteration to a tolerance), so its error is
float32 round-off amplified by the conditioning of the triangular system.
"""
import numpy as np
import tensorflow as tf

from glow_nxn.layers.base import Bijector, batch_logdet, spatial_size


def _flip_all(t):
    """Reverse ``H``, ``W`` and ``C`` of ``[B, H, W, C]``: the 180° rotation of the ordering."""
    return tf.reverse(t, axis=[1, 2, 3])


def _skew(t):
    """``[B, H, W, C] → [H + W − 1, B, H, C]`` with ``out[s, :, i] = t[:, i, s − i]`` (0 outside).

    Anti-diagonal ``s = i + j`` of the image becomes slice ``s``.
    """
    height, width = tf.shape(t)[1], tf.shape(t)[2]
    steps = height + width - 1
    rows = tf.transpose(t, [1, 2, 0, 3])  # [H, W, B, C]
    rows = tf.pad(rows, [[0, 0], [0, height - 1], [0, 0], [0, 0]])  # [H, S, B, C], zeros past W
    # (s − i) mod S lands in the zero padding whenever s − i is outside [0, W).
    index = tf.math.floormod(tf.range(steps)[tf.newaxis, :] - tf.range(height)[:, tf.newaxis],
                             steps)
    skewed = tf.gather(rows, index, axis=1, batch_dims=1)  # [H, S, B, C]
    return tf.transpose(skewed, [1, 2, 0, 3])


def _unskew(skewed, width):
    """The inverse of :func:`_skew`: ``[H + W − 1, B, H, C] → [B, H, W, C]``."""
    height = tf.shape(skewed)[2]
    rows = tf.transpose(skewed, [2, 0, 1, 3])  # [H, S, B, C]
    index = tf.range(height)[:, tf.newaxis] + tf.range(width)[tf.newaxis, :]  # [H, W]: i + j
    image = tf.gather(rows, index, axis=1, batch_dims=1)  # [H, W, B, C]
    return tf.transpose(image, [2, 0, 1, 3])


def causal_conv(x, quadrant):
    """``y[:, i, j] = Σ_{a,e=0..r} x[:, i−a, j−e] · quadrant[a, e]`` with zero padding.

    ``quadrant: [r+1, r+1, C, C]``, indexed by the offset ``(a, e)`` *back* from the output
    pixel; ``quadrant[0, 0]`` is the centre tap. Computed as an ``(r+1)×(r+1)`` VALID
    convolution after padding ``r`` rows on top and ``r`` columns on the left.
    """
    r = quadrant.shape[0] - 1
    padded = tf.pad(x, [[0, 0], [r, 0], [r, 0], [0, 0]])
    return tf.nn.conv2d(padded, tf.reverse(quadrant, axis=[0, 1]), strides=1, padding="VALID")


def solve_causal_conv(y, quadrant):
    """The ``x`` with ``causal_conv(x, quadrant) = y``, by the wavefront solve (module docstring).

    ``y: [B, H, W, C]``; ``quadrant[0, 0]`` must be upper triangular with a nonzero diagonal.
    With ``T = quadrant[0, 0]`` and ``N(x)`` the off-centre taps,
    ``x[s] = y[s]·T⁻¹ − N(x)[s]·T⁻¹`` on anti-diagonal ``s``, where ``N(x)[s]`` reads only the
    ``2r`` anti-diagonals before ``s``.
    """
    r = quadrant.shape[0] - 1
    channels = quadrant.shape[-1]
    centre = tf.cast(quadrant[0, 0], tf.float64)
    centre_inverse = tf.cast(
        tf.linalg.triangular_solve(centre, tf.eye(channels, dtype=tf.float64), lower=False),
        tf.float32)
    # Kernel over the window of the last 2r solved anti-diagonals, a [H + r, 2r] "image" of
    # (padded row, column): the tap (a, e) of pixel (i, j) sits at padded row i − a + r and at
    # anti-diagonal s − a − e, i.e. window column 2r − a − e; T⁻¹ is folded in.
    zero = tf.zeros([channels, channels])
    taps = {(r - a, 2 * r - a - e): quadrant[a, e] @ centre_inverse
            for a in range(r + 1) for e in range(r + 1) if (a, e) != (0, 0)}
    window_kernel = tf.stack([tf.stack([taps.get((p, q), zero) for q in range(2 * r)])
                              for p in range(r + 1)])  # [r+1, 2r, C, C]

    height, width = tf.shape(y)[1], tf.shape(y)[2]
    steps = height + width - 1
    targets = tf.TensorArray(tf.float32, size=steps).unstack(
        _skew(tf.einsum("bhwc,co->bhwo", y, centre_inverse)))

    def step(s, window, solved):
        # Anti-diagonal s crosses the image on rows first..last (0 ≤ s − i < W); only those are
        # solved, the others stay 0 (the zero padding), which halves the work of a square image.
        first, last = tf.maximum(0, s - width + 1), tf.minimum(height - 1, s)
        history = tf.nn.conv2d(window[:, first:last + r + 1], window_kernel, strides=1,
                               padding="VALID")[:, :, 0, :]
        column = targets.read(s)[:, first:last + 1] - history  # [B, rows, C]
        column = tf.pad(column, [[0, 0], [first, height - 1 - last], [0, 0]])  # [B, H, C]
        newest = tf.pad(column, [[0, 0], [r, 0], [0, 0]])[:, :, tf.newaxis, :]
        return s + 1, tf.concat([window[:, :, 1:], newest], axis=2), solved.write(s, column)

    window = tf.zeros([tf.shape(y)[0], height + r, 2 * r, channels])
    _, _, solved = tf.while_loop(lambda s, *_: s < steps, step,
                                 (tf.constant(0), window, tf.TensorArray(tf.float32, size=steps)))
    return _unskew(solved.stack(), width)


class EmergingConv(Bijector):
    """Hoogeboom et al.'s emerging n×n convolution; math, masks, costs in the module docstring.

    ``y = conv₂(conv₁(x))``, ``x, y: [B, H, W, C]``: ``conv₁`` causal (top-left quadrant, centre
    ``c ≤ o``), ``conv₂`` its 180° rotation (bottom-right quadrant, centre ``c ≥ o``), both with
    ``(r+1)²`` taps and zero padding. Log-det ``H·W·Σ_c (log d¹_c + log d²_c)``,
    ``d = exp(log_d)``. Parameters ``2((r+1)² − 1)·C² + C² + C`` (``7C² + C`` for n = 3).
    Forward: two small convolutions. Inverse: two wavefront solves of ``H + W − 1`` sequential
    steps each (:func:`solve_causal_conv`).
    """

    def __init__(self, kernel_size=3, seed=0, init_scale=0.02, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {kernel_size}")
        self.kernel_size = kernel_size
        self.seed = seed
        self.init_scale = init_scale

    def build(self, input_shape):
        channels = int(input_shape[-1])
        r = self.kernel_size // 2
        rng = np.random.RandomState(self.seed)
        self._upper = np.stack(np.triu_indices(channels, 1), axis=1)  # strictly upper [c < o]

        def normal(shape):
            return tf.constant_initializer(
                (self.init_scale * rng.normal(size=shape)).astype(np.float32))

        self.factors = []
        for name in ("first", "second"):
            taps_shape = [(r + 1)**2 - 1, channels, channels]
            centre_shape = [len(self._upper)]
            self.factors.append((
                self.add_weight(name=f"{name}_taps", shape=taps_shape,
                                initializer=normal(taps_shape)),
                self.add_weight(name=f"{name}_centre_upper", shape=centre_shape,
                                initializer=normal(centre_shape)),
                self.add_weight(name=f"{name}_log_diag", shape=[channels], initializer="zeros"),
            ))

    def quadrants(self):
        """The two causal-form kernels ``[r+1, r+1, C, C]`` (see :func:`causal_conv`).

        ``quadrant[a, e]`` is tap ``(a, e)`` in raster order of the ``(a, e)`` grid after the
        centre ``(0, 0)``, whose matrix is ``strictly upper + diag(exp(log_d))``.
        """
        r = self.kernel_size // 2
        quadrants = []
        for taps, centre_upper, log_diag in self.factors:
            channels = log_diag.shape[0]
            centre = (tf.scatter_nd(self._upper, centre_upper, [channels, channels])
                      + tf.linalg.diag(tf.exp(log_diag)))
            flat = tf.concat([centre[tf.newaxis], taps], axis=0)
            quadrants.append(tf.reshape(flat, [r + 1, r + 1, channels, channels]))
        return quadrants

    def kernels(self):
        """The two masked ``[n, n, C, C]`` HWIO kernels that ``tf.nn.conv2d(..., "SAME")``
        applies: ``y = conv2d(conv2d(x, k₁), k₂)``; ``k₁`` lives on the top-left ``(r+1)×(r+1)``
        quadrant with centre entries ``[c, o]`` for ``c ≤ o`` only, ``k₂`` on its 180° rotation."""
        r = self.kernel_size // 2
        first, second = self.quadrants()
        pad = [[0, r], [0, r], [0, 0], [0, 0]]
        causal_first = tf.pad(tf.reverse(first, axis=[0, 1]), pad)
        causal_second = tf.pad(tf.reverse(second, axis=[0, 1]), pad)
        return causal_first, tf.reverse(causal_second, axis=[0, 1, 2, 3])

    def log_abs_det(self):
        """``Σ_c (log d¹_c + log d²_c)``, the log-det per pixel."""
        return tf.add_n([tf.reduce_sum(log_diag) for _, _, log_diag in self.factors])

    def _forward(self, x):
        first, second = self.quadrants()
        h = causal_conv(x, first)
        # conv₂ = flip ∘ causal_conv(·, second) ∘ flip, computed directly: pad bottom/right and
        # read (i + a, j + e) with both channel axes reversed.
        r = self.kernel_size // 2
        padded = tf.pad(h, [[0, 0], [0, r], [0, r], [0, 0]])
        y = tf.nn.conv2d(padded, tf.reverse(second, axis=[2, 3]), strides=1, padding="VALID")
        return y, batch_logdet(x, spatial_size(x) * self.log_abs_det())

    def _inverse(self, y):
        first, second = self.quadrants()
        h = _flip_all(solve_causal_conv(_flip_all(y), second))
        x = solve_causal_conv(h, first)
        return x, batch_logdet(y, -spatial_size(y) * self.log_abs_det())
