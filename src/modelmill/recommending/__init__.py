"""``task: recommend``: top-k lists per user from interactions (see modelmill.config.recommend)."""
