# Sourced by demo.sh and test.sh: a virtual environment in .venv with cnnzoo installed (editable).
# PyTorch is installed only if it is missing, as the CPU build (torch==2.13.0); a GPU user installs
# their CUDA build of torch first and it is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY="$ROOT/.venv/bin/python"
"$VPY" -c "import torch" 2>/dev/null || "$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -e ".[${ZOO_EXTRAS:-cpu,server}]"
export PATH="$ROOT/.venv/bin:$PATH"
