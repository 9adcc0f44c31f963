"""How the importance-weighted bound of a trained run falls with the number of noise draws.

    python bench/importance_weighted.py --workdir=models/mnist [--draws=1,4,16,64]
        [--max_images=1000] [--weights=ema] [--output=iw.json]

A flow on dequantised data is trained on, and by default scored with, the mean over noise draws
of ``−log₂ p̂ / D`` (``p̂ = p(y)/q(y | x)``, one draw's estimate of the image's probability): an
upper bound of the image's true code length ``−log₂ P(x) / D`` by Jensen's gap. The
importance-weighted bound ``−log₂((1/k) Σ_j p̂_j) / D`` of ``k`` draws closes part of that gap
(glow_nxn/evaluation.py has the math); ``evaluate.py --num_dequant_samples=k
--importance_weighted`` reports it for the whole test split. This scores the first
``--max_images`` test images once with the largest ``k`` of ``--draws`` (draw ``j``'s noise is
the one evaluate.py uses, a fixed function of the image's index, ``--seed`` and ``j``), then,
for every ``k`` of ``--draws``, the bound from the first ``k`` draws: its mean over the images
with the standard error, and the paired difference from ``k = 1`` (one draw, the default score)
with its own standard error. Prints a markdown table; ``--output`` writes it as JSON.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from glow_nxn import data, evaluation  # noqa: E402
from glow_nxn.distributed import Replicas  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a run folder (or a published model)")
    parser.add_argument("--draws", default="1,4,16,64",
                        help="comma-separated numbers of draws k, each >= 1")
    parser.add_argument("--max_images", type=int, default=1000,
                        help="score the first this many test images")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--output", help="JSON path for the table and its figures")
    args = parser.parse_args()
    try:
        args.draws = sorted({int(k) for k in args.draws.split(",")})
    except ValueError:
        parser.error(f"--draws must be integers separated by commas, got {args.draws!r}")
    if args.draws[0] < 1 or args.max_images < 2 or args.batch_size < 1:
        parser.error("--draws must be >= 1, --max_images >= 2 and --batch_size >= 1")
    return args


def draw_table(model, test, seed, num_draws, max_images):
    """float64 ``[num_draws, n]``: the bits/dim of each draw of the first ``max_images`` images."""
    one_draw = evaluation.draw_bits_function(model, seed)
    columns, count = [], 0
    for batch in test:
        if count >= max_images:
            break
        images, index = batch["image"][:max_images - count], batch["index"][:max_images - count]
        columns.append(np.stack([one_draw(images, index, tf.constant(draw)).numpy()
                                 for draw in range(num_draws)]))
        count += int(images.shape[0])
    return np.concatenate(columns, axis=1).astype(np.float64)


def rows(draw_bits, draws, num_dims):
    """A row per ``k`` of ``draws``: the mean and importance-weighted bound of the first ``k``
    draws over the images, and the bound's paired difference from one draw."""
    one = draw_bits[0]
    table = []
    for k in draws:
        bound = evaluation.combine_draws(draw_bits[:k], num_dims, importance_weighted=True).numpy()
        mean = evaluation.combine_draws(draw_bits[:k], num_dims, importance_weighted=False).numpy()
        table.append({
            "draws": k,
            "mean": evaluation.mean_and_error(mean),
            "importance_weighted": evaluation.mean_and_error(bound),
            "difference_from_one_draw": evaluation.mean_and_error(bound - one)})
    return table


def main():
    args = parse_args()
    folder = RunFolder(args.workdir)
    loaded = folder.load_model(None, args.weights)
    data_config = folder.load_config().data
    test = data.evaluation_split(data_config, Replicas(),
                                 image_shape=loaded.model.config.image_shape,
                                 batch_size=args.batch_size)
    draw_bits = draw_table(loaded.model, test, args.seed, args.draws[-1], args.max_images)
    table = rows(draw_bits, args.draws, loaded.model.config.num_dims)
    print(f"{args.workdir}: step {loaded.step}, {args.weights} weights, the first "
          f"{draw_bits.shape[1]} test images of {data_config.dataset}, seed {args.seed}\n")
    print("| draws k | mean of k draws | importance-weighted bound | bound − one draw (paired) |")
    print("| ---: | ---: | ---: | ---: |")
    for row in table:
        cells = [f"{row[name][0]:.4f} ± {row[name][1]:.4f}"
                 for name in ("mean", "importance_weighted", "difference_from_one_draw")]
        print(f"| {row['draws']} | " + " | ".join(cells) + " |")
    if args.output:
        with open(args.output, "w") as file:
            json.dump({"command": " ".join(["python", "bench/importance_weighted.py",
                                            *sys.argv[1:]]),
                       "workdir": args.workdir, "step": loaded.step, "weights": args.weights,
                       "seed": args.seed, "num_images": int(draw_bits.shape[1]),
                       "dataset": data_config.dataset, "rows": table}, file, indent=1)
            file.write("\n")


if __name__ == "__main__":
    main()
