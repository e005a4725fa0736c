#!/usr/bin/env bash
# Install mcinr-bids into the current Python environment: the one list of install steps that
# the Dockerfile runs in the image and CI runs in a fresh venv.
#
#   docker/install.sh [cpu|cuda] [extras]     e.g.  docker/install.sh cpu dev
#
# cpu:  torch 2.13.0+cpu: from a local wheel where pip finds one (PIP_FIND_LINKS), else from
#       PyTorch's CPU index
# cuda: torch 2.13.0 with CUDA from PyPI (several GB)
set -euo pipefail
variant="${1:-cpu}"
extras="${2:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --quiet --upgrade pip
case "$variant" in
    cpu)
        # the CPU build explicitly: an unpinned torch would pull the multi-GB CUDA build
        python -m pip install --quiet "torch==2.13.0+cpu" \
            || python -m pip install --quiet "torch==2.13.0+cpu" \
                   --extra-index-url https://download.pytorch.org/whl/cpu ;;
    cuda)
        python -m pip install --quiet "torch==2.13.0" ;;
    *)
        echo "install.sh: unknown variant '$variant' (cpu or cuda)" >&2
        exit 2 ;;
esac
if [ -n "$extras" ]; then
    python -m pip install --quiet -e "${here}[${extras}]"
else
    python -m pip install --quiet "${here}"
fi
# the checks that a working install passes: the CLI, the offline validator, deepbet's weights
mcinr-bids --version
bids-validator-deno --version > /dev/null
python -c "import deepbet, os; p = os.path.join(os.path.dirname(deepbet.__file__), '..', 'data', 'models', 'model.pt'); assert os.path.getsize(p) > 1e6, p"
