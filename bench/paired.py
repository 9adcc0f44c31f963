"""Paired comparison of trained runs on the same test images and the same noise.

    python bench/paired.py runs/a runs/b [runs/c …] [--weights=ema] [--output=paired.json]

Two runs' test bits/dim each carry a standard error of the mean over the images (0.03 bits/dim
over 2,000 images of a varied dataset), and most of it is the spread of the images, not of the
runs: an image that is hard for one model is hard for the other. The first run is the
reference; every run is scored image by image (``glow_nxn.evaluation.per_image_bits``: each
image's dequantisation noise is a fixed function of its index and ``--seed``, the same for every
run), and the difference from the reference is reported as the mean of the per-image
differences ``d_i = b_i − b_i^ref`` with its own standard error ``std(d) / √n``, and the share of
images the run scores lower. A difference larger than about twice its paired standard error is
not the luck of which images are in the test split (it can still be the luck of a training seed:
compare seeds too).

Every run must have the same image shape and test split (the reference's data config is used
for all). Prints a markdown table; ``--output`` writes it with every figure as JSON.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import numpy as np  # noqa: E402

from glow_nxn import data, evaluation  # noqa: E402
from glow_nxn.distributed import Replicas  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="run folders; the first is the reference")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--output", help="JSON path for the table and its figures")
    args = parser.parse_args()
    if len(args.workdirs) < 2:
        parser.error("name at least two run folders: the reference, then the runs to compare")
    return args


def scores(workdir, weights, data_config, seed, batch_size):
    """``(step, {image index: bits/dim})`` of the run's newest checkpoint."""
    loaded = RunFolder(workdir).load_model(None, weights)
    test = data.evaluation_split(data_config, Replicas(),
                                 image_shape=loaded.model.config.image_shape,
                                 batch_size=batch_size)
    values = evaluation.per_image_bits(loaded.model, test, seed)
    return loaded.step, dict(zip(values["index"].numpy().tolist(), values["bits"].numpy()))


def compare(reference, other):
    """The paired figures of ``other`` against ``reference`` (``{index: bits}`` each)."""
    if reference.keys() != other.keys():
        raise SystemExit("the runs scored different test images: compare runs of one dataset")
    indices = sorted(reference)
    ref = np.array([reference[i] for i in indices])
    run = np.array([other[i] for i in indices])
    mean, standard_error = evaluation.mean_and_error(run)
    difference, paired_standard_error = evaluation.mean_and_error(run - ref)
    return {"images": len(indices), "mean": mean, "standard_error": standard_error,
            "difference": difference, "paired_standard_error": paired_standard_error,
            "share_lower": float(np.mean(run < ref))}


def main():
    args = parse_args()
    data_config = RunFolder(args.workdirs[0]).load_config().data
    measured = [scores(w, args.weights, data_config, args.seed, args.batch_size)
                for w in args.workdirs]
    reference = measured[0][1]
    rows = [{"run": w, "step": step, **compare(reference, values)}
            for w, (step, values) in zip(args.workdirs, measured)]
    lines = [f"reference: {args.workdirs[0]}; {args.weights} weights; "
             f"{rows[0]['images']} test images of {data_config.dataset}, noise seed {args.seed}",
             "",
             "| run | step | test bits/dim | − reference (paired) | images scored lower |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['step']} | {row['mean']:.4f} ± "
                     f"{row['standard_error']:.4f} | {row['difference']:+.4f} ± "
                     f"{row['paired_standard_error']:.4f} | {100 * row['share_lower']:.1f}% |")
    print("\n".join(lines))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"command": " ".join(["python", "bench/paired.py", *sys.argv[1:]]),
                       "rows": rows, "table": lines}, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
