"""Benchmark of training, sampling and evaluation throughput on this machine (a measurement).

    python bench/throughput.py [--preset mnist|r1|<preset>] [--rows default|mixings|widths]
                               [--steps 30] [--output docs/runs/throughput/<name>.md]

Each row builds the real :class:`glow_nxn.training.Trainer` for one variant of ``--preset`` and
times three compiled functions on fixed inputs, each after ``--warmup`` untimed calls (tracing,
XLA compilation), so the input pipeline is taken out:

* **train**: the training step (forward, log-det, gradients, clipping, Adam, weight average);
* **sample**: ``model.sample(batch, 0.7)`` (every level's inverse, as sample.py draws);
* **evaluate**: ``model.bits_per_dim(uint8 images, noise)`` (the forward pass evaluate.py runs).

A last row times the input pipeline alone (dequantised, shuffled MNIST batches from
``data.training_stream``), so the table shows whether data could ever be the bottleneck. Each time
is the median over ``--repeats`` windows of ``--steps`` calls (the least disturbed by other jobs).

``--preset=r1`` is issue 10's reference shape R1 (32×32×3, K=8, L=3, coupling width 128, affine
coupling, ``conv1x1_lu``; use ``--batch=16`` as the issue does); any other name is a preset of
glow_nxn.config. ``--rows=mixings`` times every mixing and adds each one's training time as a
multiple of ``conv1x1``'s, against issue 10's bound of 1.15 (``emerging`` and ``periodic`` are
exempt: they are stated, not bounded).

Speed is reported as images/s and as a share of this machine's float32 peak, measured **in the
same run** (a 2048×2048 matmul): a machine's CPU model can change between sessions, so only
ratios measured side by side compare. FLOPs per image are counted by TensorFlow's profiler on the
frozen graph of each function, from the model's own layer shapes: nothing is typed in. The
profiler counts nothing inside loops, so Emerging's sampling (a sequential inverse in a
``tf.while_loop``) shows a share too low to compare. The
1-minute load average before and after is printed with the table; above about 0.5 per core
another job shared the machine.

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
from glow_nxn.config import (DataConfig, ModelConfig, RunConfig, TrainConfig,  # noqa: E402
                             preset)
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


# Issue 10's reference shape R1; the issue times it at batch 16.
R1 = ModelConfig(image_shape=(32, 32, 3), levels=3, steps_per_level=8, hidden_width=128,
                 mixing="conv1x1_lu", coupling="affine")
# Issue 10: every mixing's training step within 15% of conv1x1's, except these two.
MIXING_BOUND, MIXING_REFERENCE, MIXING_EXEMPT = 1.15, "--mixing=conv1x1", ("emerging", "periodic")
TEMPERATURE = 0.7


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


def graph_flops(function, *specs):
    """FLOPs of one call of ``function(*specs)``, counted by the profiler on its graph with the
    weights frozen in as constants (convolutions and matmuls dominate; every op TensorFlow
    registers a count for is included)."""
    concrete = tf.function(function).get_concrete_function(*specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def train_flops_per_image(model, batch=8, recompute=False):
    """FLOPs of one training step per image (forward pass, log-det, gradients)."""
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.log_prob(x, recompute=recompute))
        return tape.gradient(loss, model.trainable_variables)

    spec = tf.TensorSpec([batch, *model.config.image_shape], tf.float32)
    return graph_flops(gradients, spec) / batch


def row_measurements(model_config, train_overrides, args, folder):
    """``{"train"|"sample"|"evaluate": (seconds per call, FLOPs per image)}`` for one row."""
    train = TrainConfig(per_replica_batch_size=args.batch, **train_overrides)
    trainer = training.Trainer(RunConfig(model=model_config, data=DataConfig(), train=train),
                               folder, log=lambda line: None)
    model, shape = trainer.model, (args.batch, *model_config.image_shape)
    x = tf.random.stateless_uniform(shape, seed=[0, 1]) - 0.5
    model.data_dependent_init(x)
    trainer.optimizer.learning_rate = 1e-4
    images = tf.random.stateless_uniform(shape, [0, 2], 0, 2 ** model_config.n_bits, tf.int32)
    images = tf.cast(images, tf.uint8)
    noise = tf.random.stateless_uniform(shape, seed=[0, 3])
    def draw():
        return model.sample(args.batch, TEMPERATURE, seed=0)

    def score():
        return model.bits_per_dim(images, noise)

    jit = train.jit_compile
    calls = {"train": lambda: trainer._train_step(x)[0],
             "sample": tf.function(draw, jit_compile=jit),
             "evaluate": tf.function(score, jit_compile=jit)}
    flops_per_image = {"train": train_flops_per_image(model),
                       "sample": graph_flops(draw) / args.batch,
                       "evaluate": graph_flops(score) / args.batch}
    measured = {}
    for name, call in calls.items():
        def step():
            call().numpy()  # wait for the call to finish

        for _ in range(args.warmup):
            step()
        measured[name] = (time_steps(step, args.steps, args.repeats), flops_per_image[name])
    return measured


def pipeline_seconds(model_config, args, data_dir):
    """Seconds per batch of the MNIST training stream alone (prepared from data/mnist)."""
    config = DataConfig(dataset="mnist", data_dir=data_dir,
                        manual_dir=str(REPO / "data" / "mnist"))
    stream = iter(data.training_stream(config, Replicas(), image_shape=(28, 28, 1),
                                       n_bits=model_config.n_bits, batch_size=args.batch, seed=0))
    for _ in range(args.warmup):
        next(stream)
    return time_steps(lambda: next(stream).numpy(), args.steps, args.repeats)


def model_config(name):
    return R1 if name == "r1" else preset(name)


def mixing_verdicts(rows):
    """``{label: "1.07× ✓"}``: each mixing's training time over conv1x1's, against the bound."""
    times = {label: measured["train"][0] for label, measured in rows}
    if MIXING_REFERENCE not in times:
        return {}
    verdicts = {}
    for label, seconds in times.items():
        ratio = seconds / times[MIXING_REFERENCE]
        exempt = any(label == f"--mixing={name}" for name in MIXING_EXEMPT)
        mark = "stated" if exempt else ("within" if ratio <= MIXING_BOUND else "over")
        verdicts[label] = f"{ratio:.2f}× ({mark})"
    return verdicts


def main():
    args = parse_args()
    base = model_config(args.preset)
    load_before = os.getloadavg()[0]
    peak = matmul_peak_flops()
    print(f"float32 matmul peak: {peak / 1e9:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, model_overrides, train_overrides) in enumerate(ROWS[args.rows]):
            config = dataclasses.replace(base, **model_overrides)
            measured = row_measurements(config, train_overrides, args,
                                        os.path.join(tmp, str(index)))
            rows.append((label, measured))
            print(label + ": " + ", ".join(f"{name} {args.batch / seconds:.0f} images/s"
                                           for name, (seconds, _) in measured.items()),
                  flush=True)
        pipeline = (pipeline_seconds(base, args, os.path.join(tmp, "tfds"))
                    if base.image_shape == (28, 28, 1) else None)
    verdicts = mixing_verdicts(rows)
    lines = [f"`{args.preset}` ({base.image_shape[0]}×{base.image_shape[1]}×"
             f"{base.image_shape[2]}, K={base.steps_per_level}, L={base.levels}, width "
             f"{base.hidden_width}), batch {args.batch}, {args.steps} calls × {args.repeats} "
             f"windows per cell (median), after {args.warmup} untimed; float32 matmul peak "
             f"measured in the same run: {peak / 1e9:.0f} GFLOP/s",
             "",
             "| variant | train images/s | share of the peak | sample images/s | share | "
             "evaluate images/s | share | MFLOP per image: train / sample / evaluate |"
             + (" train time ÷ conv1x1's (bound 1.15) |" if verdicts else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
             + (" ---: |" if verdicts else "")]
    for label, measured in rows:
        cells = []
        for name in ("train", "sample", "evaluate"):
            seconds, flops = measured[name]
            rate = args.batch / seconds
            cells += [f"{rate:.0f}", f"{rate * flops / peak:.0%}"]
        flop_cells = " / ".join(f"{measured[name][1] / 1e6:.0f}"
                                for name in ("train", "sample", "evaluate"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {flop_cells} |"
                     + (f" {verdicts[label]} |" if verdicts else ""))
    if pipeline is not None:
        lines.append(f"| input pipeline alone (MNIST) | {args.batch / pipeline:.0f} | — | — | — "
                     "| — | — | — |" + (" — |" if verdicts else ""))
    publish(lines, load_before, args.output)


def publish(lines, load_before, output):
    """Print the table ``lines`` with the machine, the load average and the date under it; with
    ``output`` also write it to that file, under the command that made it."""
    lines = [*lines, "", f"1-minute load average {load_before:.2f} before, "
             f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores "
             f"({platform.processor() or platform.machine()}); {datetime.date.today()}."]
    table = "\n".join(lines)
    print()
    print(table)
    if output:
        command = f"python bench/{pathlib.Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])
        pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(output).write_text(f"{command}\n\n{table}\n")


if __name__ == "__main__":
    main()
