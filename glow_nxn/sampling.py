"""What sample.py produces: sample grids by temperature, reconstructions, interpolations."""
import os

import tensorflow as tf

from glow_nxn import images, objectives

GLOW_TEMPERATURES = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)


def sample_grid(model, num_samples, temperature, seed):
    """``num_samples`` samples at ``temperature`` as one uint8 ``[rows·H, columns·W, C]`` grid."""
    samples = model.sample(num_samples, temperature=temperature, seed=seed)
    return images.grid(objectives.to_uint8(samples, model.config.n_bits))


def sample_grids(model, temperatures, num_samples, seed, output_dir):
    """One PNG grid of ``num_samples`` samples per temperature; returns the paths written.

    The same ``seed`` draws the same standard-normal latents at every temperature, so the grids
    show one set of samples with every prior's standard deviation scaled.
    """
    paths = []
    for temperature in temperatures:
        path = os.path.join(output_dir, f"samples_t{temperature:.2f}.png")
        images.write_png(path, sample_grid(model, num_samples, temperature, seed))
        paths.append(path)
    return paths


def reconstruct(model, uint8_images):
    """Encode then decode uint8 ``[B, H, W, C]`` images (at the centres of their n-bit cells).

    Returns ``(reconstructed uint8 images, max |x − decode(encode(x))|`` in pixel units, i.e. in
    units of one 8-bit grey level ``1/256``).
    """
    n_bits = model.config.n_bits
    x = objectives.dequantize(uint8_images, n_bits, tf.fill(tf.shape(uint8_images), 0.5))
    zs, _ = model.encode(x)
    x_back = model.decode(zs)
    error = float(tf.reduce_max(tf.abs(x_back - x))) * 256.0
    return objectives.to_uint8(x_back, n_bits), error


def interpolate(model, image_a, image_b, steps):
    """Decode ``steps`` points on the straight line between two images' latents (all levels).

    ``image_a, image_b: [H, W, C]`` uint8 → uint8 ``[steps, H, W, C]``, the ends being the two
    reconstructions.
    """
    pair = tf.stack([image_a, image_b])
    x = objectives.dequantize(pair, model.config.n_bits, tf.fill(tf.shape(pair), 0.5))
    zs, _ = model.encode(x)
    weights = tf.linspace(0.0, 1.0, steps)
    mixed = []
    for z in zs:
        w = tf.reshape(weights, [steps] + [1] * (len(z.shape) - 1))
        mixed.append((1.0 - w) * z[0:1] + w * z[1:2])
    return objectives.to_uint8(model.decode(mixed), model.config.n_bits)


def write_reconstructions(model, originals, interpolation_steps, output_dir):
    """``reconstructions.png`` (each of the uint8 ``[B, H, W, C]`` ``originals`` beside its
    reconstruction) and ``interpolation.png`` (``interpolation_steps`` images from the first
    original to the second); returns ``(paths written, reconstruction error in pixel units)``.
    """
    reconstructed, error = reconstruct(model, originals)
    pairs = os.path.join(output_dir, "reconstructions.png")
    images.write_png(pairs, images.grid(images.interleave(originals, reconstructed), columns=2))
    line = os.path.join(output_dir, "interpolation.png")
    images.write_png(line, images.grid(
        interpolate(model, originals[0], originals[1], interpolation_steps),
        columns=interpolation_steps))
    return [pairs, line], error
