"""The Python face of modelmill: ``Pipeline`` and ``load``.

    pipeline = Pipeline.from_yaml("income.yaml").fit()
    pipeline.evaluate("test.csv")
    pipeline.predict(frame)
    pipeline.save("bundle/")
    modelmill.load("bundle/").predict(frame)

Custom training callbacks (``modelmill.training.Callback``) go in with
``Pipeline(config, callbacks=[...])``.
"""

from __future__ import annotations

from modelmill.api.loading import from_bundle, load
from modelmill.api.pipeline import Data, Pipeline

__all__ = ["Data", "Pipeline", "from_bundle", "load"]
