r"""Hoogeboom et al.'s invertible periodic convolution: a circular n×n convolution solved in the
Fourier domain.

Reference: E. Hoogeboom, R. van den Berg, M. Welling, "Emerging Convolutions for Generative
Normalizing Flows", ICML 2019, §3.3 ("Invertible Periodic Convolutions").

Shapes: ``x, y: [B, H, W, C]``; kernel ``K: [n, n, C, C]`` (HWIO), ``r = ⌊n/2⌋``. The layer is the
circular (periodic) correlation

    ``y[i, j] = Σ_{a,e=−r..r} x[(i+a) mod H, (j+e) mod W] · K[a+r, e+r]``

(channel vectors as rows, as in :mod:`glow_nxn.layers.mixing`), which the 2-D DFT
``X̂[u, v] = Σ_{i,j} x[i, j]·exp(−2πi(ui/H + vj/W))`` turns into one ``C×C`` matrix per frequency:

    ``Ŷ[u, v] = X̂[u, v] · K̂[u, v]``,  ``K̂[u, v] = Σ_{a,e} K[a+r, e+r]·exp(+2πi(ua/H + ve/W))``.

``K̂`` is the DFT of the zero-padded, flipped kernel, computed here directly from its ``n²`` taps
(two small matrix products with DFT phase matrices), which also handles images smaller than the
kernel (``H < n``: the taps wrap onto each other, as the circular convolution does).

* Forward: ``y = irfft2d(X̂·K̂)``; real signals need only the half spectrum ``v = 0..⌊W/2⌋``.
* Log-det: the DFT block-diagonalises the map, so
  ``log|det ∂y/∂x| = Σ_{u,v} log|det K̂[u, v]|`` over all ``H·W`` frequencies; a real ``K`` gives
  ``K̂[−u, −v] = conj K̂[u, v]``, so the half spectrum is summed with multiplicity 2 except the
  columns ``v = 0`` and ``v = W/2`` (``W`` even), which hold their own conjugates. Complex128
  ``slogdet``: ``O(H·W·C³)`` per call, more than the data path for large ``C``.
* Inverse: ``X̂[u, v] = Ŷ[u, v] · K̂[u, v]⁻¹`` by ``tf.linalg.solve`` per frequency in complex128,
  then ``irfft2d``; no sequential part.

The layer is invertible iff no ``K̂[u, v]`` is singular; unlike :class:`EmergingConv` nothing in
the parametrisation guarantees it (as for a free 1×1 matrix), but training maximises the log-det,
which pushes away from singular ``K̂``. It starts as a random rotation at the centre tap plus
``N(0, init_scale²)`` on every tap (the authors' initialisation, ``init_scale = 0.02``), so each
``K̂[u, v]`` starts near a rotation. Parameters ``n²·C²``, those of a standard convolution. Unlike a
zero-padded convolution, the receptive field wraps around the image borders.
"""
import math

import numpy as np
import tensorflow as tf

from glow_nxn.layers.base import Bijector, batch_logdet
from glow_nxn.layers.mixing import random_rotation


def _phases(count, size, r):
    """``[count, 2r+1]`` complex128 ``exp(2πi·k·a/size)`` for ``k = 0..count−1``, ``a = −r..r``."""
    k = tf.cast(tf.range(count), tf.float64)[:, tf.newaxis]
    a = tf.constant(np.arange(-r, r + 1), tf.float64)[tf.newaxis, :]
    angle = 2.0 * math.pi * k * a / tf.cast(size, tf.float64)
    return tf.complex(tf.cos(angle), tf.sin(angle))


class PeriodicConv(Bijector):
    """Invertible circular n×n convolution in the Fourier domain (see the module docstring).

    ``forward: x [B, H, W, C] → y = irfft2d(rfft2d(x)·K̂)``, log-det ``Σ_{u,v} log|det K̂[u, v]|``;
    ``inverse`` solves ``C×C`` complex systems per frequency. Parameters ``n²·C²``.
    """

    def __init__(self, kernel_size=3, seed=0, init_scale=0.02, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.seed = seed
        self.init_scale = init_scale

    def build(self, input_shape):
        channels = int(input_shape[-1])
        n, r = self.kernel_size, self.kernel_size // 2
        kernel = self.init_scale * np.random.RandomState(self.seed).normal(
            size=[n, n, channels, channels])
        kernel[r, r] += random_rotation(channels, self.seed)
        self.kernel = self.add_weight(
            name="kernel", shape=[n, n, channels, channels],
            initializer=tf.constant_initializer(kernel.astype(np.float32)))

    def transfer_matrices(self, height, width):
        """``K̂ᵀ`` on the half spectrum: ``[H, ⌊W/2⌋+1, C_out, C_in]`` complex128.

        ``out[u, v, o, c] = K̂[u, v][c, o] = Σ_{a,e} K[a+r, e+r, c, o]·exp(2πi(ua/H + ve/W))``;
        transposed so that a column of channels is multiplied from the left.
        """
        r = self.kernel_size // 2
        real = tf.cast(self.kernel, tf.float64)
        kernel = tf.complex(real, tf.zeros_like(real))  # whose gradient is the real part
        along_width = tf.einsum("ve,aeco->vaoc", _phases(width // 2 + 1, width, r), kernel)
        return tf.einsum("ua,vaoc->uvoc", _phases(height, height, r), along_width)

    def log_abs_det(self, transfer, width):
        """``Σ_{u,v} log|det K̂[u, v]|`` over the full spectrum, float32, from the half one."""
        log_abs = tf.math.real(tf.linalg.slogdet(transfer)[1])  # [H, W//2 + 1], float64
        v = tf.range(width // 2 + 1)
        self_conjugate = (v == 0) | (2 * v == width)
        multiplicity = tf.where(self_conjugate, 1.0, 2.0)
        return tf.cast(tf.reduce_sum(log_abs * tf.cast(multiplicity, tf.float64)), tf.float32)

    @staticmethod
    def _spectrum(t):
        """``[B, H, W, C]`` → half spectrum ``[H, W//2+1, C, B]`` complex64."""
        return tf.transpose(tf.signal.rfft2d(tf.transpose(t, [0, 3, 1, 2])), [2, 3, 1, 0])

    @staticmethod
    def _signal(spectrum, height, width):
        """The inverse of :meth:`_spectrum`: ``[H, W//2+1, C, B]`` → ``[B, H, W, C]`` float32."""
        images = tf.signal.irfft2d(tf.transpose(spectrum, [3, 2, 0, 1]),
                                   fft_length=tf.stack([height, width]))
        return tf.transpose(images, [0, 2, 3, 1])

    def _forward(self, x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        transfer = self.transfer_matrices(height, width)
        y = self._signal(tf.cast(transfer, tf.complex64) @ self._spectrum(x), height, width)
        return y, batch_logdet(x, self.log_abs_det(transfer, width))

    def _inverse(self, y):
        height, width = tf.shape(y)[1], tf.shape(y)[2]
        transfer = self.transfer_matrices(height, width)
        spectrum = tf.linalg.solve(transfer, tf.cast(self._spectrum(y), tf.complex128))
        x = self._signal(tf.cast(spectrum, tf.complex64), height, width)
        return x, batch_logdet(y, -self.log_abs_det(transfer, width))
