"""Why --jit_compile slows training on a CPU: one coupling-network convolution with and without XLA.

    python bench/xla_conv.py [--batch 64] [--rounds 7] [--steps 20]

The mnist preset's training step runs at about half its speed under XLA (docs/PERFORMANCE.md).
Its time goes to the coupling networks' 3×3 convolutions (the profile there: over 80% of the op
time in their three kernels). This times exactly those kernels at the preset's shapes, alone: a
3×3 convolution with bias and ReLU, 128 → 128 channels, on the ``[B, 14, 14, 128]`` and
``[B, 7, 7, 128]`` maps of its two levels, forward and backward (the gradients of the input and
the kernel), traced once plain and once with ``jit_compile=True``. Plain, TensorFlow runs them
with oneDNN's kernels; under XLA the CPU backend compiles its own. The two variants alternate in
``--rounds`` rounds of ``--steps`` calls (so other load on the machine hits both alike) and the
table gives the median of each and of the per-round ratio.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import tensorflow as tf  # noqa: E402

SHAPES = ((14, 14), (7, 7))
WIDTH = 128


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    return parser.parse_args()


def conv_step(jit_compile):
    """Forward and backward of ``relu(conv3x3(x, W) + b)`` as one compiled function."""
    def step(x, kernel, bias):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x, kernel])

    return tf.function(step, jit_compile=jit_compile)


def seconds_per_call(function, arguments, steps):
    start = time.perf_counter()
    for _ in range(steps):
        outputs = function(*arguments)
    outputs[0].numpy()
    return (time.perf_counter() - start) / steps


def main():
    args = parse_args()
    print(f"python bench/xla_conv.py --batch {args.batch} --rounds {args.rounds} "
          f"--steps {args.steps}")
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, 1-minute load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| map | plain ms | XLA ms | XLA ÷ plain (median of rounds) | GFLOP/s plain | XLA |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for height, width in SHAPES:
        x = tf.random.stateless_normal([args.batch, height, width, WIDTH], seed=[0, 1])
        kernel = tf.random.stateless_normal([3, 3, WIDTH, WIDTH], seed=[0, 2]) * 0.05
        bias = tf.zeros([WIDTH])
        # Forward, input gradient and kernel gradient: three convolutions of 2·9·C·C per output.
        flops = 3 * 2 * 9 * WIDTH * WIDTH * args.batch * height * width
        variants = {name: conv_step(jit) for name, jit in (("plain", False), ("xla", True))}
        for function in variants.values():
            seconds_per_call(function, (x, kernel, bias), 3)  # trace, compile, warm up
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, function in variants.items():
                times[name].append(seconds_per_call(function, (x, kernel, bias), args.steps))
        plain, xla = (statistics.median(times[name]) for name in ("plain", "xla"))
        ratio = statistics.median(b / a for a, b in zip(times["plain"], times["xla"]))
        print(f"| [{args.batch}, {height}, {width}, {WIDTH}] | {plain * 1e3:.2f} | "
              f"{xla * 1e3:.2f} | {ratio:.2f}× | {flops / plain / 1e9:.0f} | "
              f"{flops / xla / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()
