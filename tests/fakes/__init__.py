"""Fakes for services that have no faithful local implementation (validated against botocore models)."""
