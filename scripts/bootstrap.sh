#!/usr/bin/env bash
# Create the project venv (.venv) and install the project with its dev extras, pinned by
# constraints.txt, in three numbered steps with pip's progress shown. Idempotent: pip only runs
# when pyproject.toml or constraints.txt changed since the last successful install (their hash
# is kept in .venv/.bootstrap-stamp).
#
# Usage: scripts/bootstrap.sh            (from anywhere inside a clone)
#        PYTHON=python3.11 scripts/bootstrap.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.bootstrap-stamp"
python="${PYTHON:-python3}"

die() { echo "bootstrap: $*" >&2; exit 1; }
step() { echo "bootstrap: [$1/3] $2"; }

# pip's output, shown as it comes: on a terminal one status line that pip's lines update in place
# (package count and the current package), elsewhere (CI logs) its "Collecting" lines.
show_pip_progress() {
    local line n=0
    if [[ -t 1 ]]; then
        while IFS= read -r line; do
            case "$line" in
                Collecting*) n=$((n + 1)); printf '\r\033[K  %d packages: %s' "$n" "${line:0:70}" ;;
                *Downloading*) line="${line#"${line%%[! ]*}"}"; printf '\r\033[K  %d packages: %s' "$n" "${line:0:70}" ;;
                "Installing collected packages"*) printf '\r\033[K  unpacking %d packages into the venv (about a minute)...' "$n" ;;
            esac
        done
        printf '\r\033[K'
    else
        while IFS= read -r line; do
            case "$line" in
                Collecting* | "Installing collected packages"* | Successfully*) echo "  ${line:0:120}" ;;
            esac
        done
    fi
}

step 1 "checking $python"
command -v "$python" >/dev/null 2>&1 \
    || die "'$python' not found; install Python 3.11+ (Debian: apt-get install -y python3 python3-venv)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$("$python" -V 2>&1) is too old; Python 3.11+ is required"

for f in pyproject.toml constraints.txt; do
    [[ -f "$repo/$f" ]] || die "missing $repo/$f"
done

if [[ ! -x "$venv/bin/python" ]]; then
    step 2 "creating $venv"
    "$python" -m venv "$venv" 2>/dev/null \
        || die "'$python -m venv' failed; on Debian install python3-venv (apt-get install -y python3-venv)"
else
    step 2 "using $venv"
fi

want="$(cat "$repo/pyproject.toml" "$repo/constraints.txt" | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
    step 3 ".venv is up to date"
    exit 0
fi

step 3 "installing Python packages: lakehouse-cdc[dev] pinned by constraints.txt (about 3 min the first time)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
if ! (cd "$repo" \
        && "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
            -c constraints.txt -e '.[dev]') 2>&1 | tee "$log" | show_pip_progress; then
    tail -n 40 "$log" >&2
    die "pip install failed (see above)"
fi
echo "$want" >"$stamp"
echo "bootstrap: done in $((SECONDS - started)) s"
