"""Evaluation: metrics (scikit-learn) in ``evaluation.metrics``, plots (matplotlib) in
``evaluation.plots`` and the offline HTML report in ``evaluation.report``. Import the
module you need: the package itself imports none of them, so choosing a metric name does
not pay for matplotlib."""
