"""Plot train and test bits/dim against images seen, from a run's metrics.jsonl.

    python bench/plot_learning_curve.py --workdir=runs/mnist_long --output=docs/mnist_curve.png

``--workdir`` is a run folder or its evidence in ``docs/runs/<name>/`` (config.json and
metrics.jsonl). The curve is the run's surviving history
(:func:`glow_nxn.diagnostics.surviving_history`): steps a resume or a roll-back replayed are drawn
once, as the final weights took them, so a run carried between sessions is one curve. Images seen
= step × global batch (``--global_batch``, default: the per-replica batch size of config.json
times the processes of the run's last start). With ``--window_means=N`` it also prints the mean
train bits/dim of each N steps, and with ``--means_output`` writes them as JSON (the evidence
of such a table in the docs). Needs matplotlib (installed by install.sh).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from glow_nxn import diagnostics  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--global_batch", type=int, default=None)
    parser.add_argument("--title", default="glow_nxn, mnist preset, one 2-core CPU")
    parser.add_argument("--floor", type=float, default=None,
                        help="the independent-pixel floor to draw (bench/mnist_budget.py prints "
                             "it; 1.689 on MNIST's test split)")
    parser.add_argument("--window_means", type=int, default=0,
                        help="also print the mean train bits/dim of each this many steps")
    parser.add_argument("--means_output", default=None,
                        help="write the --window_means table to this JSON file")
    args = parser.parse_args()
    if args.means_output and not args.window_means:
        raise SystemExit("--means_output needs --window_means=N, the width of the windows")
    folder = RunFolder(args.workdir)
    records, config = folder.read_metrics(), folder.load_config()
    if not records or config is None:
        raise SystemExit(f"{args.workdir} has no config.json and metrics.jsonl: give --workdir a "
                         f"run folder or its evidence in docs/runs/<name>/")
    per_replica = config.train.per_replica_batch_size
    starts = [record for record in records if record.get("kind") == "start"]
    processes = starts[-1].get("processes", 1) if starts else 1
    batch = args.global_batch or per_replica * processes
    history = diagnostics.surviving_history(records)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for kind, label, style in (("train", "train (mean of each logging window)", "-"),
                               ("test", "test (10,000 images)", "o-")):
        points = [(r["step"], r["bits_per_dim"]) for r in history if r["kind"] == kind]
        if points:
            axes.plot([s * batch for s, _ in points], [v for _, v in points], style, label=label,
                      markersize=4, linewidth=1)
    axes.axhline(1.05, linestyle=":", color="grey", linewidth=1)
    axes.text(0, 1.04, "published (FFJORD's Table 2): Glow 1.05, RealNVP 1.06", va="top",
              fontsize=8, color="grey")
    if args.floor is not None:
        axes.axhline(args.floor, linestyle="--", color="firebrick", linewidth=1)
        axes.text(0, args.floor + 0.01, f"independent pixels {args.floor:.3f}", va="bottom",
                  fontsize=8, color="firebrick")
    axes.set_xlabel("training images seen")
    axes.set_ylabel("bits/dim")
    axes.set_ylim(0.95, 2.0)
    thousands = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k")
    axes.xaxis.set_major_formatter(thousands)
    axes.set_title(args.title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    steps = max((r["step"] for r in history), default=0)
    print(f"wrote {args.output}: {steps:,} steps, {steps * batch:,} images")
    if args.window_means:
        means = diagnostics.window_means(history, args.window_means)
        print("| steps | train bits/dim |\n| --- | ---: |")
        for first, last, mean in means:
            print(f"| {first:,}–{last:,} | {mean:.4f} |")
        if args.means_output:
            with open(args.means_output, "w") as handle:
                json.dump({"command": "python " + " ".join(sys.argv), "width": args.window_means,
                           "windows": [{"first_step": first, "last_step": last,
                                        "train_bits_per_dim": mean}
                                       for first, last, mean in means]}, handle, indent=1)
                handle.write("\n")
    test = [r for r in history if r["kind"] == "test"]
    if test:
        print(f"last test bits/dim {test[-1]['bits_per_dim']:.4f} at step {test[-1]['step']:,}")


if __name__ == "__main__":
    main()
