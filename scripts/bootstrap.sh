#!/usr/bin/env bash
# Create the project venv (.venv) and install the project with its dev extras, pinned by
# constraints.txt. Idempotent: pip only runs when pyproject.toml or constraints.txt changed since
# the last successful install (their hash is kept in .venv/.bootstrap-stamp).
#
# Usage: scripts/bootstrap.sh            (from anywhere inside a clone)
#        PYTHON=python3.11 scripts/bootstrap.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.bootstrap-stamp"
python="${PYTHON:-python3}"

die() { echo "bootstrap: $*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 \
    || die "'$python' not found; install Python 3.11+ (Debian: apt-get install -y python3 python3-venv)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$("$python" -V 2>&1) is too old; Python 3.11+ is required"

for f in pyproject.toml constraints.txt; do
    [[ -f "$repo/$f" ]] || die "missing $repo/$f"
done

if [[ ! -x "$venv/bin/python" ]]; then
    echo "bootstrap: creating $venv"
    "$python" -m venv "$venv" 2>/dev/null \
        || die "'$python -m venv' failed; on Debian install python3-venv (apt-get install -y python3-venv)"
fi

want="$(cat "$repo/pyproject.toml" "$repo/constraints.txt" | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
    echo "bootstrap: .venv is up to date"
    exit 0
fi

echo "bootstrap: installing lakehouse-cdc[dev] into $venv (pinned by constraints.txt)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$repo" \
        && "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            -c constraints.txt -e '.[dev]') >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "pip install failed (see above)"
fi
echo "$want" >"$stamp"
echo "bootstrap: done"
