#!/usr/bin/env bash
# Sets up a virtual environment with glow_nxn, its pinned dependencies and Horovod (built from
# source against the installed TensorFlow, with Gloo; with NCCL too when HOROVOD_GPU_OPERATIONS=NCCL
# is set, as the Dockerfile does). Re-running it reuses a finished set-up in seconds.
#   GLOW_NXN_VENV  where the environment goes (default: .venv in this folder)
#   PYTHON         the Python 3.11 that creates it (default: python3)
set -euo pipefail
cd "$(dirname "$0")"
venv=${GLOW_NXN_VENV:-.venv}
python=${PYTHON:-python3}
stamp="$venv/.glow_nxn-setup"
want=$(cat setup.py constraints.txt install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "set-up: reusing $venv"
  exit 0
fi
start=$SECONDS
echo "set-up: installing into $venv (first time: about 10 minutes, most of it building Horovod)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
venv_bin=$(cd "$venv/bin" && pwd)
pip="$venv_bin/pip"
"$pip" install -q --disable-pip-version-check "pip==24.3.1"
"$pip" install -q -c constraints.txt setuptools wheel "cmake<4"   # cmake 4 rejects Horovod's gloo
"$pip" install -q -c constraints.txt -e ".[test,plot,tfp]"
if ! "$venv_bin/python" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  echo "set-up: building Horovod 0.28.1 (about 6 minutes on 2 cores)"
  # Horovod's setup.py runs the first `cmake` on PATH (else it tries `pip install cmake`): the
  # venv's bin/ goes first, so it runs the cmake<4 above, also where no system cmake exists.
  PATH="$venv_bin:$PATH" HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    "$pip" install -q --no-build-isolation --no-cache-dir -c constraints.txt horovod==0.28.1
fi
"$pip" check
echo "$want" > "$stamp"
echo "set-up: done in $((SECONDS - start)) s"
