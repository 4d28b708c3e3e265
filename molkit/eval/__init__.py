"""Evaluation: metrics (classification, regression, text, molecules) and explanation scoring."""

from molkit.eval.metrics import (
    classification_metrics,
    mean_pm_std,
    mean_roc_auc,
    regression_metrics,
    roc_auc_masked,
    summarize,
)

__all__ = ["classification_metrics", "mean_pm_std", "mean_roc_auc", "regression_metrics", "roc_auc_masked", "summarize"]
