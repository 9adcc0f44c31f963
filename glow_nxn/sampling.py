r"""What sample.py produces: sample grids by temperature, reconstructions, interpolations, and
edits along a class vector.

Latent editing (Glow §5.2, its attribute manipulation, with classes for attributes): every image
is encoded at the centres of its pixel cells into the latents ``z = (ε₁, …, ε_L)`` of all levels.
The class vector from class ``a`` to class ``b`` is the difference of the two classes' mean
latents, ``v = mean_b(z) − mean_a(z)`` (level by level), and an edit of an image ``x`` at scale
``s`` decodes ``z(x) + s·v``: ``s = 0`` is the reconstruction of ``x``, ``s = 1`` moves it by the
whole difference between the classes' means.

Pictures are computed first and checked, and :func:`write_pngs` writes them only afterwards. A
broken model is reported, not rendered: latents or reconstructions of test images that are not
finite, or samples none of which is finite, raise :class:`~glow_nxn.errors.TrainingDiverged`.
A model that is sound on data can still overflow in its inverse for a few latents drawn far out
in the tails (at high temperature, early in training): an affine coupling's inverse divides by
its scale ``sigmoid(h + 2) ∈ (0, 1)``, and a latent that drives a coupling network off its
training data can make that scale tiny (bench/inverse_growth.py shows where). Those samples are
drawn black and counted (:attr:`SampleGrids.nonfinite`), so the caller can say so.
"""
import dataclasses
import os

import tensorflow as tf

from glow_nxn import data, images, objectives
from glow_nxn.errors import TrainingDiverged

GLOW_TEMPERATURES = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)


def check_finite(what, tensors):
    """TrainingDiverged naming ``what`` unless every value of ``tensors`` (a tensor or a list) is
    finite."""
    for tensor in tensors if isinstance(tensors, (list, tuple)) else [tensors]:
        if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
            raise TrainingDiverged(f"the model's {what} are not finite: its weights are broken; "
                                   f"use an older --checkpoint")


def class_order(model, num_samples):
    """The classes a grid of ``num_samples`` samples of a class-conditional model draws when
    none is chosen: every class in turn, in equal consecutive runs (sample ``i`` is of class
    ``⌊i·K/n⌋``; with ``n = K·m`` and ``m`` columns, a row per class). None for an unconditional
    model."""
    classes = model.config.num_classes
    if not classes:
        return None
    return tf.range(num_samples) * classes // num_samples


def grid_columns(model, num_samples, labels=None):
    """A grid's columns: ``m`` when it draws :func:`class_order` and ``n = K·m`` (a row per
    class), else None (``images.grid``'s default, ``⌈√n⌉``)."""
    classes = model.config.num_classes
    if classes and labels is None and num_samples % classes == 0:
        return num_samples // classes
    return None


def sample_grid(model, num_samples, temperature, seed, labels=None):
    """``num_samples`` samples at ``temperature`` as one uint8 ``[rows·H, columns·W, C]`` grid;
    of the classes ``labels [num_samples]`` (default: :func:`class_order`)."""
    columns = grid_columns(model, num_samples, labels)
    labels = class_order(model, num_samples) if labels is None else labels
    samples = model.sample(num_samples, temperature=temperature, seed=seed, labels=labels)
    return images.grid(objectives.to_uint8(samples, model.config.n_bits), columns)


@dataclasses.dataclass(frozen=True)
class SampleGrids:
    """``images``: ``{"samples_t<T>.png": uint8 grid}``; ``nonfinite``: ``{T: count}`` of the
    samples drawn black because they are not finite (only temperatures that had any)."""

    images: dict
    nonfinite: dict


def sample_grids(model, temperatures, num_samples, seed, labels=None):
    """One grid of ``num_samples`` samples per temperature (a :class:`SampleGrids`), of the
    classes ``labels`` for a class-conditional model (default: :func:`class_order`).

    The same ``seed`` draws the same standard-normal latents at every temperature, so the grids
    show one set of samples with every prior's standard deviation scaled. TrainingDiverged if
    no sample of any grid is finite.
    """
    grids, nonfinite = {}, {}
    columns = grid_columns(model, num_samples, labels)
    labels = class_order(model, num_samples) if labels is None else labels
    for temperature in temperatures:
        samples = model.sample(num_samples, temperature=temperature, seed=seed, labels=labels)
        finite = tf.reduce_all(tf.math.is_finite(tf.reshape(samples, [num_samples, -1])), axis=1)
        bad = num_samples - int(tf.reduce_sum(tf.cast(finite, tf.int32)))
        if bad:
            nonfinite[temperature] = bad
            samples = tf.where(finite[:, None, None, None], samples, -0.5)
        grids[f"samples_t{temperature:.2f}.png"] = images.grid(
            objectives.to_uint8(samples, model.config.n_bits), columns)
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


def mean_latents(model, uint8_images):
    """The mean latent of uint8 ``[N, H, W, C]`` images, level by level: ``[[1, h_l, w_l, c_l]]``."""
    _, zs = _encode_cell_centres(model, uint8_images)
    return [tf.reduce_mean(z, axis=0, keepdims=True) for z in zs]


def class_vector(model, images_a, images_b):
    """``v = mean latent of images_b − mean latent of images_a`` (module docstring), level by
    level; the images are uint8 ``[N, H, W, C]`` of the two classes."""
    return [b - a for a, b in zip(mean_latents(model, images_a), mean_latents(model, images_b))]


def edit(model, originals, vector, scales):
    """Decode ``z(x) + s·v`` for every image ``x`` of uint8 ``originals: [N, H, W, C]`` and every
    ``s`` of ``scales`` (``S`` of them); ``vector`` as :func:`class_vector` returns it.

    Returns uint8 ``[N, 1 + S, H, W, C]``: each original, then its ``S`` edits.
    """
    _, zs = _encode_cell_centres(model, originals)
    count, steps = int(originals.shape[0]), len(scales)
    weights = tf.constant(scales, tf.float32)
    moved = []
    for z, v in zip(zs, vector):
        w = tf.reshape(weights, [1, steps] + [1] * (len(z.shape) - 1))
        moved.append(tf.reshape(z[:, tf.newaxis] + w * v[:, tf.newaxis],
                                [count * steps, *z.shape[1:]]))
    decoded = model.decode(moved)
    check_finite("edited images", decoded)
    edited = tf.reshape(objectives.to_uint8(decoded, model.config.n_bits),
                        [count, steps, *originals.shape[1:]])
    return tf.concat([tf.cast(originals, tf.uint8)[:, tf.newaxis], edited], axis=1)


def edit_grid(model, originals, vector, scales):
    """:func:`edit` as one picture: a row per original (the original, then its edits)."""
    rows = edit(model, originals, vector, scales)
    return images.grid(tf.reshape(rows, [-1, *rows.shape[2:]]), columns=int(rows.shape[1]))


@dataclasses.dataclass(frozen=True)
class Reconstructions:
    """``images``: ``{"reconstructions.png": …, "interpolation.png": …}``; ``error`` in pixel
    units."""

    images: dict
    error: float


def reconstructions(model, originals, ends, interpolation_steps):
    """The reconstruction grid (each of the uint8 ``[B, H, W, C]`` ``originals`` beside its
    reconstruction) and the interpolation between the two uint8 images ``ends: [2, H, W, C]``."""
    reconstructed, error = reconstruct(model, originals)
    return Reconstructions(images={
        "reconstructions.png": images.grid(images.interleave(originals, reconstructed),
                                           columns=2),
        "interpolation.png": images.grid(
            interpolate(model, ends[0], ends[1], interpolation_steps),
            columns=interpolation_steps)}, error=error)


def find_examples(batches, indices):
    """The uint8 images ``[len(indices), H, W, C]`` of the given split positions, in the order of
    ``indices``, from ``batches`` of :func:`glow_nxn.data.eval_dataset`; ValueError naming the
    first index the split does not have."""
    wanted, found, seen = set(indices), {}, 0
    for batch in batches:
        for index, image in zip(batch["index"].numpy(), batch["image"]):
            seen += 1
            if int(index) in wanted:
                found[int(index)] = image
        if len(found) == len(wanted):
            break
    missing = [index for index in indices if index not in found]
    if missing:
        raise ValueError(f"the test split has {seen} images (0..{seen - 1}), no image {missing[0]}:"
                         f" choose indices below {seen}")
    return tf.stack([found[index] for index in indices])


def examples_of_class(batches, label, count):
    """The first ``count`` (or fewer, if the split has fewer) uint8 images of class ``label`` in
    ``batches`` of :func:`glow_nxn.data.eval_dataset`, with their split positions:
    ``(images [n, H, W, C], indices [n])``."""
    chosen, positions = [], []
    for batch in batches:
        mine = batch["label"] == label
        chosen.append(tf.boolean_mask(batch["image"], mine))
        positions.append(tf.boolean_mask(batch["index"], mine))
        if sum(int(t.shape[0]) for t in chosen) >= count:
            break
    return tf.concat(chosen, 0)[:count], tf.concat(positions, 0)[:count]


def write_pngs(pictures, output_dir):
    """Write ``{file name: uint8 [H, W, C]}`` as PNGs in ``output_dir``; returns the paths."""
    paths = []
    for name, picture in pictures.items():
        path = os.path.join(output_dir, name)
        images.write_png(path, picture)
        paths.append(path)
    return paths


@dataclasses.dataclass(frozen=True)
class ClassEditInputs:
    """What an edit from class ``a`` to ``b`` needs: uint8 ``images_a``, ``images_b`` (training
    images of the two classes), ``originals`` (the test images to edit), and the PNG's name."""

    images_a: tf.Tensor
    images_b: tf.Tensor
    originals: tf.Tensor
    file_name: str


def class_labels(config, classes, flag):
    """The labels (:func:`glow_nxn.data.class_names` positions) of the class names ``classes``
    in the dataset of ``config`` (a :class:`~glow_nxn.config.DataConfig`); ValueError, naming
    ``flag``, when the dataset has no classes or not one of these."""
    names = data.class_names(config.dataset, data_dir=config.data_dir,
                             manual_dir=config.manual_dir)
    if not names:
        raise ValueError(f"{flag} needs classes, and {config.dataset} has none (a folder gets "
                         f"them from subdirectories: <split>/<class>/*.png)")
    for name in classes:
        if name not in names:
            raise ValueError(f"{flag}: no class {name!r}; the classes are {', '.join(names)}")
    return [names.index(name) for name in classes]


def class_edit_inputs(config, image_shape, classes, chosen, per_class):
    """The :class:`ClassEditInputs` of an edit between the class names ``classes = (a, b)`` of the
    dataset of ``config`` (a :class:`~glow_nxn.config.DataConfig`): the first ``per_class``
    training images of each class, and the test images at the positions ``chosen`` (default: the
    first four of class ``a``). ValueError when the dataset has no such class, or no image of it.
    """
    label_a, label_b = class_labels(config, classes, "--edit")

    def split(name):
        return data.eval_dataset(config.dataset, image_shape=image_shape, batch_size=256,
                                 data_dir=config.data_dir, manual_dir=config.manual_dir,
                                 split=name)

    images_a, _ = examples_of_class(split("train"), label_a, per_class)
    images_b, _ = examples_of_class(split("train"), label_b, per_class)
    for name, found in zip(classes, (images_a, images_b)):
        if not int(found.shape[0]):
            raise ValueError(f"--edit: the training split has no image of class {name!r}")
    if chosen:
        originals = find_examples(split("test"), chosen)
    else:
        originals, _ = examples_of_class(split("test"), label_a, 4)
        if not int(originals.shape[0]):
            raise ValueError(f"--edit: the test split has no image of class {classes[0]!r}; "
                             f"name images with --edit_images")
    return ClassEditInputs(images_a, images_b, originals,
                           f"edit_{classes[0]}_to_{classes[1]}.png")
