"""The serving process holds a predictor, not a training pipeline: building the app from a
bundle imports neither matplotlib nor the trainer (nor evaluation or scikit-learn), and
without a prediction log no database layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KEPT_OUT = ["matplotlib", "modelmill.training", "modelmill.api", "modelmill.evaluation", "modelmill.scoring",
            "sklearn", "sqlalchemy", "modelmill.monitoring"]

PROBE = """
import json, sys
from modelmill.serving.app import create_app
from modelmill.serving.server import load_state
state = load_state(sys.argv[1], {"port": 0})
create_app(state)
out = state.current.predict([{"x": 0.5, "colour": "red", "flag": "yes", "when": "2021-03-04", "review": "great"}])
print(json.dumps({"imported": [m for m in json.loads(sys.argv[2]) if m in sys.modules], "answered": len(out)}))
"""


def test_building_the_app_from_a_bundle_imports_no_training_and_no_plots(trained_versions: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(trained_versions / "2"), json.dumps(KEPT_OUT)],
                          capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"imported": [], "answered": 1}, done.stderr[-2000:]
