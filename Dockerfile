# glow_nxn with TensorFlow 2.18 and Horovod 0.28.1 (NCCL for GPU tensors, Gloo), installed by the
# same ./install.sh the README uses.
#
#   docker build -t glow_nxn .                                   # NVIDIA GPUs (the default)
#   docker build -t glow_nxn:cpu --build-arg DEVICE=cpu .        # CPU only
#   docker run --gpus all --shm-size=1g -v "$PWD/runs:/runs" \
#     -v "$HOME/tensorflow_datasets:/root/tensorflow_datasets" glow_nxn \
#     horovodrun -np 4 python train.py --flagfile=configs/cifar10.cfg --workdir=/runs/cifar10
#
# CUDA 12.5 and cuDNN 9.3 are what TensorFlow 2.18 is built against: the wheel's
# tf.sysconfig.get_build_info() says CUDA 12.5.1 and cuDNN 9, and its [and-cuda] extra pins
# nvidia-cudnn-cu12 9.3.0.75. docs/DISTRIBUTED.md says what of this file was and was not run.

# gpu or cpu: which of the two base stages below the image is built on.
ARG DEVICE=gpu
ARG CUDA_VERSION=12.5.1
ARG UBUNTU_VERSION=22.04
ARG DEBIAN_VERSION=bookworm

# GPU: the CUDA toolkit (nvcc and NCCL's headers, to build Horovod's NCCL operations) and cuDNN.
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS base-gpu
ARG CUDNN_VERSION=9.3.0.75
# Compute capabilities of Horovod's CUDA kernels: TensorFlow 2.18's (sm_60..sm_90) and between.
ARG CUDA_CC_LIST=60,70,75,80,86,89,90
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       "libcudnn9-cuda-12=${CUDNN_VERSION}-1" "libcudnn9-dev-cuda-12=${CUDNN_VERSION}-1" \
    && apt-mark hold libcudnn9-cuda-12 libcudnn9-dev-cuda-12 \
    && rm -rf /var/lib/apt/lists/*
# install.sh passes HOROVOD_* from the environment to Horovod's build.
ENV HOROVOD_GPU=CUDA \
    HOROVOD_GPU_OPERATIONS=NCCL \
    HOROVOD_NCCL_LINK=SHARED \
    HOROVOD_CUDA_HOME=/usr/local/cuda \
    HOROVOD_BUILD_CUDA_CC_LIST=${CUDA_CC_LIST}

# CPU: Debian bookworm, whose python3 is 3.11. scripts/clean_root_check.sh runs this stage's
# steps in a chroot of a debootstrapped bookworm (docs/DISTRIBUTED.md has the result).
FROM debian:${DEBIAN_VERSION} AS base-cpu

# hadolint ignore=DL3006
FROM base-${DEVICE}
ARG DEVICE
# What install.sh installs (from setup.py and constraints.txt, which tests/test_dockerfile.py
# checks these against).
LABEL org.opencontainers.image.title="glow_nxn" \
      glow_nxn.device="${DEVICE}" \
      glow_nxn.tensorflow="2.18.1" \
      glow_nxn.horovod="0.28.1"
ARG DEBIAN_FRONTEND=noninteractive
# Python 3.11 (setup.py's python_requires) is Debian bookworm's python3 and in Ubuntu 22.04's
# universe, under the same package names; g++ and make build Horovod; openssh-client lets
# horovodrun start processes on other hosts (-H host1:4,host2:4). The distribution's own
# versions, not pinned: they change with the archive's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       python3.11 python3.11-venv python3.11-dev g++ make openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /glow_nxn
# The set-up first, so that editing the code does not rebuild Horovod: install.sh installs
# setup.py's pinned packages (constraints.txt) and builds Horovod against that TensorFlow.
COPY install.sh setup.py constraints.txt pyproject.toml ./
COPY glow_nxn/__init__.py glow_nxn/
# The venv's bin/ on PATH before install.sh runs, as after: its horovodrun and python, and the
# cmake it installs for Horovod's build (install.sh puts it first there too).
ENV GLOW_NXN_VENV=/opt/venv PYTHON=python3.11 PATH=/opt/venv/bin:${PATH}
RUN ./install.sh \
    && /opt/venv/bin/python -c "import horovod.tensorflow as hvd; \
assert hvd.gloo_built(), 'Horovod was built without Gloo'; \
assert '${DEVICE}' == 'cpu' or hvd.nccl_built(), 'Horovod was built without NCCL'"
COPY . .
CMD ["python", "train.py", "--helpshort"]
