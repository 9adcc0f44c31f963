"""The training step with Keras's Adam and average update against the fused ones (a measurement).

    python bench/fused_update.py [--cases r1:16 mnist:64 cifar10:4] [--rounds 6] [--steps 10]
                                 [--output docs/runs/fused_update/fused_update.json]

For each case ``preset:batch`` (``r1`` is issue 10's reference shape, as in bench/throughput.py)
it builds the real :class:`glow_nxn.training.Trainer` twice in one process: once as it is
(glow_nxn/optimizers.py's Adam, one ``ResourceApplyAdam`` per variable, and the weight average's
``ResourceApplyGradientDescent``), once with tf-keras's ``Adam`` and the average's former update,
``θ̄.assign(d·θ̄ + (1 − d)·θ)`` (the reference: the code before the change). For each it times
the trace of the compiled step (``get_concrete_function``), its first call (graph optimisation,
kernel set-up and one step) and then, after one untimed window each, ``--rounds`` windows of
``--steps`` steps, the two alternating window by window on a fixed batch of noise, so a change
in the machine's load hits both. It prints a table of the medians, the median ratio of paired
windows and the number of operations in each traced graph (its functions included: the update
runs in a ``tf.cond``).
"""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import throughput  # noqa: E402  (bench/throughput.py, beside this file; imports tf-keras first)
import tensorflow as tf  # noqa: E402

from glow_nxn import training  # noqa: E402
from glow_nxn.averaging import WeightAverage  # noqa: E402
from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset  # noqa: E402
from glow_nxn.keras import keras  # noqa: E402


class KerasAverage(WeightAverage):
    """The average's update before the change: four operations per variable."""

    def update(self, num_updates):
        t = tf.cast(num_updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for shadow, variable in zip(self.shadows, self._targets):
            shadow.assign(decay * shadow + (1.0 - decay) * variable)


def build(case, reference):
    """The Trainer of ``case``; with ``reference``, Keras's Adam and :class:`KerasAverage`."""
    name, batch = case.split(":")
    config = throughput.R1 if name == "r1" else preset(name)
    saved = training.make_optimizer, training.WeightAverage
    if reference:
        training.make_optimizer = lambda c: keras.optimizers.Adam(learning_rate=c.learning_rate)
        training.WeightAverage = KerasAverage
    try:
        trainer = training.Trainer(
            RunConfig(model=config, data=DataConfig(dataset="cifar10"),
                      train=TrainConfig(per_replica_batch_size=int(batch))),
            os.path.join(tempfile.mkdtemp(), "run"), log=lambda line: None)
    finally:
        training.make_optimizer, training.WeightAverage = saved
    trainer.optimizer.learning_rate = 1e-4
    x = tf.random.stateless_uniform((int(batch), *config.image_shape), seed=[0, 1]) - 0.5
    step = trainer.compiled_step(False)
    start = time.perf_counter()
    graph = step.get_concrete_function(x).graph.as_graph_def()
    trace = time.perf_counter() - start
    start = time.perf_counter()
    step(x)[0].numpy()
    first = time.perf_counter() - start
    return dict(step=lambda: step(x)[0].numpy(), trace_seconds=trace, first_call_seconds=first,
                operations=len(graph.node) + sum(len(f.node_def)
                                                 for f in graph.library.function),
                variables=len(trainer.model.trainable_variables), window_seconds=[])


def measure(case, rounds, steps):
    runs = {"fused": build(case, reference=False), "keras": build(case, reference=True)}
    for run in runs.values():  # one untimed window each: the first steps after a build are slow
        for _ in range(steps):
            run["step"]()
    for _ in range(rounds):
        for run in runs.values():
            start = time.perf_counter()
            for _ in range(steps):
                run["step"]()
            run["window_seconds"].append((time.perf_counter() - start) / steps)
    for run in runs.values():
        del run["step"]
    ratios = [f / k for f, k in zip(runs["fused"]["window_seconds"],
                                    runs["keras"]["window_seconds"])]
    return {"case": case, **runs, "step_ratio_median": statistics.median(ratios)}


def table_lines(results):
    lines = ["| case | variables | operations: Keras → fused | trace s: Keras → fused | "
             "first call s: Keras → fused | ms/step: Keras → fused | fused ÷ Keras, paired |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        k, f = r["keras"], r["fused"]
        lines.append(
            f"| {r['case']} | {f['variables']} | {k['operations']} → {f['operations']} | "
            f"{k['trace_seconds']:.1f} → {f['trace_seconds']:.1f} | "
            f"{k['first_call_seconds']:.1f} → {f['first_call_seconds']:.1f} | "
            f"{1e3 * statistics.median(k['window_seconds']):.0f} → "
            f"{1e3 * statistics.median(f['window_seconds']):.0f} | "
            f"{r['step_ratio_median']:.3f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["r1:16", "mnist:64", "cifar10:4"])
    parser.add_argument("--rounds", type=int, default=6, help="timed windows per variant")
    parser.add_argument("--steps", type=int, default=10, help="steps per window")
    parser.add_argument("--output", default=None, help="also write everything to this JSON")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = []
    for case in args.cases:
        results.append(measure(case, args.rounds, args.steps))
        print(f"{case}: done", flush=True)
    throughput.publish(table_lines(results), load_before, None)
    if args.output:
        pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python bench/fused_update.py " + " ".join(sys.argv[1:]),
                  "date": str(datetime.date.today()), "cores": os.cpu_count(),
                  "load_average": [load_before, os.getloadavg()[0]], "results": results}
        pathlib.Path(args.output).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
