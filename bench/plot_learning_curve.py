"""Plot test (and train) bits/dim against images seen, from a run's TensorBoard summaries.

    python bench/plot_learning_curve.py --workdir=runs/mnist_long --output=docs/mnist_curve.png

Images seen = step × global batch (``--global_batch``, default: the run's per-replica batch size
from config.json, i.e. one process). Needs matplotlib (installed by install.sh).
"""
import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402


def read_scalars(summary_dir):
    """``{tag: sorted [(step, value)]}`` from every event file in ``summary_dir``."""
    series = {}
    for path in sorted(glob.glob(os.path.join(summary_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.string_val:
                    scalar = float(tf.make_ndarray(value.tensor))
                    series.setdefault(value.tag, {})[event.step] = scalar
    return {tag: sorted(points.items()) for tag, points in series.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--global_batch", type=int, default=None)
    parser.add_argument("--title", default="glow_nxn, mnist preset, one 2-core CPU")
    parser.add_argument("--floor", type=float, default=None,
                        help="the independent-pixel floor to draw (bench/mnist_budget.py prints "
                             "it; 1.689 on MNIST's test split)")
    args = parser.parse_args()
    with open(os.path.join(args.workdir, "config.json")) as handle:
        batch = args.global_batch or json.load(handle)["train"]["per_replica_batch_size"]
    series = read_scalars(os.path.join(args.workdir, "summaries"))
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for tag, label, style in (("train/bits_per_dim", "train (running mean)", "-"),
                              ("test/bits_per_dim", "test (10,000 images)", "o-")):
        points = series.get(tag, [])
        if points:
            axes.plot([s * batch for s, _ in points], [v for _, v in points], style, label=label,
                      markersize=4, linewidth=1)
    axes.axhline(1.05, linestyle=":", color="grey", linewidth=1)
    axes.text(0, 1.06, "published (FFJORD's Table 2): Glow 1.05, RealNVP 1.06", va="bottom",
              fontsize=8, color="grey")
    if args.floor is not None:
        axes.axhline(args.floor, linestyle="--", color="firebrick", linewidth=1)
        axes.text(0, args.floor + 0.01, f"independent pixels {args.floor:.3f}", va="bottom",
                  fontsize=8, color="firebrick")
    axes.set_xlabel("training images seen")
    axes.set_ylabel("bits/dim")
    axes.set_ylim(0.9, 3.0)
    axes.set_title(args.title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    test = series.get("test/bits_per_dim", [])
    if test:
        step, value = test[-1]
        print(f"last test bits/dim {value:.4f} at step {step} ({step * batch:,} images); "
              f"wrote {args.output}")


if __name__ == "__main__":
    main()
