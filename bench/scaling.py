"""Benchmark of data-parallel scaling (a measurement, not a test).

    python bench/scaling.py [--steps 80] [--window 10] [--output docs/SCALING.md]

Trains the mnist preset with train.py, as a user runs it: one process (``python train.py``), then
two (``horovodrun -np 2 --gloo python train.py``), each with ``--per_replica_batch_size`` images
per process per step (weak scaling: two processes take a global batch twice as large), for one
warm-up window (tracing, filling the shuffle buffer) and then ``--steps`` measured steps. Throughput
is the total images of the measured windows over their total time, from train.py's progress lines
(each reports its window's images/s); scaling efficiency is ``rate(N) / (N · rate(1))``. With
``--one_thread`` a third row runs the two processes with one TensorFlow thread each.

Prints a markdown table and writes it, with the command, machine, load and date, to ``--output``.
"""
import argparse
import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
from glow_nxn import data  # noqa: E402

PROGRESS = re.compile(r"step\s+(\d+)\s+bits/dim\s+\S+\s+([0-9.]+) images/s")
HOROVODRUN = pathlib.Path(sys.executable).parent / "horovodrun"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80, help="measured steps per run")
    parser.add_argument("--window", type=int, default=10, help="steps per progress window; the "
                        "first window is the warm-up")
    parser.add_argument("--per_replica_batch_size", type=int, default=64)
    parser.add_argument("--one_thread", action="store_true", help="also run 2 processes with "
                        "one TensorFlow thread each")
    parser.add_argument("--data_dir", default=None, help="tfds data_dir (default: a temporary "
                        "one, MNIST prepared from data/mnist)")
    parser.add_argument("--output", default=str(REPO / "docs" / "SCALING.md"))
    return parser.parse_args()


def images_per_second(output, window):
    """Total images over total time of the windows after the first: the harmonic mean of their
    rates (the windows are equal in steps)."""
    rates = [float(rate) for step, rate in PROGRESS.findall(output) if int(step) > window]
    if not rates:
        raise RuntimeError(f"no progress lines after the warm-up window in:\n{output[-2000:]}")
    return len(rates) / sum(1.0 / rate for rate in rates)


def train(processes, args, data_dir, one_thread=False):
    """images/s of one run of train.py with ``processes`` processes."""
    env = dict(os.environ)
    for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        env.pop(name, None)
    if one_thread:
        env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
    launcher = ([] if processes == 1 else
                [str(HOROVODRUN), "-np", str(processes), "--gloo"])
    with tempfile.TemporaryDirectory() as run:
        command = [*launcher, sys.executable, str(REPO / "train.py"), "--preset=mnist",
                   f"--workdir={run}", f"--data_dir={data_dir}",
                   f"--per_replica_batch_size={args.per_replica_batch_size}",
                   f"--train_steps={args.window + args.steps}",
                   f"--log_every_steps={args.window}", "--eval_every_steps=0",
                   "--checkpoint_every_steps=1000000"]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return images_per_second(result.stdout, args.window)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return f"{platform.node()}, {os.cpu_count()} cores ({cpu}), {platform.platform()}"


def load():
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main():
    args = parse_args()
    started = datetime.datetime.now().astimezone()
    temporary = None
    data_dir = args.data_dir
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory()
        data_dir = temporary.name
    data.prepare("mnist", data_dir=data_dir)
    load_before = load()
    configurations = [("1 process (python train.py)", 1, False),
                      ("2 processes (horovodrun -np 2 --gloo)", 2, False)]
    if args.one_thread:
        configurations.append(("2 processes, 1 TensorFlow thread each", 2, True))
    rows, single = [], None
    for label, processes, one_thread in configurations:
        rate = train(processes, args, data_dir, one_thread)
        single = single or rate
        efficiency = rate / (processes * single)
        rows.append(f"| {label} | {processes * args.per_replica_batch_size} | {rate:.1f} | "
                    f"{rate / processes:.1f} | {efficiency:.0%} |")
        print(rows[-1], flush=True)
    table = "\n".join(["| configuration | global batch | images/s | images/s per process | "
                       "scaling efficiency |", "|---|---:|---:|---:|---:|", *rows])
    command = "python bench/scaling.py " + " ".join(sys.argv[1:])
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60
    one_thread_note = ("\nThe one-thread row runs each process with one TensorFlow thread\n"
                       "(TF_NUM_INTRAOP_THREADS = TF_NUM_INTEROP_THREADS = 1): no\n"
                       "oversubscription, but on a loaded machine such processes get a small\n"
                       "share of the cores.\n" if args.one_thread else "")
    text = f"""# Data-parallel scaling on this machine

`{command.strip()}`, started {started:%Y-%m-%d %H:%M %Z}, took {minutes:.0f} min.
Machine: {machine()}. Load average (1, 5, 15 min) before: {load_before}; after: {load()}.

The mnist preset (28×28×1, L = 2, K = 8, width 128), trained by train.py with
--per_replica_batch_size={args.per_replica_batch_size}: one warm-up window of {args.window} steps,
then {args.steps} measured steps. Throughput is total images over total time of the measured
windows; scaling efficiency is images/s of N processes over N × images/s of one.

{table}

How to read it: one process's TensorFlow already uses both cores (its intra-op thread pool), so
on this machine a second process brings no new compute, only a second input pipeline, an
allreduce of every gradient through Gloo (TCP on loopback) and more threads contending: about
50% is the most to expect here (the same images/s for twice the processes). Other jobs ran on
these cores during the measurement (the load average above, on {os.cpu_count()} cores), and a job
of two processes then receives a larger share of the contended cores than a job of one, which
can lift the 2-process rows above that. These numbers describe this shared machine, not how
training scales on GPUs with NCCL, which needs a GPU machine to measure.
{one_thread_note}"""
    pathlib.Path(args.output).write_text(text)
    print(f"\n{table}\n\nwritten to {args.output}")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
