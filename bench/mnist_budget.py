"""Train the mnist preset for a budget, evaluate all 10,000 test images, compare with the floor.

    python bench/mnist_budget.py --name=main_job --minutes=6
    python bench/mnist_budget.py --name=ablation_constant_s1 --steps=1800 --seed=1 \\
        -- --lr_schedule=constant

Runs train.py (fresh processes, one CPU process) on MNIST for ``--minutes`` of training time or
``--steps`` steps, with any train.py flags given after ``--``; then evaluate.py with the weight
average and with the raw weights. It computes the independent-pixel floor from the data itself
(glow_nxn/diagnostics.py), counts loss spikes in the run's metrics.jsonl (running mean of 50 steps
more than 0.3 bits/dim above its running minimum, after the warm-up), prints one line, copies the
evidence to ``docs/runs/<name>/`` (config.json, metrics.jsonl, both eval JSONs, run.json with the
command, commit, machine and date) and adds a row to the table of docs/RESULTS.md. A run whose
folder ``runs/budget/<name>`` exists is resumed, so the budget is the run's total.

A run longer than one machine's life: with ``--carry_dir=DIR`` (in the repository, to be
committed), a run folder that does not exist yet starts as a copy of the run carried in DIR, and
when training stops, finished or stopped by SIGTERM (which reaches train.py through this script),
DIR is replaced by the run's newest checkpoint, config and metrics (RunFolder.carry). The same
command on the next machine goes on from there; the schedule is the one of the first start.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import numpy as np  # noqa: E402

from glow_nxn import data, diagnostics  # noqa: E402
from glow_nxn.distributed import Replicas  # noqa: E402
from glow_nxn.config import DataConfig  # noqa: E402
from glow_nxn.run_folder import RunFolder  # noqa: E402

RESULTS = os.path.join(REPO, "docs", "RESULTS.md")
TABLE_END = "<!-- mnist_budget rows end -->"


def split_images(split, data_dir=None):
    dataset = data.evaluation_split(DataConfig(dataset="mnist", data_dir=data_dir), Replicas(),
                                    image_shape=(28, 28, 1), batch_size=10_000, split=split)
    return np.concatenate([batch["image"].numpy() for batch in dataset])


def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {model}"


def commit():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                          capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "glow_nxn", "train.py",
                            "flags.py", "evaluate.py"], cwd=REPO, text=True,
                           capture_output=True).stdout.strip()
    return head + ("+uncommitted" if dirty else "")


def run(args, on_exit=None):
    """Run a script of the repository; if it fails, it has printed its one-line error: exit with
    its code (75 after SIGTERM: the same command resumes), without this script's traceback.
    SIGTERM is passed on to it; Ctrl-C reaches it from the terminal, so this script waits for it
    to stop. ``on_exit()`` runs when it has ended, whatever its code."""
    child = subprocess.Popen([sys.executable, *args], cwd=REPO)
    handlers = {signal.SIGTERM: lambda number, frame: child.send_signal(number),
                signal.SIGINT: lambda number, frame: None}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        code = child.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if on_exit is not None:
        on_exit()
    if code:
        sys.exit(code)


def carry(workdir, carry_dir):
    """Replace ``carry_dir`` by the newest checkpoint of the run in ``workdir``, if it has one."""
    folder = RunFolder(workdir)
    if folder.latest_checkpoint() is None:
        print(f"{workdir} has no checkpoint yet: {carry_dir} is left as it was", flush=True)
        return
    step = folder.carry(carry_dir)
    print(f"carried step {step} of {workdir} into {carry_dir}: commit it, and the same command "
          f"goes on from there on another machine", flush=True)


def add_row(row):
    with open(RESULTS) as handle:
        text = handle.read()
    if TABLE_END not in text:
        raise SystemExit(f"{RESULTS} has no '{TABLE_END}' line to add the row before")
    with open(RESULTS, "w") as handle:
        handle.write(text.replace(TABLE_END, row + "\n" + TABLE_END))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the run's name (folder, docs row)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training time budget")
    budget.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=os.path.join(REPO, "runs", "budget"))
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--no_docs", action="store_true", help="print only; write no docs")
    parser.add_argument("--carry_dir", default=None,
                        help="a run carried between machines: start from it, replace it at stop")
    parser.add_argument("train_flags", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()

    workdir = os.path.join(args.root, args.name)
    carry_dir = args.carry_dir and os.path.abspath(args.carry_dir)
    budget_flags = ([f"--max_train_seconds={args.minutes * 60}", "--train_steps=100000000"]
                    if args.minutes else [f"--train_steps={args.steps}"])
    data_flags = [f"--data_dir={args.data_dir}"] if args.data_dir else []
    train = ["train.py", "--preset=mnist", "--dataset=mnist", f"--workdir={workdir}",
             f"--seed={args.seed}", "--log_every_steps=10", "--eval_every_steps=0",
             "--checkpoint_every_steps=500", *budget_flags, *data_flags, *args.train_flags]
    started, code = datetime.datetime.now(datetime.timezone.utc), commit()
    if carry_dir and not os.path.exists(workdir) and os.path.isdir(carry_dir):
        shutil.copytree(carry_dir, workdir)
        print(f"{workdir}: resuming the run carried in {carry_dir}", flush=True)
    run(train, on_exit=(lambda: carry(workdir, carry_dir)) if carry_dir else None)
    evaluations = {}
    for weights in ("ema", "raw"):
        output = os.path.join(workdir, f"eval_{weights}.json")
        run(["evaluate.py", f"--workdir={workdir}", *data_flags, f"--weights={weights}",
             f"--output={output}", "--batch_size=1000"])
        with open(output) as handle:
            evaluations[weights] = json.load(handle)

    floor = diagnostics.independent_pixel_bits_per_dim(split_images("train", args.data_dir),
                                                       split_images("test", args.data_dir))
    records = RunFolder(workdir).read_metrics()
    spikes, recoveries = diagnostics.count_spikes(
        records, after_step=diagnostics.warmup_end(records))
    train_records = [r for r in records if r["kind"] == "train"]
    steps, seconds = train_records[-1]["step"], train_records[-1]["seconds"]
    ema, raw = evaluations["ema"], evaluations["raw"]
    summary = {
        "name": args.name, "command": " ".join(["python", *train]), "commit": code,
        "machine": machine(), "date": started.strftime("%Y-%m-%d"), "steps": steps,
        "train_seconds": seconds, "independent_pixel_floor": floor, "spikes": spikes,
        "recoveries": recoveries, "test_bits_per_dim_ema": ema["bits_per_dim"],
        "test_bits_per_dim_raw": raw["bits_per_dim"], "standard_error": ema["standard_error"],
        "flags": args.train_flags, "seed": args.seed}
    print(f"{args.name}: {steps} steps in {seconds / 60:.1f} min; test bits/dim "
          f"{ema['bits_per_dim']:.4f} ± {ema['standard_error']:.4f} (ema weights, "
          f"{ema['weights']}), {raw['bits_per_dim']:.4f} (raw); independent-pixel floor "
          f"{floor:.4f}; spikes {spikes}, recoveries {recoveries}", flush=True)
    if args.no_docs:
        return
    evidence = os.path.join(REPO, "docs", "runs", args.name)
    os.makedirs(evidence, exist_ok=True)
    for name in ("config.json", "metrics.jsonl", "eval_ema.json", "eval_raw.json"):
        shutil.copy(os.path.join(workdir, name), evidence)
    with open(os.path.join(evidence, "run.json"), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
        handle.write("\n")
    budget_text = f"{args.minutes:g} min" if args.minutes else f"{args.steps} steps"
    add_row(f"| {args.name} | {' '.join(args.train_flags) or '(defaults)'} | {args.seed} | "
            f"{budget_text} | {steps} | {ema['bits_per_dim']:.4f} ± {ema['standard_error']:.4f} "
            f"| {raw['bits_per_dim']:.4f} | {floor:.4f} | {spikes} | {recoveries} | "
            f"{summary['commit']} |")


if __name__ == "__main__":
    main()
