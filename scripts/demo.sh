#!/usr/bin/env bash
# The main job end to end on the local defaults: install what is needed, start the local stack,
# create the sample health-and-wellness world, snapshot it into the lake, run a workload, stream
# the changes into the lake, and show what landed.  Extra arguments go to `lakehouse demo`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
echo "demo: [1/3] the Python environment (scripts/bootstrap.sh; the first time about 3 min)"
bash scripts/bootstrap.sh
echo "demo: [2/3] the local stack (lakehouse stack up; several minutes the first time)"
.venv/bin/lakehouse stack up
echo "demo: [3/3] the demo (lakehouse demo $*)"
exec .venv/bin/lakehouse demo "$@"
