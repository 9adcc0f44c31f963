"""Sample grids at several temperatures, a reconstruction check and a latent interpolation.

    python sample.py --workdir=runs/mnist [--temperatures=0,0.5,0.7,0.8,0.9,1.0] [--seed=0]

Writes PNGs to <workdir>/samples (or --output_dir) and prints the reconstruction error: the max
|x − decode(encode(x))| over test images, in 8-bit pixel units.
"""
import os

import flags as project_flags
from absl import flags
from glow_nxn.errors import as_user_error
from glow_nxn import data, sampling, workdir

project_flags.define_restore_flags()
project_flags.define_data_flags(default_dataset=None)
flags.DEFINE_list("temperatures", [str(t) for t in sampling.GLOW_TEMPERATURES],
                  "temperatures of the sample grids (std scale of every prior)")
flags.DEFINE_integer("num_samples", 64, "samples per grid")
flags.DEFINE_integer("seed", 0, "seed of the sampled latents")
flags.DEFINE_integer("num_reconstructions", 16, "test images encoded and decoded")
flags.DEFINE_integer("interpolation_steps", 8, "images along the interpolation")
flags.DEFINE_string("output_dir", None, "where PNGs go (default: <workdir>/samples)")
FLAGS = flags.FLAGS


def main(argv):
    project_flags.require_workdir()
    try:
        temperatures = [float(t) for t in FLAGS.temperatures]
    except ValueError as error:
        raise project_flags.UserError(f"--temperatures must be numbers: {error}") from error
    if any(t < 0 for t in temperatures) or FLAGS.num_samples < 1:
        raise project_flags.UserError("--temperatures must be >= 0 and --num_samples >= 1")
    model, step, path = workdir.load_trained_model(FLAGS.workdir, FLAGS.checkpoint)
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.workdir, "samples")
    written = sampling.sample_grids(model, temperatures, FLAGS.num_samples, FLAGS.seed,
                                    output_dir)

    options = project_flags.data_options(workdir.load_run_settings(FLAGS.workdir))
    count = max(FLAGS.num_reconstructions, 2)
    with as_user_error():
        test = data.eval_dataset(options["dataset"], image_shape=model.config.image_shape,
                                 batch_size=count, data_dir=options["data_dir"],
                                 manual_dir=options["manual_dir"])
    originals = next(iter(test))["image"]
    pictures, error = sampling.write_reconstructions(model, originals, FLAGS.interpolation_steps,
                                                     output_dir)
    written += pictures

    print(f"checkpoint {path} (step {step})")
    print(f"reconstruction: max |x - decode(encode(x))| = {error:.2e} pixel units over "
          f"{int(originals.shape[0])} test images")
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    project_flags.run(main)
