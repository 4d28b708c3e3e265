"""Classification and regression metrics, multi-task with missing labels masked (chemprop's convention)."""

from __future__ import annotations

import warnings

import numpy as np


def roc_auc_masked(y_true, y_score) -> list[float]:
    """Per-task ROC-AUC of (n, t) arrays, ignoring NaN labels.

    A task whose AUC is undefined (one class only among its labels) is NaN and warned about, never
    replaced by another metric.
    """
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_score = np.asarray(y_score, dtype=float).reshape(len(y_score), -1)
    out = []
    for t in range(y_true.shape[1]):
        mask = ~np.isnan(y_true[:, t])
        labels = y_true[mask, t]
        if len(np.unique(labels)) < 2:
            warnings.warn(f"task {t}: only one class among {mask.sum()} labels, ROC-AUC undefined (NaN)", stacklevel=2)
            out.append(float("nan"))
        else:
            out.append(float(roc_auc_score(labels, y_score[mask, t])))
    return out


def mean_roc_auc(y_true, y_score) -> float:
    """Mean ROC-AUC over the tasks whose AUC is defined."""
    values = [v for v in roc_auc_masked(y_true, y_score) if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def classification_metrics(y_true, y_score, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, ROC-AUC, F1 for a binary task (scores are probabilities of class 1)."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true = np.asarray(y_true, dtype=float).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    mask = ~np.isnan(y_true)
    y_pred = (y_score[mask] >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y_true[mask], y_pred)),
        "roc_auc": roc_auc_masked(y_true[mask, None], y_score[mask, None])[0],
        "f1": float(f1_score(y_true[mask], y_pred, zero_division=0)),
    }


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE and R² over the finite labels."""
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    mask = np.isfinite(y_true)
    err = y_pred[mask] - y_true[mask]
    ss_tot = float(np.sum((y_true[mask] - y_true[mask].mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def summarize(results, by=("dataset", "method", "metric"), value: str = "value"):
    """Mean, std and count of ``value`` over seeds, grouped by ``by`` (a tidy results DataFrame)."""
    grouped = results.groupby(list(by), sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def mean_pm_std(results, index="method", columns=("dataset", "metric"), digits: int = 3):
    """A pivot table of 'mean ± std' strings, for notebooks' results tables."""
    s = summarize(results, by=(index, *columns))
    s["cell"] = [f"{m:.{digits}f} ± {sd:.{digits}f}" if c > 1 else f"{m:.{digits}f}" for m, sd, c in zip(s["mean"], s["std"], s["count"], strict=True)]
    return s.pivot_table(index=index, columns=list(columns), values="cell", aggfunc="first", sort=False)
