"""docs/config.md is generated from the config classes; this keeps it from drifting."""

from __future__ import annotations

import json
from pathlib import Path

from modelmill.config.reference import json_schema, markdown_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_config_reference_is_up_to_date() -> None:
    assert DOCS.read_text() == markdown_reference(), (
        "docs/config.md is stale; regenerate it with: .venv/bin/python -c \"from modelmill.config.reference "
        "import markdown_reference; open('docs/config.md','w').write(markdown_reference())\""
    )


def test_every_option_is_documented() -> None:
    text = markdown_reference()
    for key in ["max_lr_factor", "min_frequency", "class_weights", "time_budget", "test_source", "indicator"]:
        assert f"`{key}`" in text


def test_json_schema_names_the_feature_types() -> None:
    schema = json.loads(json_schema())
    assert {"NumberFeatureConfig", "CategoryFeatureConfig", "MLPModelConfig"} <= set(schema["$defs"])
