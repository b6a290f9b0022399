"""Which files of a merge-on-read current-state table a merge compacts: bin-packing, never the table.

The policy only decides, from file sizes and deleted-row counts; `connectors.lake.bin_packing`
rewrites what it picks.

A merge normally appends one small data file and one position-delete file. Readers pay for every
file and every deleted row they must skip, so a merge also rewrites, in the same single snapshot
(the table never shows an intermediate state), only the data files that cost more than they hold —
as Iceberg's ``rewrite_data_files`` bin-packs — and never the whole table because of a file count:

- **small files**, size-tiered: a data file under `small_file_ratio` of the table's target file size
  is small; small files fall into tiers by size (a factor of `min_small_files` apart), and once a
  tier holds `min_small_files` files, they and every smaller small file are rewritten into one file
  (sorted by key). Each row is so rewritten about once per tier on its way to a large file — a
  handful of times in all, whatever the table's size — and at most about ``min_small_files - 1``
  small files per tier stay live;
- **delete-heavy files**: a data file whose own deleted rows exceed `max_deleted_ratio` of its rows
  is rewritten alone with its live rows (its order kept);
- **delete files**: a merge writes its positions in up to two delete files, one for positions in
  small data files (soon rewritten) and one for the others, so a small-file compaction only has to
  carry the first kind. Delete files that held positions in rewritten data files are replaced (their
  other positions move to the merge's delete files); the others are folded size-tiered, by
  positions, as small data files are, and all of them past `max_delete_files`. A position is so
  rewritten a few times, not at every small-file compaction (the positions in large files grow
  with the table: up to a fifth of its rows).

Measured with `bench/bench_merge_scale.py` (docs/decisions.md §2): the whole-table rewrite that
absolute thresholds (more than 16 files) caused every 16 merges cost 10-17 s on a 10M-row table
(2.4 s on 1M rows); over 136 merges of 10,000 changes a warm merge now costs 0.16 s on 10M rows
and 0.17 s on 1M, compactions included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileShape:
    """One live data file as it would be after a merge-on-read commit."""

    path: str
    size_bytes: int  # on disk
    rows: int  # deleted ones included
    deleted_rows: int  # rows hidden by position deletes (this merge's included)


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """What a merge rewrites besides its own files."""

    small: tuple[str, ...]  # data files rewritten together into one key-sorted file
    delete_heavy: tuple[str, ...]  # data files rewritten one by one
    dropped: tuple[str, ...]  # data files whose every row is deleted: removed, nothing written
    folded: tuple[str, ...]  # delete files whose positions move into the merge's delete files
    reason: str

    @property
    def rewritten(self) -> frozenset[str]:
        return frozenset(self.small) | frozenset(self.delete_heavy) | frozenset(self.dropped)


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """When a merge rewrites some files of the table, and which (see the module docstring).

    `rewrite_always` makes every merge rewrite the whole table copy-on-write (the behaviour
    before delete files; kept for tests and comparisons).
    """

    small_file_ratio: float = 1 / 16  # of the target file size: 32 MB on disk by default
    min_small_files: int = 4  # per size tier, and the factor between tiers
    max_deleted_ratio: float = 0.2  # per data file
    max_delete_files: int = 16
    rewrite_always: bool = False

    def small_limit(self, target_file_bytes: int) -> float:
        """Data files under this size on disk are small."""
        return self.small_file_ratio * target_file_bytes

    def plan(
        self,
        data: Sequence[FileShape],
        deletes: Sequence[FileShape],
        target_file_bytes: int,
        new_delete_files: int = 2,
    ) -> CompactionPlan | None:
        """What to rewrite, given the live data files (deleted rows counted after this merge) and
        delete files (``rows``: positions) before this merge adds `new_delete_files` of its own;
        None if merge-on-read goes on alone."""
        over = [f for f in data if f.rows and f.deleted_rows > self.max_deleted_ratio * f.rows]
        # A file whose every row is deleted needs no rewrite: it is just dropped.
        gone = [f.path for f in over if f.deleted_rows >= f.rows]
        heavy = [f.path for f in over if f.deleted_rows < f.rows]
        skip = {f.path for f in over}
        limit = self.small_limit(target_file_bytes)
        small = self._tier_group(
            [(f.path, f.size_bytes) for f in data if f.path not in skip and f.size_bytes < limit]
        )
        if len(deletes) + new_delete_files > self.max_delete_files:
            folded = [f.path for f in deletes]
        else:
            folded = self._tier_group([(f.path, f.rows) for f in deletes])
        reasons = []
        if small:
            reasons.append(f"{len(small)} small data files")
        if heavy:
            reasons.append(f"{len(heavy)} data files over {self.max_deleted_ratio:.0%} deleted")
        if gone:
            reasons.append(f"{len(gone)} data files wholly deleted")
        if folded:
            reasons.append(f"{len(folded)} of {len(deletes)} delete files folded")
        if not reasons:
            return None
        return CompactionPlan(tuple(small), tuple(heavy), tuple(gone), tuple(folded), ", ".join(reasons))

    def _tier_group(self, sized: Sequence[tuple[str, int]]) -> list[str]:
        """Size-tiering: the files of the highest tier holding `min_small_files` files and every
        smaller file; [] if no tier is full. Tiers are a factor of `min_small_files` apart."""
        fan_in = max(self.min_small_files, 2)
        tiers = {path: int(math.log(max(size, 1), fan_in)) for path, size in sized}
        counts: dict[int, int] = {}
        for tier in tiers.values():
            counts[tier] = counts.get(tier, 0) + 1
        full = [t for t, n in counts.items() if n >= self.min_small_files]
        if not full:
            return []
        top = max(full)  # a lower full tier is included in it anyway
        return [path for path, _ in sorted(sized, key=lambda ps: ps[1]) if tiers[path] <= top]


# Every merge rewrites the table (the pre-delete-file behaviour).
ALWAYS_REWRITE = CompactionPolicy(rewrite_always=True)
# Never compact (tests that need a long merge-on-read history).
NEVER_REWRITE = CompactionPolicy(
    min_small_files=2**31, max_deleted_ratio=float("inf"), max_delete_files=2**31
)
