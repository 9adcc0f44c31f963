"""Train a glow_nxn model by maximum likelihood.

    python train.py --workdir=runs/mnist                          # the mnist preset, one process
    horovodrun -np 4 python train.py --flagfile=configs/cifar10.cfg --workdir=runs/cifar10
    horovodrun -np 8 -H host1:4,host2:4 python train.py ...       # 2 machines: docs/DISTRIBUTED.md

An existing run in --workdir is resumed from its newest checkpoint. On SIGTERM or SIGINT
(Ctrl-C) it finishes the current step, writes a checkpoint and exits with code 75; the same
command resumes from there. When no step completes for --step_timeout_seconds (a process
hangs), it exits with code 70.
"""
import signal
import sys

from absl import flags

import flags as project_flags
from glow_nxn import distributed, training
from glow_nxn.errors import Preempted

project_flags.define_model_flags()
project_flags.define_data_flags()
project_flags.define_train_flags()
flags.adopt_module_key_flags(project_flags)


def main(argv, hooks=()):
    """Train the run the flags describe; ``hooks`` (:class:`glow_nxn.training.Hook`) are added
    to the loop's own (tests/horovod_worker.py observes a real run through them)."""
    folder = project_flags.run_folder()
    run_config = project_flags.run_config()
    replicas = distributed.connect()
    preemption = training.Preemption()
    watchdog = training.Watchdog(run_config.train.step_timeout_seconds, project_flags.exit_now,
                                 run_config.train.first_step_timeout_seconds)
    with preemption.catching(signal.SIGTERM, signal.SIGINT), watchdog.running():
        summary = training.train(run_config, folder.path, replicas,
                                 hooks=[preemption, watchdog, *hooks])
    if preemption.stopped:
        where = (f"newest checkpoint {summary['checkpoint']}; the same command resumes from it"
                 if replicas.is_chief else "rank 0 holds the checkpoint")
        # At once: horovodrun SIGKILLs its processes 5 s after its SIGTERM, and the interpreter's
        # shutdown takes seconds; the loop's end has flushed every file.
        sys.stdout.flush()
        project_flags.exit_now(Preempted(f"{preemption.signal_name} received, stopped at step "
                                         f"{summary['step']}: {where}"))
    if replicas.is_chief:
        print(f"finished at step {summary['step']} ({summary['stop_reason']}): train bits/dim "
              f"{summary['train_bits_per_dim']:.4f}, {summary['recoveries']} recoveries, "
              f"{summary['skipped_images']} unreadable images skipped, checkpoint "
              f"{summary['checkpoint']}", flush=True)


if __name__ == "__main__":
    project_flags.run(main)
