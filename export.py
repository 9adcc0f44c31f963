"""Export a trained model as a TensorFlow SavedModel that runs without this package.

    python export.py --workdir=runs/mnist --output=exported/mnist [--checkpoint=ckpt-2000]

Writes the run's model (its weight average when it has one; --weights=raw for the trained
weights) with the serving signatures bits_per_dim, log_prob, encode, decode and sample
(glow_nxn/export.py documents them). Load it from any TensorFlow 2 program with
``tf.saved_model.load(path)``. --output must not exist yet (its parent folders are made); the
SavedModel is written beside it and moved there when complete, so an interrupted export leaves
nothing half-written.
"""
import os
import shutil

from absl import flags

import flags as project_flags
import tensorflow as tf

from glow_nxn import export
from glow_nxn.errors import UserError, WriteFailed, first_line

project_flags.define_restore_flags()
flags.DEFINE_string("output", None, "the SavedModel's folder (must not exist yet)")
flags.adopt_module_key_flags(project_flags)
FLAGS = flags.FLAGS


def main(argv):
    # Every flag first, so that a mistake costs no loading.
    folder = project_flags.run_folder()
    if not FLAGS.output:
        raise UserError("--output is required: the folder to write the SavedModel to")
    output = os.path.abspath(FLAGS.output)
    if os.path.lexists(output):
        raise UserError(f"--output {output} already exists: name a new folder, or remove it")
    project_flags.check_output_folder("output")  # no file on its way: its parents can be made
    folder.check_is_a_run()
    checkpoint = folder.resolve_checkpoint(FLAGS.checkpoint)
    loaded = folder.load_model(checkpoint, FLAGS.weights)
    partial = f"{output}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        os.makedirs(os.path.dirname(output), exist_ok=True)
        export.save(loaded.model, partial)
        os.rename(partial, output)
    except (OSError, tf.errors.OpError) as error:
        raise WriteFailed(f"the SavedModel could not be written to {output} "
                          f"({first_line(error)}); nothing was left there: free space or fix "
                          f"the folder, then run the same command again") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"exported checkpoint {loaded.checkpoint} (step {loaded.step}, {loaded.weights} "
          f"weights) to {output}: signatures {', '.join(export.SIGNATURES)}", flush=True)


if __name__ == "__main__":
    project_flags.run(main)
