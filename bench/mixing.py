"""Benchmark of the mixing layers (a measurement, not a test).

    python bench/mixing.py [--quick] [--steps_per_level K] [--output docs/MIXING_BENCH.md]

(a) Every layer of ``glow_nxn.layers.MIXINGS``, and a standard (non-invertible) 3×3
    ``Conv2D`` of the same channels for reference, at C ∈ {12, 48} and H×W ∈ {32², 64²}, batch
    16: trainable parameters, forward time (output and log-det) and inverse time, each the median
    over repeated calls of a ``tf.function`` after a warm-up call (tracing excluded).
(b) The cifar10 preset's shape (32×32×3, L = 3, K = ``--steps_per_level``) with coupling width
    32, per mixing: the median time of ``Glow.sample(64)`` inside ``tf.function``.

Prints markdown tables and writes them, with the command, machine and date, to ``--output``.
"""
import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `python bench/mixing.py` from a checkout: the repository root holds the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import tensorflow as tf  # noqa: E402

from glow_nxn.config import preset  # noqa: E402
from glow_nxn.keras import keras  # noqa: E402
from glow_nxn.layers import MIXINGS  # noqa: E402
from glow_nxn.model import Glow  # noqa: E402

BATCH = 16
CHANNELS = (12, 48)
SIZES = (32, 64)
STANDARD = "conv2d 3×3 (not invertible)"


def median_seconds(fn, arg, repeats):
    """Median wall time of ``fn(arg)`` over ``repeats`` calls, after one warm-up call."""
    fn(arg)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trainable_parameters(layer):
    """Trainable scalars (``count_params`` would also count fixed permutations and signs)."""
    return sum(int(tf.size(v)) for v in layer.trainable_weights)


def time_layer(name, channels, size, repeats):
    """``(params, forward s, inverse s or None)`` of one layer on a ``[16, size, size, C]``."""
    x = tf.random.stateless_normal([BATCH, size, size, channels], seed=[0, 1])
    if name == STANDARD:
        conv = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)
        conv.build(x.shape)
        return trainable_parameters(conv), median_seconds(tf.function(conv), x, repeats), None
    layer = MIXINGS[name](0)
    forward = tf.function(layer.forward)
    inverse = tf.function(layer.inverse)
    y, _ = forward(x)
    return (trainable_parameters(layer), median_seconds(forward, x, repeats),
            median_seconds(inverse, y, repeats))


def layer_tables(repeats):
    """One markdown table per channel count (part a)."""
    tables = []
    for channels in CHANNELS:
        header = ["layer", "trainable params"]
        for size in SIZES:
            header += [f"forward {size}² (ms)", f"inverse {size}² (ms)"]
        rows = []
        for name in [*MIXINGS, STANDARD]:
            cells = [name]
            for size in SIZES:
                params, forward, inverse = time_layer(name, channels, size, repeats)
                if len(cells) == 1:
                    cells.append(f"{params:,}")
                cells += [f"{1e3 * forward:.1f}",
                          "n/a" if inverse is None else f"{1e3 * inverse:.1f}"]
            rows.append(cells)
            print(f"  C={channels} {name}: {cells[1:]}", file=sys.stderr, flush=True)
        title = f"**(a) C = {channels}, batch {BATCH}** (median of {repeats} calls)"
        tables.append(title + "\n\n" + markdown(header, rows))
    return tables


def sampling_table(steps_per_level, repeats):
    """Time to sample 64 images of the cifar10 preset's shape per mixing (part b)."""
    rows = []
    for name in MIXINGS:
        config = preset("cifar10", hidden_width=32, steps_per_level=steps_per_level, mixing=name)
        model = Glow(config)
        sample = tf.function(lambda n: model.sample(n, seed=0))
        seconds = median_seconds(sample, 64, repeats)
        rows.append([name, f"{trainable_parameters(model):,}", f"{seconds:.2f}"])
        print(f"  sample {name}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    title = (f"**(b) Sampling 64 images**, shape {config.image_shape}, L = {config.levels}, "
             f"K = {config.steps_per_level}{'' if steps_per_level == 32 else ' (preset: 32)'}, "
             f"coupling width {config.hidden_width}, {config.coupling} coupling "
             f"(median of {repeats} calls)")
    return title + "\n\n" + markdown(["mixing", "trainable params", "sample 64 (s)"], rows)


def cpu_model():
    """The CPU's model name (Linux), else the architecture."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats (3 and 2 instead of 10 and 3)")
    parser.add_argument("--steps_per_level", type=int, default=32,
                        help="K of the sampling benchmark (the cifar10 preset has 32)")
    parser.add_argument("--output", default=str(pathlib.Path(__file__).resolve().parent.parent
                                                / "docs" / "MIXING_BENCH.md"))
    args = parser.parse_args()
    layer_repeats, sample_repeats = (3, 2) if args.quick else (10, 3)

    command = "python bench/mixing.py " + " ".join(sys.argv[1:])
    gpus = len(tf.config.list_physical_devices("GPU"))
    machine = (f"{cpu_model()}, {os.cpu_count()} CPU cores, {gpus} GPU, "
               f"TensorFlow {tf.__version__}")
    # The cores may be shared: the load average says how much else was running.
    load_at_start = os.getloadavg()[0]
    tables = [*layer_tables(layer_repeats), sampling_table(args.steps_per_level, sample_repeats)]
    sections = [
        "# Mixing-layer benchmark",
        f"Command: `{command.strip()}`  \nMachine: {machine}  \n"
        f"Date: {datetime.date.today().isoformat()}  \n"
        f"1-minute load average: {load_at_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end",
        *tables,
    ]
    text = "\n\n".join(sections) + "\n"
    print(text)
    pathlib.Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
