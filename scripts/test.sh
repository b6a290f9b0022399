#!/usr/bin/env bash
# The full test suite against real local services: install what is needed, start the local stack
# (MariaDB, PostgreSQL, moto, OpenSearch), run pytest.  Extra arguments go to pytest (e.g. -k mysql, -x).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/bootstrap.sh
.venv/bin/python -m devstack up
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
