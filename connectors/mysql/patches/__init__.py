"""Fixes for mysql-replication 1.0.17 bugs, applied to the library's classes once, on demand.

Each module patches one bug and says which; `apply_all` is idempotent and is called when a binlog
stream starts (never at import time). Remove a patch when the pinned library version fixes it.
"""

from __future__ import annotations

import threading

from connectors.mysql.patches import dump_request, temporal

_lock = threading.Lock()
_applied = False


def apply_all() -> None:
    """Apply every patch in this package (safe to call repeatedly and from several threads)."""
    global _applied
    with _lock:
        if _applied:
            return
        dump_request.apply()
        temporal.apply()
        _applied = True
