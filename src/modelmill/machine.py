"""What this machine offers the process, for any layer that sizes its work by it."""

from __future__ import annotations

import os


def physical_cores() -> int:
    """Cores this process may use (affinity-aware), the right default for intra-op threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
