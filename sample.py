"""Sample grids at several temperatures, a reconstruction check, a latent interpolation and edits.

    python sample.py --workdir=runs/mnist [--temperatures=0,0.5,0.7,0.8,0.9,1.0] [--seed=0]
    python sample.py --workdir=runs/mnist --interpolate=3,7 --edit=3:8
    python sample.py --workdir=runs/mnist_conditional --label=3       # one class

Writes PNGs to <workdir>/samples (or --output_dir) and prints the reconstruction error: the max
|x − decode(encode(x))| over test images, in 8-bit pixel units. interpolation.png decodes the
straight line between the latents of two test images (--interpolate, their positions in the test
split). With --edit=a:b, edit_a_to_b.png moves test images of class a (--edit_images, default
the first four of class a) along the class vector from a to b (the mean latent of class b minus
that of class a, from --edit_examples training images of each; glow_nxn/sampling.py), at each of
--edit_scales; a row per image: the image, then its edits (scale 0 is its reconstruction). The
weights are the run's moving average when it has one (--weights=raw for the trained weights). A
broken model (non-finite latents or reconstructions of test images, or no finite sample at all)
is an error (exit 3), and nothing is written; a few samples that overflow at high temperature
are drawn black and counted. A class-conditional model's grids draw every class in turn (a row
per class when --num_samples is a multiple of the number of classes), or only the class --label
names.
"""

from absl import flags

import flags as project_flags
from glow_nxn import data, sampling
from glow_nxn.config import MAX_SEED, check_float, check_int, check_positive_int
from glow_nxn.distributed import Replicas
from glow_nxn.errors import UserError, as_user_error

project_flags.define_restore_flags()
project_flags.define_data_flags(for_training=False)
flags.DEFINE_list("temperatures", [str(t) for t in sampling.GLOW_TEMPERATURES],
                  "temperatures of the sample grids (std scale of every prior)")
flags.DEFINE_integer("num_samples", 64, "samples per grid")
flags.DEFINE_integer("seed", 0, "seed of the sampled latents")
flags.DEFINE_integer("num_reconstructions", 16, "test images encoded and decoded")
flags.DEFINE_integer("interpolation_steps", 8, "images along the interpolation")
flags.DEFINE_list("interpolate", ["0", "1"], "the two test images (positions in the test split) "
                  "to interpolate between")
flags.DEFINE_string("edit", None, "a:b — move images of class a along the class vector towards "
                    "class b (class names, e.g. 3:8 on MNIST)")
flags.DEFINE_list("edit_images", [], "test images to edit (positions in the test split; default: "
                  "the first four of class a)")
flags.DEFINE_list("edit_scales", ["0", "0.25", "0.5", "0.75", "1", "1.25", "1.5"],
                  "multiples of the class vector to add")
flags.DEFINE_integer("edit_examples", 500, "training images per class whose mean latent makes "
                     "the class vector")
flags.DEFINE_string("label", None, "a class-conditional model draws only this class (a class "
                    "name, e.g. 3 on MNIST); default: every class in turn")
flags.DEFINE_string("output_dir", None, "where PNGs go (default: <workdir>/samples)")
flags.adopt_module_key_flags(project_flags)
FLAGS = flags.FLAGS


def main(argv):
    # Every flag first, so that a mistake costs no loading.
    folder = project_flags.run_folder()
    with as_user_error():
        temperatures = [_number("--temperatures", t) for t in FLAGS.temperatures]
        edit_scales = [_number("--edit_scales", t) for t in FLAGS.edit_scales]
        if not edit_scales:
            raise ValueError("--edit_scales must name at least one scale")
        if not temperatures:
            raise ValueError("--temperatures must name at least one temperature")
        for temperature in temperatures:
            check_float("--temperatures", temperature, minimum=0.0)
        for scale in edit_scales:
            check_float("--edit_scales", scale)
        check_int("--seed", FLAGS.seed, 0, MAX_SEED)
        check_positive_int("--num_samples", FLAGS.num_samples)
        check_int("--num_reconstructions", FLAGS.num_reconstructions, minimum=2)
        check_int("--interpolation_steps", FLAGS.interpolation_steps, minimum=2)
        ends = _indices("--interpolate", FLAGS.interpolate)
        if len(ends) != 2:
            raise ValueError(f"--interpolate takes two test images, e.g. 0,1; got {len(ends)}")
        edit_classes = _class_pair(FLAGS.edit) if FLAGS.edit else None
        edit_images = _indices("--edit_images", FLAGS.edit_images)
        check_positive_int("--edit_examples", FLAGS.edit_examples)
    project_flags.check_output_folder("output_dir")
    folder.check_is_a_run()
    saved = folder.load_config()
    if FLAGS.label is not None and not saved.model.num_classes:
        raise UserError("--label draws one class of a class-conditional model, and this run's "
                        "model is not one (train it with --class_conditional); drop --label")
    data_config = project_flags.restored_data_config(saved)
    checkpoint = folder.resolve_checkpoint(FLAGS.checkpoint)
    loaded = folder.load_model(checkpoint, FLAGS.weights)
    with as_user_error():
        labels = _labels(data_config, FLAGS.label, FLAGS.num_samples)
        for bad in data.bad_images(data_config, splits=("test",)):
            print(f"warning: skipping image {bad.path}: {bad.reason}")
        test = data.evaluation_split(data_config, Replicas(),
                                     image_shape=loaded.model.config.image_shape,
                                     batch_size=FLAGS.num_reconstructions)
        originals = next(iter(test))["image"]
        interpolated = sampling.find_examples(test, ends)
        edit_inputs = sampling.class_edit_inputs(
            data_config, loaded.model.config.image_shape, edit_classes, edit_images,
            FLAGS.edit_examples) if edit_classes else None
    output_dir = FLAGS.output_dir or folder.samples_dir
    grids = sampling.sample_grids(loaded.model, temperatures, FLAGS.num_samples, FLAGS.seed,
                                  labels)
    pictures = sampling.reconstructions(loaded.model, originals, interpolated,
                                        FLAGS.interpolation_steps)
    edits = {edit_inputs.file_name: sampling.edit_grid(
        loaded.model, edit_inputs.originals,
        sampling.class_vector(loaded.model, edit_inputs.images_a, edit_inputs.images_b),
        edit_scales)} if edit_inputs else {}
    written = sampling.write_pngs({**grids.images, **pictures.images, **edits}, output_dir)
    print(f"checkpoint {loaded.checkpoint} (step {loaded.step}, {loaded.weights} weights)")
    for temperature, count in grids.nonfinite.items():
        print(f"warning: {count} of {FLAGS.num_samples} samples at temperature {temperature:g} "
              f"overflowed in the inverse (not finite) and are drawn black")
    print(f"reconstruction: max |x - decode(encode(x))| = {pictures.error:.2e} pixel units over "
          f"{int(originals.shape[0])} test images")
    print("wrote " + ", ".join(written), flush=True)


def _labels(data_config, label, count):
    """The classes of the samples: ``count`` times the class named ``label``, or None (the
    model's default: :func:`glow_nxn.sampling.class_order`)."""
    if label is None:
        return None
    return sampling.class_labels(data_config, [label], "--label") * count


def _class_pair(text):
    parts = text.split(":")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"--edit takes two different class names as a:b, e.g. 3:8; got {text!r}")
    return parts


def _indices(name, texts):
    try:
        values = [int(text) for text in texts]
    except ValueError as error:
        raise ValueError(f"{name} must be test image positions (integers >= 0), got "
                         f"{','.join(texts)!r}") from error
    for value in values:
        check_int(name, value, minimum=0)
    return values


def _number(name, text):
    try:
        return float(text)
    except ValueError as error:
        raise ValueError(f"{name} must be numbers, got {text!r}") from error


if __name__ == "__main__":
    project_flags.run(main)
