"""Command line: ``python -m devstack up|down|status [service...]``."""

from __future__ import annotations

import argparse
import sys
import time

import devstack
from devstack.base import DevstackError, ServiceStatus


def _table(rows: list[tuple[str | None, ServiceStatus]]) -> str:
    """Aligned table; the ACTION column appears only for up/down."""
    with_action = any(action is not None for action, _ in rows)
    header = ("SERVICE", "STATE", *(["ACTION"] if with_action else []), "ENDPOINT", "PID", "DATA DIR")
    lines: list[tuple[str, ...]] = [header]
    for action, st in rows:
        state = st.state + (f" ({st.note})" if st.note else "")
        acted = [action or "-"] if with_action else []
        lines.append((st.name, state, *acted, st.endpoint, str(st.pid or "-"), str(st.data_dir)))
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command; exit code 0 on success, 1 on a stack failure, 2 on usage errors."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("services", nargs="*", help="service names (default: all, in registry order)")
    args = parser.parse_args(argv)
    names = args.services or None
    rows: list[tuple[str | None, ServiceStatus]]
    started = time.monotonic()
    try:
        if args.command == "up":
            rows = [(r.action, r.status) for r in devstack.up(names)]
        elif args.command == "down":
            rows = [(r.action, r.status) for r in devstack.down(names)]
        else:
            rows = [(None, st) for st in devstack.status(names)]
    except DevstackError as exc:
        print(f"devstack {args.command} failed: {exc}", file=sys.stderr)
        return 1
    print(_table(rows))
    if args.command != "status":
        print(
            f"({args.command} took {time.monotonic() - started:.1f}s; stack dir {devstack.settings().stack_dir})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
