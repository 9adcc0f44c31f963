"""Report test bits/dim of a trained model over the whole test split.

    python evaluate.py --workdir=runs/mnist [--checkpoint=ckpt-2000] [--num_dequant_samples=4]
    python evaluate.py --workdir=runs/mnist --num_dequant_samples=16 --importance_weighted
    horovodrun -np 2 python evaluate.py --workdir=runs/mnist     # each process a shard

Prints the mean bits/dim, its standard error, the spread of the per-image values and the number
of images (of a class-conditional model: given each image's class, then its marginal bits/dim and
the accuracy of Bayes' rule and of its classifier, if it has one), and writes them as JSON
(default: <workdir>/eval.json). The weights are the run's moving average when it has one
(--weights=raw for the trained weights). The dequantisation noise is a fixed function of --seed
and each image's index, so the number is the same run after run and for any number of
processes. With k = --num_dequant_samples draws per image, an image's bits/dim is their mean (the
bound the model was trained on, with less noise), or with --importance_weighted the tighter
importance-weighted bound −log₂((1/k) Σ_j p̂_j)/D, nearer the image's true code length as k grows
(the math: glow_nxn/evaluation.py). A model whose bits/dim is not finite is an error (exit 3).
Images of a folder dataset that cannot be decoded are skipped, named and counted (the JSON's
``skipped_images``), or stop it with --on_bad_image=stop.
"""
from absl import flags

import flags as project_flags
from glow_nxn import data, distributed, evaluation
from glow_nxn.config import MAX_SEED, check_int, check_positive_int
from glow_nxn.errors import TrainingDiverged, as_user_error
from glow_nxn.run_folder import write_json_atomically

project_flags.define_restore_flags()
project_flags.define_data_flags(for_training=False)
flags.DEFINE_integer("seed", 0, "seed of the dequantisation noise")
flags.DEFINE_integer("num_dequant_samples", 1, "noise draws per image, combined by their mean "
                     "or, with --importance_weighted, by the importance-weighted bound")
flags.DEFINE_bool("importance_weighted", False, "combine an image's draws by the importance-"
                  "weighted bound (tighter; needs --num_dequant_samples >= 2) instead of their "
                  "mean")
flags.DEFINE_integer("batch_size", 256, "images per process per batch")
flags.DEFINE_string("output", None, "JSON result path (default: <workdir>/eval.json)")
flags.adopt_module_key_flags(project_flags)
FLAGS = flags.FLAGS


def main(argv):
    # Every flag first, so that a mistake costs no loading.
    folder = project_flags.run_folder()
    with as_user_error():
        check_int("--seed", FLAGS.seed, 0, MAX_SEED)
        check_positive_int("--num_dequant_samples", FLAGS.num_dequant_samples)
        if FLAGS.importance_weighted and FLAGS.num_dequant_samples < 2:
            raise ValueError("--importance_weighted combines several noise draws per image and "
                             f"--num_dequant_samples is {FLAGS.num_dequant_samples}: give "
                             "--num_dequant_samples=16 (or any k >= 2)")
        check_positive_int("--batch_size", FLAGS.batch_size)
    project_flags.check_output_file("output")
    folder.check_is_a_run()
    data_config = project_flags.restored_data_config(folder.load_config())
    checkpoint = folder.resolve_checkpoint(FLAGS.checkpoint)
    replicas = distributed.connect()
    loaded = folder.load_model(checkpoint, FLAGS.weights)
    with as_user_error():
        data.prepare_once(data_config, replicas)
        skipped = data.bad_images(data_config, splits=("test",))
        test = data.evaluation_split(data_config, replicas,
                                     image_shape=loaded.model.config.image_shape,
                                     batch_size=FLAGS.batch_size)
    result = evaluation.evaluate(loaded.model, test, seed=FLAGS.seed, replicas=replicas,
                                 num_dequant_samples=FLAGS.num_dequant_samples,
                                 importance_weighted=FLAGS.importance_weighted)
    if not result.finite:
        raise TrainingDiverged(
            f"the model scores {result.num_nonfinite} of {result.num_images} test images with "
            f"non-finite bits/dim (first: image {result.worst[0][0]}); checkpoint "
            f"{loaded.checkpoint} is broken: evaluate an older one with --checkpoint")
    if replicas.is_chief:
        for bad in skipped:
            print(f"warning: skipping image {bad.path}: {bad.reason}")
        output = FLAGS.output or folder.eval_path
        write_json_atomically(output, {
            **result.summary(), "dataset": data_config.dataset, "checkpoint": loaded.checkpoint,
            "step": loaded.step, "weights": loaded.weights, "processes": replicas.size,
            "seed": FLAGS.seed, "skipped_images": len(skipped)})
        bound = (f", importance-weighted over {result.num_dequant_samples} draws per image"
                 if result.importance_weighted else "")
        print(f"test bits/dim {result.bits_per_dim:.4f} ± {result.standard_error:.4f} (standard "
              f"error{bound}) over {result.num_images} images of {data_config.dataset}, checkpoint "
              f"{loaded.checkpoint} (step {loaded.step}, {loaded.weights} weights); per image: "
              f"median {result.median:.4f}, 99th percentile {result.percentile_99:.4f}, max "
              f"{result.maximum:.4f} (image {result.worst[0][0]}); written to {output}",
              flush=True)
        if result.classes is not None:
            print(f"given each image's class (class-conditional model); "
                  f"{result.classes.describe()}", flush=True)


if __name__ == "__main__":
    project_flags.run(main)
