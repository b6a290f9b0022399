"""The publish pipeline: the lake and the analytics declarations in Glue, Redshift and DuckDB.

`catalogs` publishes (`lakehouse publish`); `analytics` runs the named use cases in `usecases/`.
"""
