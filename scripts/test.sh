#!/usr/bin/env bash
# Set up (reused when done) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh
exec "${GLOW_NXN_VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
