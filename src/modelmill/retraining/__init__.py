"""The closed loop: retraining on newly labelled records, the challenger judged against the
champion, promotion into the next version folder with the running service reloaded, the
triggers that start it (``modelmill watch``) and the audit of every decision."""

from __future__ import annotations

from modelmill.retraining.retrain import Decision, retrain

__all__ = ["Decision", "retrain"]
