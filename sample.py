"""Sample grids at several temperatures, a reconstruction check and a latent interpolation.

    python sample.py --workdir=runs/mnist [--temperatures=0,0.5,0.7,0.8,0.9,1.0] [--seed=0]

Writes PNGs to <workdir>/samples (or --output_dir) and prints the reconstruction error: the max
|x − decode(encode(x))| over test images, in 8-bit pixel units. The weights are the run's moving
average when it has one (--weights=raw for the trained weights). A broken model (non-finite
latents or reconstructions of test images, or no finite sample at all) is an error (exit 3), and
nothing is written; a few samples that overflow at high temperature are drawn black and counted.
"""
import os

from absl import flags

import flags as project_flags
from glow_nxn import data, sampling
from glow_nxn.config import MAX_SEED, check_float, check_int, check_positive_int
from glow_nxn.distributed import Replicas
from glow_nxn.errors import as_user_error

project_flags.define_restore_flags()
project_flags.define_data_flags(for_training=False)
flags.DEFINE_list("temperatures", [str(t) for t in sampling.GLOW_TEMPERATURES],
                  "temperatures of the sample grids (std scale of every prior)")
flags.DEFINE_integer("num_samples", 64, "samples per grid")
flags.DEFINE_integer("seed", 0, "seed of the sampled latents")
flags.DEFINE_integer("num_reconstructions", 16, "test images encoded and decoded")
flags.DEFINE_integer("interpolation_steps", 8, "images along the interpolation")
flags.DEFINE_string("output_dir", None, "where PNGs go (default: <workdir>/samples)")
flags.adopt_module_key_flags(project_flags)
FLAGS = flags.FLAGS


def main(argv):
    # Every flag first, so that a mistake costs no loading.
    folder = project_flags.run_folder()
    with as_user_error():
        temperatures = [_number("--temperatures", t) for t in FLAGS.temperatures]
        if not temperatures:
            raise ValueError("--temperatures must name at least one temperature")
        for temperature in temperatures:
            check_float("--temperatures", temperature, minimum=0.0)
        check_int("--seed", FLAGS.seed, 0, MAX_SEED)
        check_positive_int("--num_samples", FLAGS.num_samples)
        check_int("--num_reconstructions", FLAGS.num_reconstructions, minimum=2)
        check_int("--interpolation_steps", FLAGS.interpolation_steps, minimum=2)
    project_flags.check_output_folder("output_dir")
    folder.check_is_a_run()
    data_config = project_flags.restored_data_config(folder.load_config().data)
    checkpoint = folder.resolve_checkpoint(FLAGS.checkpoint)
    loaded = folder.load_model(checkpoint, FLAGS.weights)
    with as_user_error():
        for bad in data.bad_images(data_config, splits=("test",)):
            print(f"warning: skipping image {bad.path}: {bad.reason}")
        test = data.evaluation_split(data_config, Replicas(),
                                     image_shape=loaded.model.config.image_shape,
                                     batch_size=FLAGS.num_reconstructions)
    originals = next(iter(test))["image"]
    output_dir = FLAGS.output_dir or folder.samples_dir
    grids = sampling.sample_grids(loaded.model, temperatures, FLAGS.num_samples, FLAGS.seed)
    pictures = sampling.reconstructions(loaded.model, originals, FLAGS.interpolation_steps)
    written = sampling.write_pngs({**grids.images, **pictures.images}, output_dir)
    print(f"checkpoint {loaded.checkpoint} (step {loaded.step}, {loaded.weights} weights)")
    for temperature, count in grids.nonfinite.items():
        print(f"warning: {count} of {FLAGS.num_samples} samples at temperature {temperature:g} "
              f"overflowed in the inverse (not finite) and are drawn black")
    print(f"reconstruction: max |x - decode(encode(x))| = {pictures.error:.2e} pixel units over "
          f"{int(originals.shape[0])} test images")
    print("wrote " + ", ".join(written), flush=True)


def _number(name, text):
    try:
        return float(text)
    except ValueError as error:
        raise ValueError(f"{name} must be numbers, got {text!r}") from error


if __name__ == "__main__":
    project_flags.run(main)
