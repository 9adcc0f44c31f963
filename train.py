"""Train a glow_nxn model by maximum likelihood.

    python train.py --workdir=runs/mnist                          # the mnist preset, one process
    horovodrun -np 4 python train.py --flagfile=configs/cifar10.cfg --workdir=runs/cifar10
    horovodrun -np 8 -H host1:4,host2:4 python train.py ...       # 2 machines: docs/DISTRIBUTED.md

An existing run in --workdir is resumed from its newest checkpoint.
"""
import flags as project_flags
from glow_nxn import distributed, training

project_flags.define_model_flags()
project_flags.define_data_flags()
project_flags.define_train_flags()


def main(argv):
    model_config = project_flags.model_config()
    train_config = project_flags.train_config()
    replicas = distributed.connect()
    summary = training.train(model_config, train_config, replicas)
    if replicas.is_chief:
        print(f"finished at step {summary['step']}: train bits/dim "
              f"{summary['train_bits_per_dim']:.4f}, checkpoint {summary['checkpoint']}")


if __name__ == "__main__":
    project_flags.run(main)
