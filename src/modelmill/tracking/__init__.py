"""Experiment tracking and the model registry, on MLflow (an optional extra).

``client``: where the server is, the lazily imported client, messages without credentials.
``run``: one tracked run (train, compare, tune, evaluate, a derived bundle, a challenger) that
never fails the work it records; ``session``: a command's run, checked first and closed with it;
``values``: what a run sends, in MLflow's terms.
``tags``: the names of every tag modelmill puts on runs and versions.
``registry``: register a bundle as a registered model version, move aliases.
``fetch``: a version fetched back into the local cache, verified against its hash.
``lineage``: a bundle's chain of parents, and the MLflow runs that logged each.
"""
