#!/usr/bin/env bash
# The main job end to end on the local defaults: install what is needed, start the local stack,
# create the sample health-and-wellness world, snapshot it into the lake, run a workload, stream
# the changes into the lake, and show what landed.  Extra arguments go to `lakehouse demo`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/bootstrap.sh
.venv/bin/lakehouse stack up
exec .venv/bin/lakehouse demo "$@"
