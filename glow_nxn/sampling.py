"""What sample.py produces: sample grids by temperature, reconstructions, interpolations.

Pictures are computed first and checked, and :func:`write_pngs` writes them only afterwards. A
broken model is reported, not rendered: latents or reconstructions of test images that are not
finite, or samples none of which is finite, raise :class:`~glow_nxn.errors.TrainingDiverged`.
A model that is sound on data can still overflow in its inverse for a few latents drawn far out
in the tails (at high temperature, early in training): those samples are drawn black and counted
(:attr:`SampleGrids.nonfinite`), so the caller can say so.
"""
import dataclasses
import os

import tensorflow as tf

from glow_nxn import images, objectives
from glow_nxn.errors import TrainingDiverged

GLOW_TEMPERATURES = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)


def check_finite(what, tensors):
    """TrainingDiverged naming ``what`` unless every value of ``tensors`` (a tensor or a list) is
    finite."""
    for tensor in tensors if isinstance(tensors, (list, tuple)) else [tensors]:
        if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
            raise TrainingDiverged(f"the model's {what} are not finite: its weights are broken; "
                                   f"use an older --checkpoint")


def sample_grid(model, num_samples, temperature, seed):
    """``num_samples`` samples at ``temperature`` as one uint8 ``[rows·H, columns·W, C]`` grid."""
    samples = model.sample(num_samples, temperature=temperature, seed=seed)
    return images.grid(objectives.to_uint8(samples, model.config.n_bits))


@dataclasses.dataclass(frozen=True)
class SampleGrids:
    """``images``: ``{"samples_t<T>.png": uint8 grid}``; ``nonfinite``: ``{T: count}`` of the
    samples drawn black because they are not finite (only temperatures that had any)."""

    images: dict
    nonfinite: dict


def sample_grids(model, temperatures, num_samples, seed):
    """One grid of ``num_samples`` samples per temperature (a :class:`SampleGrids`).

    The same ``seed`` draws the same standard-normal latents at every temperature, so the grids
    show one set of samples with every prior's standard deviation scaled. TrainingDiverged if
    no sample of any grid is finite.
    """
    grids, nonfinite = {}, {}
    for temperature in temperatures:
        samples = model.sample(num_samples, temperature=temperature, seed=seed)
        finite = tf.reduce_all(tf.math.is_finite(tf.reshape(samples, [num_samples, -1])), axis=1)
        bad = num_samples - int(tf.reduce_sum(tf.cast(finite, tf.int32)))
        if bad:
            nonfinite[temperature] = bad
            samples = tf.where(finite[:, None, None, None], samples, -0.5)
        grids[f"samples_t{temperature:.2f}.png"] = images.grid(
            objectives.to_uint8(samples, model.config.n_bits))
    if sum(nonfinite.values()) == num_samples * len(temperatures):
        raise TrainingDiverged("the model's samples are not finite at any temperature: its "
                               "weights are broken; use an older --checkpoint")
    return SampleGrids(images=grids, nonfinite=nonfinite)


def _encode_cell_centres(model, uint8_images):
    x = objectives.dequantize(uint8_images, model.config.n_bits,
                              tf.fill(tf.shape(uint8_images), 0.5))
    zs, _ = model.encode(x)
    check_finite("latents of test images", zs)
    return x, zs


def reconstruct(model, uint8_images):
    """Encode then decode uint8 ``[B, H, W, C]`` images (at the centres of their n-bit cells).

    Returns ``(reconstructed uint8 images, max |x − decode(encode(x))|`` in pixel units, i.e. in
    units of one 8-bit grey level ``1/256``).
    """
    x, zs = _encode_cell_centres(model, uint8_images)
    x_back = model.decode(zs)
    check_finite("reconstructions", x_back)
    error = float(tf.reduce_max(tf.abs(x_back - x))) * 256.0
    return objectives.to_uint8(x_back, model.config.n_bits), error


def interpolate(model, image_a, image_b, steps):
    """Decode ``steps`` points on the straight line between two images' latents (all levels).

    ``image_a, image_b: [H, W, C]`` uint8 → uint8 ``[steps, H, W, C]``, the ends being the two
    reconstructions.
    """
    _, zs = _encode_cell_centres(model, tf.stack([image_a, image_b]))
    weights = tf.linspace(0.0, 1.0, steps)
    mixed = []
    for z in zs:
        w = tf.reshape(weights, [steps] + [1] * (len(z.shape) - 1))
        mixed.append((1.0 - w) * z[0:1] + w * z[1:2])
    decoded = model.decode(mixed)
    check_finite("interpolated images", decoded)
    return objectives.to_uint8(decoded, model.config.n_bits)


@dataclasses.dataclass(frozen=True)
class Reconstructions:
    """``images``: ``{"reconstructions.png": …, "interpolation.png": …}``; ``error`` in pixel
    units."""

    images: dict
    error: float


def reconstructions(model, originals, interpolation_steps):
    """The reconstruction grid (each of the uint8 ``[B, H, W, C]`` ``originals`` beside its
    reconstruction) and the interpolation from the first original to the second."""
    reconstructed, error = reconstruct(model, originals)
    return Reconstructions(images={
        "reconstructions.png": images.grid(images.interleave(originals, reconstructed),
                                           columns=2),
        "interpolation.png": images.grid(
            interpolate(model, originals[0], originals[1], interpolation_steps),
            columns=interpolation_steps)}, error=error)


def write_pngs(pictures, output_dir):
    """Write ``{file name: uint8 [H, W, C]}`` as PNGs in ``output_dir``; returns the paths."""
    paths = []
    for name, picture in pictures.items():
        path = os.path.join(output_dir, name)
        images.write_png(path, picture)
        paths.append(path)
    return paths
