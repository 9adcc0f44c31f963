"""Train the mnist preset once per mixing layer on the same data and budget; tabulate test bits/dim.

    python bench/compare_mixings.py --root=runs/compare --train_steps=600 --seeds=0,1,2

For each mixing and seed it runs, in fresh processes, ``train.py --preset=mnist --mixing=M
--seed=S`` with the recipe's defaults (for a given seed, every mixing sees the same data order
and number of images) and ``evaluate.py`` on all 10,000 MNIST test images (the weight average),
counts the run's loss spikes (glow_nxn/diagnostics.py), copies the evidence (config.json,
metrics.jsonl, eval.json, train_seconds.json) to ``--evidence/<mixing>-seed<S>/``, then prints a
markdown table and writes it to ``--output``. A run whose evaluation is already in its workdir
(``<root>/<mixing>-seed<S>``) is not retrained (delete the folder to redo it), so seeds can be
added one session at a time. The numbers are a fixed-budget comparison on a CPU, not converged
results.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
from glow_nxn import diagnostics  # noqa: E402
from glow_nxn.layers import MIXINGS  # noqa: E402
from glow_nxn.model import Glow  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402


def run(args):
    """Run a script of the repository; if it fails, it has printed its one-line error: exit with
    its code (75 after SIGTERM: the same command resumes), without this script's traceback."""
    code = subprocess.run([sys.executable, *args], cwd=REPO).returncode
    if code:
        sys.exit(code)


def parameter_count(workdir):
    """Every weight the run's model stores, trainable or fixed (Keras ``count_params``)."""
    return Glow(RunFolder(workdir).load_config().model).count_params()


def train_flags(args):
    warmup = [] if args.warmup_steps is None else [f"--warmup_steps={args.warmup_steps}"]
    return [f"--train_steps={args.train_steps}", *warmup,
            f"--per_replica_batch_size={args.batch_size}"]


def train_and_evaluate(workdir, mixing, seed, args):
    """Train and evaluate one (mixing, seed) unless its eval.json exists; copy its evidence;
    → (seconds, result, spikes)."""
    result_path = os.path.join(workdir, "eval.json")
    timing_path = os.path.join(workdir, "train_seconds.json")
    if not os.path.exists(result_path):
        started = time.time()
        run(["train.py", "--preset=mnist", f"--mixing={mixing}", f"--workdir={workdir}",
             *train_flags(args), f"--seed={seed}", "--eval_every_steps=0",
             "--log_every_steps=10"])
        with open(timing_path, "w") as handle:
            json.dump({"seconds": time.time() - started}, handle)
        run(["evaluate.py", f"--workdir={workdir}"])
    with open(result_path) as handle:
        result = json.load(handle)
    with open(timing_path) as handle:
        seconds = json.load(handle)["seconds"]
    records = RunFolder(workdir).read_metrics()
    spikes, _ = diagnostics.count_spikes(
        records, after_step=diagnostics.warmup_end(records))
    evidence = os.path.join(args.evidence, os.path.basename(workdir))
    os.makedirs(evidence, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "eval.json", "train_seconds.json"):
        shutil.copy(os.path.join(workdir, name), evidence)
    return seconds, result, spikes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/compare")
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--warmup_steps", type=int, default=None,
                        help="default: the recipe's (train.py's default)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--mixings", default=",".join(MIXINGS))
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds: each "
                        "seed sets the initial weights, the data order and the noise")
    parser.add_argument("--output", default=os.path.join(REPO, "docs", "MIXING_MNIST.md"))
    parser.add_argument("--evidence", default=os.path.join(REPO, "docs", "runs",
                                                           "compare_mixings"))
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    for mixing in args.mixings.split(","):
        runs = [train_and_evaluate(os.path.join(args.root, f"{mixing}-seed{seed}"), mixing, seed,
                                   args) for seed in seeds]
        params = parameter_count(os.path.join(args.root, f"{mixing}-seed{seeds[0]}"))
        rows.append((mixing, params, runs))

    images = args.train_steps * args.batch_size
    seed_columns = " | ".join(f"seed {seed}" for seed in seeds)
    if len(seeds) > 1:
        seed_columns += " | median (min–max)"
    flags = " ".join(train_flags(args))
    lines = [
        f"Each cell: `python train.py --preset=mnist --mixing=M {flags} --seed=S` then `python "
        f"evaluate.py`: test bits/dim ± standard error over all 10,000 test images (the weight "
        f"average), after {images:,} training images, and in brackets the run's loss spikes. "
        f"Run by `python bench/compare_mixings.py {flags} --seeds={args.seeds}`, finished "
        f"{datetime.date.today()} on a 2-core CPU; each run's evidence is in "
        f"`{os.path.relpath(args.evidence, REPO)}/<mixing>-seed<S>/`. The median over seeds is "
        f"robust to one loss spike. Train wall time (mean over seeds) includes start-up and the "
        f"data-dependent init, and depends on what else ran on the machine.",
        "",
        f"| mixing | parameters | train wall time (s) | {seed_columns} |",
        "| --- | ---: | ---: |" + " ---: |" * (len(seeds) + (len(seeds) > 1)),
    ]
    for mixing, params, runs in rows:
        seconds = sum(run_seconds for run_seconds, _, _ in runs) / len(runs)
        cells = " | ".join(f"{result['bits_per_dim']:.4f} ± {result['standard_error']:.4f} "
                           f"({spikes})" for _, result, spikes in runs)
        if len(runs) > 1:
            values = [result["bits_per_dim"] for _, result, _ in runs]
            cells += (f" | **{statistics.median(values):.3f}** "
                      f"({min(values):.3f}–{max(values):.3f})")
        lines.append(f"| {mixing} | {params:,} | {seconds:.0f} | {cells} |")
    table = "\n".join(lines)
    print(table)
    with open(args.output, "w") as handle:
        handle.write("# Mixing layers on MNIST at a fixed budget\n\n" + table + "\n")


if __name__ == "__main__":
    main()
