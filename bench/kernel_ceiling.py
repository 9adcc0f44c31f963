"""The model's own convolutions timed alone: the ceiling they put on a step's share of the peak.

    python bench/kernel_ceiling.py [--preset mnist|r1|<preset>] [--batch 64]
                                   [--output docs/runs/throughput/<name>.md]

A training step's FLOPs are almost all convolutions (the coupling networks, the split priors,
the 1×1 mixings), so a step can run no faster than those convolutions do. This benchmark traces
the model's log-density at ``--batch``, reads every ``Conv2D`` from the graph (input, kernel and
output shapes, padding: nothing typed in), groups equal ones, and times each alone in a
``tf.function`` on random inputs:

* **forward**: ``conv2d(x, kernel)``, what sampling and evaluation run;
* **forward + backward**: the forward and, given an upstream gradient of the output's shape,
  the gradients of the input and of the kernel, what a training step runs (three convolutions'
  worth of FLOPs: ``2·B·H_out·W_out·k_h·k_w·C_in·C_out`` each).

The sum of their FLOPs over the sum of their times, as a share of the float32 matmul peak
measured in the same run (bench/throughput.py's), is the share no step can beat while its
convolutions run on these kernels; the real training step and sampling are timed in the same run
beside it (bench/throughput.py's measurement), with the convolutions' part of the step's FLOPs.
In the model the convolutions carry a fused bias and ReLU, here none: the kernels are the same.

Prints a markdown table; with ``--output`` it also writes it, with the command, to that file.
"""
import argparse
import collections
import dataclasses
import os
import tempfile

import throughput  # bench/throughput.py, beside this file (imports glow_nxn, tf-keras first)

import tensorflow as tf  # noqa: E402  (after glow_nxn, through throughput)

from glow_nxn.model import Glow  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Convolution:
    """One ``Conv2D`` of the graph: shapes ``input [B, H, W, C_in]``, ``kernel [k_h, k_w, C_in,
    C_out]``, ``output [B, H_out, W_out, C_out]``; stride 1 (the model uses no other)."""
    input: tuple
    kernel: tuple
    output: tuple
    padding: str

    @property
    def flops(self):
        """Multiply-adds ×2 of one forward call."""
        batch, height, width, _ = self.output
        k_h, k_w, c_in, c_out = self.kernel
        return 2 * batch * height * width * k_h * k_w * c_in * c_out

    def label(self):
        k_h, k_w, c_in, c_out = self.kernel
        return f"{k_h}×{k_w} {c_in}→{c_out} on {self.input[1]}×{self.input[2]}"


def model_convolutions(model, batch):
    """``Counter({Convolution: calls})`` of one traced ``model.log_prob`` on ``batch`` images."""
    spec = tf.TensorSpec([batch, *model.config.image_shape], tf.float32)
    graph = tf.function(model.log_prob).get_concrete_function(spec).graph
    found = collections.Counter()
    for op in graph.get_operations():
        if op.type != "Conv2D":
            continue
        if list(op.get_attr("strides")) != [1, 1, 1, 1]:
            raise ValueError(f"{op.name}: strides {op.get_attr('strides')}, only 1 is timed")
        found[Convolution(tuple(op.inputs[0].shape), tuple(op.inputs[1].shape),
                          tuple(op.outputs[0].shape), op.get_attr("padding").decode())] += 1
    return found


def time_convolution(conv, steps, repeats):
    """``(forward seconds, forward + backward seconds)`` of one call, median over windows."""
    x = tf.random.stateless_normal(conv.input, seed=[0, 1])
    kernel = tf.random.stateless_normal(conv.kernel, seed=[0, 2]) * 0.05
    upstream = tf.random.stateless_normal(conv.output, seed=[0, 3])

    @tf.function
    def forward():
        return tf.nn.conv2d(x, kernel, strides=1, padding=conv.padding)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.conv2d(x, kernel, strides=1, padding=conv.padding)
        return tape.gradient(y, [x, kernel], output_gradients=upstream)

    seconds = []
    for function in (forward, forward_backward):
        def call():
            for tensor in tf.nest.flatten(function()):
                tensor.numpy()

        for _ in range(3):
            call()
        seconds.append(throughput.time_steps(call, steps, repeats))
    return tuple(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--batch", type=int, default=64, help="images per call")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per cell")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of the real step")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    args = parser.parse_args()

    config = throughput.model_config(args.preset)
    load_before = os.getloadavg()[0]
    peak = throughput.matmul_peak_flops()
    print(f"float32 matmul peak: {peak / 1e9:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        step = throughput.row_measurements(config, {}, args, tmp)
    convolutions = model_convolutions(Glow(config), args.batch)
    rows, totals = [], {"flops": 0, "forward": 0.0, "both": 0.0}
    for conv, calls in sorted(convolutions.items(), key=lambda item: -item[0].flops * item[1]):
        forward, both = time_convolution(conv, args.steps, args.repeats)
        rows.append((conv, calls, forward, both))
        totals["flops"] += calls * conv.flops
        totals["forward"] += calls * forward
        totals["both"] += calls * both
        print(f"{conv.label()} ×{calls}: forward {forward * 1e3:.2f} ms, forward + backward "
              f"{both * 1e3:.2f} ms", flush=True)

    def share(flops, seconds):
        return f"{flops / seconds / peak:.0%}"

    lines = [f"`{args.preset}` ({config.image_shape[0]}×{config.image_shape[1]}×"
             f"{config.image_shape[2]}, K={config.steps_per_level}, L={config.levels}, width "
             f"{config.hidden_width}, {config.mixing}), batch {args.batch}; every Conv2D of the "
             f"traced log-density timed alone, {args.steps} calls × {args.repeats} windows "
             f"(median); float32 matmul peak measured in the same run: {peak / 1e9:.0f} GFLOP/s",
             "",
             "| convolution | calls per pass | MFLOP per image, forward | forward ms | share of "
             "the peak | forward + backward ms | share of the peak | part of the step's "
             "convolution time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for conv, calls, forward, both in rows:
        lines.append(f"| {conv.label()} | {calls} | {calls * conv.flops / args.batch / 1e6:.1f} "
                     f"| {forward * 1e3:.2f} | {share(conv.flops, forward)} | {both * 1e3:.2f} | "
                     f"{share(3 * conv.flops, both)} | {calls * both / totals['both']:.0%} |")
    train_seconds, train_flops = step["train"]
    sample_seconds, sample_flops = step["sample"]
    conv_part = totals["flops"] / args.batch / (train_flops / 3)
    lines += [f"| **all convolutions** | {sum(convolutions.values())} | "
              f"{totals['flops'] / args.batch / 1e6:.1f} | {totals['forward'] * 1e3:.1f} | "
              f"**{share(totals['flops'], totals['forward'])}** | {totals['both'] * 1e3:.1f} | "
              f"**{share(3 * totals['flops'], totals['both'])}** | 100% |",
              "",
              f"The real step, same run: training {args.batch / train_seconds:.0f} images/s, "
              f"{share(train_flops * args.batch, train_seconds)} of the peak, "
              f"{train_seconds * 1e3:.1f} ms per step against the convolutions' "
              f"{totals['both'] * 1e3:.1f} ms alone; sampling {args.batch / sample_seconds:.0f} "
              f"images/s, {share(sample_flops * args.batch, sample_seconds)} of the peak. The "
              f"convolutions' forward FLOPs are {conv_part:.0%} of a third of the training "
              f"step's (the profiler's count, {train_flops / 1e6:.0f} MFLOP per image)."]
    throughput.publish(lines, load_before, args.output)


if __name__ == "__main__":
    main()
