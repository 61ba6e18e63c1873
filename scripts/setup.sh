# Sourced by demo.sh and test.sh: a virtual environment in .venv with cnnzoo installed (editable).
# PyTorch is installed only if it is missing, as the CPU build (torch==2.13.0); a GPU user installs
# their CUDA build of torch first and it is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY="$ROOT/.venv/bin/python"
pip_install() {  # quiet, but keep real errors (drops the harmless "Location ... is ignored" noise)
  "$VPY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
"$VPY" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[${ZOO_EXTRAS:-cpu,server}]"
export PATH="$ROOT/.venv/bin:$PATH"
