"""Publish a trained run: config.json and one checkpoint without the optimizer's slots.

    python scripts/publish_model.py --workdir=runs/budget/long10000_s0 --output=models/mnist

The copy is a run folder that evaluate.py, sample.py, export.py and ``glow_nxn.load`` read like any
other (glow_nxn/run_folder.py, ``RunFolder.publish``); the repository's models/ holds the ones
docs/RESULTS.md reports.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# As flags.py does for the entry scripts: TensorFlow's C++ start-up lines would bury the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from glow_nxn.errors import GlowError, UserError  # noqa: E402  (no TensorFlow yet)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the run folder train.py wrote")
    parser.add_argument("--output", required=True, help="the new folder of the published run")
    parser.add_argument("--checkpoint", default=None, help="a ckpt-N of the run (default: newest)")
    args = parser.parse_args()
    try:
        if os.path.exists(args.output):  # checked before TensorFlow loads, as the scripts do
            raise UserError(f"{args.output} exists: publish into a new folder")
        from glow_nxn.run_folder import RunFolder

        published = RunFolder(args.workdir).publish(args.output, args.checkpoint)
    except GlowError as error:  # a user's mistake: one line and its exit code (errors.py)
        print(f"publish_model.py: {error.label}: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    size = sum(os.path.getsize(os.path.join(parent, name))
               for parent, _, names in os.walk(published.path) for name in names)
    print(f"published {published.latest_checkpoint()} ({size / 1e6:.1f} MB) from {args.workdir}")


if __name__ == "__main__":
    main()
