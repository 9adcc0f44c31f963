"""Where a sample overflows: the inverse of a trained model, layer by layer, for the samples of
sample.py's grid that are not finite.

    python bench/inverse_growth.py --workdir=runs/mnist [--temperature=1] [--seed=0]
                                   [--num_samples=64] [--weights=ema] [--output=trace.json]

sample.py draws a sample that is not finite black and counts it. This script draws the same
latents (``Glow.sample``'s ``stateless_normal`` with ``seed``, so the same samples as sample.py's
grid at that temperature), picks those whose image is not finite, and runs the model's inverse
on them one bijector at a time, in the order of :meth:`glow_nxn.model.Glow.inverse`, printing
after each the largest magnitude of its output and how many of its values are not finite. The
layer where the magnitude leaps is the one whose inverse amplifies: an affine coupling's inverse
divides by its scale ``sigmoid(h + 2) ∈ (0, 1)`` and a mixing's by its matrix, so a latent far
in the tail that drives a coupling network off the data it was trained on can grow without
bound there (Behrmann et al. 2021, "Understanding and mitigating exploding inverses in
invertible neural networks"). ``--output`` writes the table's figures as JSON.
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

from glow_nxn.run_folder import RunFolder  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a run folder")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="sample.py's --seed")
    parser.add_argument("--num_samples", type=int, default=64, help="sample.py's --num_samples")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"))
    parser.add_argument("--output", help="JSON path for the figures")
    return parser.parse_args()


def inverse_links(model):
    """``(name, link)`` of every step of ``model.inverse``, in its order: the top prior, then per
    level (last first) the split's inverse, which takes the level's latent, and the level's
    bijectors (a flow step's links one by one), then the logit transform. ``link(h, zs)`` is the
    step's output for its input ``h`` and the latents ``zs``."""
    def leaves(bijector):
        if hasattr(bijector, "bijectors"):
            return [leaf for link in reversed(bijector.bijectors) for leaf in leaves(link)]
        return [bijector]

    def alone(inverse):
        return lambda h, zs: inverse(h)[0]

    def split(index):
        return lambda h, zs: model.splits[index].inverse(tf.concat([h, zs[index]], axis=-1))[0]

    links = [("top prior", alone(model.top_prior.inverse))] if model.top_prior is not None else []
    for index in reversed(range(len(model.levels))):
        if index < len(model.splits):
            links.append((f"split {index} (with latent {index})", split(index)))
        links += [(f"level {index}: {leaf.name}", alone(leaf.inverse))
                  for leaf in leaves(model.levels[index])]
    if model.logit is not None:
        links.append(("logit transform", alone(model.logit.inverse)))
    return links


def main():
    args = parse_args()
    loaded = RunFolder(args.workdir).load_model(None, args.weights)
    model = loaded.model
    if model.class_prior is not None:
        raise SystemExit("a class-conditional model draws its latents per class: not supported")
    images = model.sample(args.num_samples, temperature=args.temperature, seed=args.seed)
    finite = tf.reduce_all(tf.math.is_finite(tf.reshape(images, [args.num_samples, -1])), axis=1)
    bad = np.flatnonzero(~finite.numpy())
    record = {"command": " ".join(["python", "bench/inverse_growth.py", *sys.argv[1:]]),
              "checkpoint": loaded.checkpoint, "step": loaded.step, "weights": loaded.weights,
              "temperature": args.temperature, "seed": args.seed,
              "num_samples": args.num_samples, "not_finite": bad.tolist(), "layers": []}
    print(f"checkpoint {loaded.checkpoint} (step {loaded.step}, {loaded.weights} weights): "
          f"{bad.size} of {args.num_samples} samples at temperature {args.temperature:g} "
          f"(seed {args.seed}) are not finite: {bad.tolist()}")
    if bad.size:
        trace(model, args, bad, record["layers"])
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")


def trace(model, args, bad, rows):
    """Print the inverse of the samples ``bad``, link by link; append each link's figures to
    ``rows``."""
    zs = [tf.gather(args.temperature * tf.random.stateless_normal(
        [args.num_samples, *shape], seed=[args.seed, index]), bad)
        for index, shape in enumerate(model.latent_shapes)]
    print("largest |latent| per level: " + ", ".join(
        f"{float(tf.reduce_max(tf.abs(z))):.2f}" for z in zs))
    print("\n| inverse of | largest magnitude of its output | values not finite |\n"
          "| --- | ---: | ---: |")
    h = zs[-1]
    for name, link in inverse_links(model):
        h = link(h, zs)
        values = h.numpy()
        ok = np.isfinite(values)
        largest = float(np.max(np.abs(values[ok]))) if ok.any() else float("nan")
        rows.append({"inverse_of": name, "largest_magnitude": largest,
                     "not_finite": int((~ok).sum()), "values": int(values.size)})
        print(f"| {name} | {largest:.3g} | {int((~ok).sum())} of {values.size} |")


if __name__ == "__main__":
    main()
