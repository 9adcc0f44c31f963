"""install.sh, run against a stub environment: the command it hands to Horovod's build.

The real set-up takes minutes (it builds Horovod); here ``bin/python`` and ``bin/pip`` of a fake
virtual environment are scripts that record how they were called, so the test runs in a second.
scripts/clean_root_check.sh runs the real one on a clean Debian root (docs/DISTRIBUTED.md).
"""
import os
import subprocess

from test_support import REPO

SYSTEM_PATH = ["/usr/bin", "/bin"]


def write_script(path, text):
    path.write_text(text)
    path.chmod(0o755)


def test_horovod_build_sees_the_venvs_bin_first_on_path(tmp_path):
    """Horovod's setup.py runs the first ``cmake`` on PATH, and install.sh puts ``cmake<4`` in the
    venv: without the venv's bin/ first, a machine with no system cmake fails the build and one
    with cmake 4 runs a cmake that rejects Horovod's Gloo (issue 12)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "pip_calls"
    # `python -c "import horovod.tensorflow"` fails, so install.sh builds Horovod.
    write_script(bin_dir / "python", "#!/bin/sh\nexit 1\n")
    write_script(bin_dir / "pip", f'#!/bin/sh\necho "$PATH|$*" >> "{calls}"\n')
    environment = {"PATH": ":".join(SYSTEM_PATH), "HOME": str(tmp_path),
                   "GLOW_NXN_VENV": str(bin_dir.parent)}
    subprocess.run(["bash", os.path.join(REPO, "install.sh")], env=environment, check=True,
                   capture_output=True)
    builds = [line.split("|") for line in calls.read_text().splitlines() if "horovod==" in line]
    assert len(builds) == 1
    path = builds[0][0].split(":")
    assert path == [str(bin_dir)] + SYSTEM_PATH  # the venv's first, the rest kept (g++, make)
