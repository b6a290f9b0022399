"""Catalog publishing: the lake in Glue, Redshift federated schemas and views (issue 5)."""
