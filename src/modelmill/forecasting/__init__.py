"""``task: forecast``: series read into a checked panel, forecast model types behind one
contract (:class:`Forecaster`, registry :data:`FORECASTERS`), rolling-origin backtesting, and
the fitted forecast pipeline that ``predict``, the bundle and the service use."""

from modelmill.forecasting.base import FORECASTERS, FitContext, Forecaster, ForecasterState, build_forecaster
from modelmill.forecasting.panel import Panel, read_panel, season_for

__all__ = ["FORECASTERS", "FitContext", "Forecaster", "ForecasterState", "Panel", "build_forecaster", "read_panel",
           "season_for"]
