"""The capture pipeline: sources into the lake's change log and current state.

`runner` runs bounded syncs, streams and backfills; `maintenance` merges beside a stream;
`snapshot_worker` and `backfill_worker` read snapshots and backfills; `requests` hands backfill
requests to a running stream; `sources` opens the connectors; `row_counts` counts source rows
for the checks.
"""
