r"""Test bits/dim over a whole split, identical for any number of processes, with its spread.

For ``n`` images with per-image bits/dim ``b_1 … b_n`` (each the mean over ``k`` dequantisation
draws) the result is the mean ``b̄ = Σ b_i / n``, its standard error ``s / √n`` with the sample
standard deviation ``s² = Σ (b_i − b̄)² / (n − 1)``, and the spread of the ``b_i``: median, 99th
percentile (linear interpolation, numpy's default), maximum and the worst images' indices. A mean
far above the median, or a huge standard error, says a few images are scored very badly.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from glow_nxn import data
from glow_nxn.config import check_positive_int
from glow_nxn.distributed import Replicas

NUM_WORST = 5


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Mean test bits/dim over ``num_images`` images, its standard error, and its spread.

    ``worst`` lists ``(index in the split, bits/dim)`` of the ``NUM_WORST`` worst-scored images,
    worst first. ``num_nonfinite`` counts images whose bits/dim is not finite (a broken model).
    """

    bits_per_dim: float
    standard_error: float
    num_images: int
    num_dequant_samples: int
    median: float
    percentile_99: float
    maximum: float
    worst: tuple
    num_nonfinite: int

    @property
    def finite(self):
        return self.num_nonfinite == 0

    def summary(self):
        """A JSON-ready dict of every field."""
        fields = dataclasses.asdict(self)
        fields["worst"] = [[int(i), float(b)] for i, b in self.worst]
        return fields


def summarise(indices, bits, num_dequant_samples=1):
    """The :class:`EvalResult` of per-image ``bits`` (float64 ``[n]``) of images ``indices``."""
    bits, indices = np.asarray(bits, np.float64), np.asarray(indices, np.int64)
    count = bits.size
    if count == 0:
        raise ValueError("the evaluation split is empty")
    mean = float(np.mean(bits))
    standard_error = float(np.std(bits, ddof=1) / np.sqrt(count)) if count > 1 else 0.0
    # Not-finite values sort last, so they are the worst.
    order = np.argsort(np.where(np.isnan(bits), np.inf, bits), kind="stable")[::-1][:NUM_WORST]
    return EvalResult(
        bits_per_dim=mean, standard_error=standard_error, num_images=int(count),
        num_dequant_samples=num_dequant_samples, median=float(np.median(bits)),
        percentile_99=float(np.percentile(bits, 99)), maximum=float(np.max(bits)),
        worst=tuple((int(indices[i]), float(bits[i])) for i in order),
        num_nonfinite=int(np.sum(~np.isfinite(bits))))


def per_image_bits(model, dataset, seed, num_dequant_samples=1, max_batches=None):
    """``(indices int64 [n], bits/dim float64 [n])`` of this replica's part of ``dataset``.

    Each image's dequantisation noise is ``data.evaluation_noise(index, ..., seed, draw)``, a fixed
    function of the image's index in the split, so the numbers do not depend on batch size, the
    number of replicas or the run. With ``num_dequant_samples = k`` an image's bits/dim is the
    mean over ``k`` noise draws (a lower-variance Monte-Carlo estimate of the same bound).
    """
    shape = model.config.image_shape

    @tf.function
    def image_bits(images, index):
        total = tf.zeros([tf.shape(images)[0]])
        for draw in range(num_dequant_samples):
            noise = data.evaluation_noise(index, shape, seed, draw)
            total += model.bits_per_dim(images, noise)
        return total / num_dequant_samples

    indices, bits = [], []
    for batch_number, batch in enumerate(dataset):
        if max_batches is not None and batch_number >= max_batches:
            break
        bits.append(tf.cast(image_bits(batch["image"], batch["index"]), tf.float64))
        indices.append(tf.cast(batch["index"], tf.int64))
    if not bits:
        return tf.zeros([0], tf.int64), tf.zeros([0], tf.float64)
    return tf.concat(indices, 0), tf.concat(bits, 0)


def evaluate(model, dataset, seed, replicas=None, num_dequant_samples=1, max_batches=None):
    """The :class:`EvalResult` of ``model`` on ``dataset`` (``data.eval_dataset`` batches of this
    replica), the same on every replica: per-image values are gathered from all replicas.

    ``max_batches`` limits each replica's batches (a quick estimate during training).
    """
    check_positive_int("num_dequant_samples", num_dequant_samples)
    replicas = replicas or Replicas()
    indices, bits = per_image_bits(model, dataset, seed, num_dequant_samples, max_batches)
    return summarise(replicas.gather(indices, name="glow_eval_indices").numpy(),
                     replicas.gather(bits, name="glow_eval_bits").numpy(), num_dequant_samples)
