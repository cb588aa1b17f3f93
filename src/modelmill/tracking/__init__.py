"""Experiment tracking and the model registry, on MLflow (an optional extra).

``client``: where the server is, the lazily imported client, messages without credentials.
``run``: one tracked run (train, compare, tune, evaluate) that never fails the work it records.
``registry``: register a bundle as a registered model version, move aliases, fetch a version
back with its hashes verified.
``lineage``: a bundle's chain of parents, and the MLflow runs that logged each.
"""
