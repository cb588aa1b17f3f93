"""Why the model decided: per-record attributions per input column (Integrated Gradients
for torch models, TreeSHAP for trees, permutation sampling for ensembles) and global
permutation importance. Captum is an optional extra (``modelmill[explain]``), imported
only when Integrated Gradients run."""

from modelmill.explain.attributions import METHODS, Explanation, attributions
from modelmill.explain.baseline import baseline_record
from modelmill.explain.importance import chosen_metric, importance
from modelmill.explain.outputs import write_explanations

__all__ = ["METHODS", "Explanation", "attributions", "baseline_record", "chosen_metric", "importance",
           "write_explanations"]
