"""Sample grids at several temperatures, a reconstruction check and a latent interpolation.

    python sample.py --workdir=runs/mnist [--temperatures=0,0.5,0.7,0.8,0.9,1.0] [--seed=0]

Writes PNGs to <workdir>/samples (or --output_dir) and prints the reconstruction error: the max
|x − decode(encode(x))| over test images, in 8-bit pixel units. The weights are the run's moving
average when it has one (--weights=raw for the trained weights). Non-finite samples, latents or
reconstructions are an error (exit 3), and nothing is written.
"""
import os

from absl import flags

import flags as project_flags
from glow_nxn import data, sampling
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
flags.DEFINE_string("output_dir", None, "where PNGs go (default: <workdir>/samples)")
flags.adopt_module_key_flags(project_flags)
FLAGS = flags.FLAGS


def main(argv):
    folder = project_flags.run_folder()
    try:
        temperatures = [float(t) for t in FLAGS.temperatures]
    except ValueError as error:
        raise UserError(f"--temperatures must be numbers: {error}") from error
    if any(not t >= 0 for t in temperatures) or FLAGS.num_samples < 1:
        raise UserError("--temperatures must be >= 0 and --num_samples >= 1")
    if FLAGS.num_reconstructions < 2 or FLAGS.interpolation_steps < 2:
        raise UserError("--num_reconstructions and --interpolation_steps must be at least 2")
    loaded = folder.load_model(FLAGS.checkpoint, FLAGS.weights)
    data_config = project_flags.restored_data_config(loaded.run_config.data)
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
    written = sampling.write_pngs({**grids, **pictures.images}, output_dir)
    print(f"checkpoint {loaded.checkpoint} (step {loaded.step}, {loaded.weights} weights)")
    print(f"reconstruction: max |x - decode(encode(x))| = {pictures.error:.2e} pixel units over "
          f"{int(originals.shape[0])} test images")
    print("wrote " + ", ".join(written), flush=True)


if __name__ == "__main__":
    project_flags.run(main)
