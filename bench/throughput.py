"""Benchmark of training throughput on this machine (a measurement, not a test).

    python bench/throughput.py [--preset mnist] [--steps 30] [--rows default|mixings|widths]
                               [--output docs/PERFORMANCE.md]

Each row builds the real :class:`glow_nxn.training.Trainer` for one variant of ``--preset`` and
times its compiled training step (forward, log-det, gradients, clipping, Adam, weight average) on
a fixed batch of noise, after ``--warmup`` untimed steps (tracing, XLA compilation): the model's
own cost with the input pipeline taken out. A last row times the input pipeline alone
(dequantised, shuffled MNIST batches from ``data.training_stream``), so the table shows whether
data could ever be the bottleneck. Each time is the median over ``--repeats`` windows of
``--steps`` steps (the least disturbed by other jobs).

Speed is reported as images/s, as GFLOP/s and as a share of this machine's float32 peak,
measured **in the same run** (a 2048×2048 matmul): a machine's CPU model can change between
sessions, so only ratios measured side by side compare. FLOPs per trained image are counted by
TensorFlow's profiler on the frozen graph of one training step (forward, log-dets and every
gradient op it registers a count for; convolutions and matmuls, which dominate), from the model's
own layer shapes: nothing is typed in. The 1-minute load average before and after is printed
with the table; above about 0.5 per core another job shared the machine.

Prints a markdown table; with ``--output`` it also writes it, with the command, date, machine and
load, to that file.
"""
import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2)

from glow_nxn import data, training  # noqa: E402
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset  # noqa: E402
from glow_nxn.distributed import Replicas  # noqa: E402

# Variants of the preset, each a (label, model overrides, train overrides) triple.
ROWS = {
    "default": [
        ("preset as is", {}, {}),
        ("--jit_compile (XLA)", {}, {"jit_compile": True}),
        ("--mixing=nxn_lu", {"mixing": "nxn_lu"}, {}),
        ("--mixing=nxn_lu --jit_compile", {"mixing": "nxn_lu"}, {"jit_compile": True}),
        ("--mixing=conv1x1_lu", {"mixing": "conv1x1_lu"}, {}),
        ("--coupling=additive", {"coupling": "additive"}, {}),
        ("--ema_decay=0 --grad_clip_norm=0", {}, {"ema_decay": 0.0, "grad_clip_norm": 0.0}),
    ],
    "mixings": [(f"--mixing={name}", {"mixing": name}, {})
                for name in ("nxn", "nxn_lu", "conv1x1", "conv1x1_lu", "reverse", "shuffle",
                             "shifted_nxn", "emerging", "periodic")],
    "widths": [(f"--hidden_width={w} --steps_per_level={k}",
                {"hidden_width": w, "steps_per_level": k}, {})
               for w, k in ((64, 8), (128, 4), (128, 8), (256, 8), (128, 16))],
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--rows", default="default", choices=sorted(ROWS))
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    return parser.parse_args()


def time_steps(step, steps, repeats):
    """Median seconds per step over ``repeats`` windows of ``steps`` calls of ``step()``."""
    windows = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        windows.append((time.perf_counter() - start) / steps)
    return statistics.median(windows)


def matmul_peak_flops(size=2048, repeats=20):
    """float32 FLOP/s of a compiled ``size×size`` matmul: this machine's practical peak."""
    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2])
    product = tf.function(lambda: tf.matmul(a, b))
    product().numpy()
    seconds = time_steps(lambda: product().numpy(), repeats, 3)
    return 2 * size**3 / seconds


def train_flops_per_image(model, batch=8, recompute=False):
    """FLOPs of one training step per image (forward pass, log-det, gradients), counted by the
    profiler on the step's graph with the weights frozen in as constants."""
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.log_prob(x, recompute=recompute))
        return tape.gradient(loss, model.trainable_variables)

    spec = tf.TensorSpec([batch, *model.config.image_shape], tf.float32)
    graph = convert_variables_to_constants_v2(
        tf.function(gradients).get_concrete_function(spec)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops / batch


def train_step_seconds(model_config, train_overrides, args, folder):
    """Seconds per compiled training step of ``model_config`` on a batch of noise."""
    train = TrainConfig(per_replica_batch_size=args.batch, **train_overrides)
    trainer = training.Trainer(RunConfig(model=model_config, data=DataConfig(), train=train),
                               folder, log=lambda line: None)
    x = tf.random.stateless_uniform((args.batch, *model_config.image_shape), seed=[0, 1]) - 0.5
    trainer.model.data_dependent_init(x)
    trainer.optimizer.learning_rate = 1e-4

    def step():
        loss, _, _ = trainer._train_step(x)
        loss.numpy()  # wait for the step to finish

    for _ in range(args.warmup):
        step()
    return time_steps(step, args.steps, args.repeats), train_flops_per_image(trainer.model)


def pipeline_seconds(model_config, args, data_dir):
    """Seconds per batch of the MNIST training stream alone (prepared from data/mnist)."""
    config = DataConfig(dataset="mnist", data_dir=data_dir,
                        manual_dir=str(REPO / "data" / "mnist"))
    stream = iter(data.training_stream(config, Replicas(), image_shape=(28, 28, 1),
                                       n_bits=model_config.n_bits, batch_size=args.batch, seed=0))
    for _ in range(args.warmup):
        next(stream)
    return time_steps(lambda: next(stream).numpy(), args.steps, args.repeats)


def main():
    args = parse_args()
    base = preset(args.preset)
    load_before = os.getloadavg()[0]
    peak = matmul_peak_flops()
    print(f"float32 matmul peak: {peak / 1e9:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, model_overrides, train_overrides) in enumerate(ROWS[args.rows]):
            config = dataclasses.replace(base, **model_overrides)
            seconds, flops = train_step_seconds(config, train_overrides, args,
                                                os.path.join(tmp, str(index)))
            rows.append((label, seconds, flops))
            print(f"{label}: {args.batch / seconds:.0f} images/s", flush=True)
        pipeline = (pipeline_seconds(base, args, os.path.join(tmp, "tfds"))
                    if base.image_shape == (28, 28, 1) else None)
    load_after = os.getloadavg()[0]
    lines = [f"`{args.preset}` preset, batch {args.batch}, {args.steps} steps × {args.repeats} "
             f"windows per row (median), after {args.warmup} untimed; float32 matmul peak "
             f"measured in the same run: {peak / 1e9:.0f} GFLOP/s",
             "",
             "| variant | ms/step | images/s | MFLOP per image | GFLOP/s | share of the peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, seconds, flops in rows:
        rate = args.batch / seconds
        lines.append(f"| {label} | {1000 * seconds:.1f} | {rate:.0f} | {flops / 1e6:.0f} | "
                     f"{rate * flops / 1e9:.1f} | {rate * flops / peak:.0%} |")
    if pipeline is not None:
        lines.append(f"| input pipeline alone (MNIST) | {1000 * pipeline:.1f} | "
                     f"{args.batch / pipeline:.0f} | — | — | — |")
    lines += ["", f"1-minute load average {load_before:.2f} before, {load_after:.2f} after, on "
              f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
              f"{datetime.date.today()}."]
    table = "\n".join(lines)
    print()
    print(table)
    if args.output:
        command = "python bench/throughput.py " + " ".join(sys.argv[1:])
        pathlib.Path(args.output).write_text(f"{command}\n\n{table}\n")


if __name__ == "__main__":
    main()
