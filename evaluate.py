"""Report test bits/dim of a trained model over the whole test split.

    python evaluate.py --workdir=runs/mnist [--checkpoint=ckpt-2000] [--num_dequant_samples=4]
    horovodrun -np 2 python evaluate.py --workdir=runs/mnist     # each process a shard

Prints the mean bits/dim, its standard error and the number of images, and writes them as JSON
(default: <workdir>/eval.json). The dequantisation noise is a fixed function of --seed and each
image's index, so the number is the same run after run and for any number of processes.
"""
import os

import flags as project_flags
from absl import flags
from glow_nxn.errors import as_user_error
from glow_nxn import data, distributed, evaluation, workdir

project_flags.define_restore_flags()
project_flags.define_data_flags(default_dataset=None)
flags.DEFINE_integer("seed", 0, "seed of the dequantisation noise")
flags.DEFINE_integer("num_dequant_samples", 1, "noise draws averaged per image")
flags.DEFINE_integer("batch_size", 256, "images per process per batch")
flags.DEFINE_string("output", None, "JSON result path (default: <workdir>/eval.json)")
FLAGS = flags.FLAGS


def main(argv):
    project_flags.require_workdir()
    replicas = distributed.connect()
    model, step, path = workdir.load_trained_model(FLAGS.workdir, FLAGS.checkpoint)
    options = project_flags.data_options(workdir.load_run_settings(FLAGS.workdir))
    with as_user_error():
        data.prepare_once(options["dataset"], replicas, data_dir=options["data_dir"],
                          manual_dir=options["manual_dir"])
        test = data.eval_dataset(
            options["dataset"], image_shape=model.config.image_shape,
            batch_size=FLAGS.batch_size, data_dir=options["data_dir"],
            manual_dir=options["manual_dir"], shard_index=replicas.rank,
            num_shards=replicas.size)
        result = evaluation.evaluate(model, test, seed=FLAGS.seed, replicas=replicas,
                                     num_dequant_samples=FLAGS.num_dequant_samples)
    if replicas.is_chief:
        output = FLAGS.output or os.path.join(FLAGS.workdir, "eval.json")
        workdir.write_json_atomically(output, {
            "bits_per_dim": result.bits_per_dim, "standard_error": result.standard_error,
            "num_images": result.num_images, "num_dequant_samples": result.num_dequant_samples,
            "dataset": options["dataset"], "checkpoint": path, "step": step,
            "processes": replicas.size, "seed": FLAGS.seed})
        print(f"test bits/dim {result.bits_per_dim:.4f} ± {result.standard_error:.4f} (standard "
              f"error) over {result.num_images} images of {options['dataset']}, checkpoint "
              f"{path} (step {step}); written to {output}")


if __name__ == "__main__":
    project_flags.run(main)
