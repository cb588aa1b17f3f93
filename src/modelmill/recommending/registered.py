"""Every recommendation model type, registered: importing this module fills :data:`RECOMMENDERS`
(the trainer the two-tower needs is imported when it fits, not here)."""

from modelmill.recommending import ease, popularity, two_tower  # noqa: F401  (their registrations)
from modelmill.recommending.base import RECOMMENDERS

__all__ = ["RECOMMENDERS", "ease", "popularity", "two_tower"]
