"""When a merge-on-read current-state table is rewritten copy-on-write (compacted).

A merge normally appends one data file and one position-delete file. Readers pay for every file
and every deleted row they must skip, so once a table has too many files, or its delete files hide
too large a share of its rows, the merge rewrites the whole table into well-sized data files with
no deletes instead — in the same single snapshot, so the table never shows an intermediate state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TableShape:
    """A table's files and rows as they would be after a merge-on-read commit."""

    data_files: int
    delete_files: int
    data_rows: int  # rows in data files, deleted ones included
    deleted_rows: int  # rows hidden by position deletes

    @property
    def live_rows(self) -> int:
        return self.data_rows - self.deleted_rows


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """Thresholds past which a merge rewrites the table instead of adding delete files.

    The defaults keep reads within a small constant factor of a compacted table: at most 16 data
    files and 16 delete files to open, and at most 20 % of the rows read only to be skipped.
    """

    max_data_files: int = 16
    max_delete_files: int = 16
    max_deleted_ratio: float = 0.2

    def reason(self, shape: TableShape) -> str | None:
        """Why `shape` needs compacting, or None if merge-on-read may go on."""
        if shape.data_files > self.max_data_files:
            return f"{shape.data_files} data files > {self.max_data_files}"
        if shape.delete_files > self.max_delete_files:
            return f"{shape.delete_files} delete files > {self.max_delete_files}"
        if shape.deleted_rows > self.max_deleted_ratio * max(shape.live_rows, 0):
            return f"{shape.deleted_rows} deleted rows > {self.max_deleted_ratio:.0%} of {shape.live_rows} live rows"
        return None


# Merge-on-read never pays off: every merge rewrites the table (the pre-delete-file behaviour).
ALWAYS_REWRITE = CompactionPolicy(max_data_files=0, max_delete_files=0, max_deleted_ratio=0.0)
# Never compact (tests that need a long merge-on-read history).
NEVER_REWRITE = CompactionPolicy(max_data_files=2**31, max_delete_files=2**31, max_deleted_ratio=float("inf"))
