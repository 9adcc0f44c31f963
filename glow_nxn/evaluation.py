"""Test bits/dim over a whole split, identical for any number of processes."""
import dataclasses
import math

import tensorflow as tf

from glow_nxn import data
from glow_nxn.distributed import Replicas


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Mean test bits/dim over ``num_images`` images, with its standard error (std / √n)."""

    bits_per_dim: float
    standard_error: float
    num_images: int
    num_dequant_samples: int


def evaluate(model, dataset, seed, replicas=None, num_dequant_samples=1, max_batches=None):
    """bits/dim of ``model`` on ``dataset`` (``data.eval_dataset`` batches of this replica).

    Each image's dequantisation noise is ``data.evaluation_noise(index, ..., seed, draw)``, a fixed
    function of the image's index in the split, so the result does not depend on batch size, the
    number of replicas or the run. With ``num_dequant_samples = k`` an image's bits/dim is the
    mean over ``k`` noise draws (a lower-variance Monte-Carlo estimate of the same dequantised
    bound). Per-replica sums of bits/dim, their squares and the image count are summed across
    replicas, so every replica returns the same :class:`EvalResult`. ``max_batches`` limits each
    replica's batches (a quick estimate during training).
    """
    if num_dequant_samples < 1:
        raise ValueError(f"num_dequant_samples must be at least 1, got {num_dequant_samples}")
    replicas = replicas or Replicas()
    shape = model.config.image_shape

    @tf.function
    def image_bits(images, index):
        total = tf.zeros([tf.shape(images)[0]])
        for draw in range(num_dequant_samples):
            noise = data.evaluation_noise(index, shape, seed, draw)
            total += model.bits_per_dim(images, noise)
        return total / num_dequant_samples

    sums = tf.zeros([3], tf.float64)  # Σ bits, Σ bits², count
    for batch_number, batch in enumerate(dataset):
        if max_batches is not None and batch_number >= max_batches:
            break
        bits = tf.cast(image_bits(batch["image"], batch["index"]), tf.float64)
        sums += tf.stack([tf.reduce_sum(bits), tf.reduce_sum(tf.square(bits)),
                          tf.cast(tf.size(bits), tf.float64)])
    total, total_squares, count = replicas.sum(sums).numpy().tolist()
    if count == 0:
        raise ValueError("the evaluation split is empty")
    mean = total / count
    variance = max(total_squares / count - mean * mean, 0.0) * count / max(count - 1.0, 1.0)
    return EvalResult(bits_per_dim=mean, standard_error=math.sqrt(variance / count),
                      num_images=int(count), num_dequant_samples=num_dequant_samples)
