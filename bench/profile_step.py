"""Where a training step's time goes: TensorFlow's profiler over the compiled step, ops summed.

    python bench/profile_step.py [--preset mnist|r1|<preset>] [--batch 64] [--steps 5] [--top 15]

Builds the real :class:`glow_nxn.training.Trainer` of ``--preset`` (``r1``: issue 10's reference
shape) as bench/throughput.py does (a fixed batch of noise, data-dependent init, ``--warmup``
untimed steps), records ``--steps`` compiled training steps with ``tf.profiler.experimental``,
and reads the trace (an XSpace protobuf): every op execution on TensorFlow's compute threads,
with its duration. Prints the op types that take the most of the summed op time (a
convolution's three kernels, the element-wise ops, the reductions), then the single ops (by
name) at the top. Shares, not seconds, are what compare across machines and loads. A
measurement, not a test.
"""
import argparse
import collections
import glob
import os
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import glow_nxn  # noqa: E402,F401  (selects tf-keras before TensorFlow is imported)
import throughput  # noqa: E402  (bench/throughput.py, beside this file: the R1 shape)
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from glow_nxn import training  # noqa: E402
from glow_nxn.config import DataConfig, RunConfig, TrainConfig  # noqa: E402

# Events of the executor itself: they enclose the ops' own events, so summing them too would
# count the ops twice.
ENCLOSING = ("ExecutorState::Process", "ThreadpoolListener::")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    return parser.parse_args()


def op_durations(logdir):
    """``{op name: (picoseconds, count)}`` over the compute threads of the trace in ``logdir``;
    an op's name is ``<node name>:<op type>``."""
    path, = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    space.ParseFromString(pathlib.Path(path).read_bytes())
    totals = collections.defaultdict(lambda: [0, 0])
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name.startswith(ENCLOSING):
                    continue
                totals[name][0] += event.duration_ps
                totals[name][1] += 1
    return totals


def main():
    args = parse_args()
    config = throughput.model_config(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            RunConfig(model=config, data=DataConfig(),
                      train=TrainConfig(per_replica_batch_size=args.batch)),
            os.path.join(tmp, "run"), log=lambda line: None)
        x = tf.random.stateless_uniform((args.batch, *config.image_shape), seed=[0, 1]) - 0.5
        trainer.model.data_dependent_init(x)
        trainer.optimizer.learning_rate = 1e-4
        for _ in range(args.warmup):
            trainer._train_step(x)[0].numpy()
        tf.profiler.experimental.start(os.path.join(tmp, "profile"))
        for _ in range(args.steps):
            trainer._train_step(x)[0].numpy()
        tf.profiler.experimental.stop()
        ops = op_durations(os.path.join(tmp, "profile"))
    total = sum(duration for duration, _ in ops.values())
    by_type = collections.Counter()
    for name, (duration, _) in ops.items():
        by_type[name.rsplit(":", 1)[-1]] += duration
    print(f"`{args.preset}` preset, batch {args.batch}: {args.steps} profiled training steps, "
          f"{total / 1e9 / args.steps:.0f} ms of op time per step summed over the compute "
          f"threads\n")
    print("| op type | share of op time |\n| --- | ---: |")
    for op_type, duration in by_type.most_common(args.top):
        print(f"| {op_type} | {duration / total:.1%} |")
    print("\n| op (node name: type) | share of op time |\n| --- | ---: |")
    for name, (duration, _) in sorted(ops.items(), key=lambda item: -item[1][0])[:args.top]:
        print(f"| `{name}` | {duration / total:.1%} |")


if __name__ == "__main__":
    main()
