"""Evaluation: metrics (classification, regression, text, molecules) and explanation scoring.

- `molkit.eval.metrics`: classification / regression metrics, masked multi-task ROC-AUC,
  mean ± std tables.
- `molkit.eval.text`: MolT5-style caption (BLEU, ROUGE, METEOR) and molecule (validity, FTS, exact
  match) metrics.
- `molkit.eval.explain`: scoring explanations against ground-truth substructures.
"""

from molkit.eval.metrics import (
    classification_metrics,
    mean_pm_std,
    mean_roc_auc,
    paired_bootstrap,
    regression_metrics,
    roc_auc_masked,
    summarize,
)
from molkit.eval.text import (
    caption_metrics,
    meteor_available,
    molecule_metrics,
    molecule_similarity,
)

__all__ = [
    "caption_metrics",
    "classification_metrics",
    "mean_pm_std",
    "mean_roc_auc",
    "meteor_available",
    "molecule_metrics",
    "molecule_similarity",
    "paired_bootstrap",
    "regression_metrics",
    "roc_auc_masked",
    "summarize",
]
