"""Every forecast model type, registered: importing this module fills :data:`FORECASTERS`
(the heavy libraries each type needs are imported when it fits, not here)."""

from modelmill.forecasting import auto, deep, ets, gbdt, naive  # noqa: F401  (their registrations)
from modelmill.forecasting.base import FORECASTERS

__all__ = ["FORECASTERS"]
