"""Classification and regression metrics, multi-task with missing labels masked
(chemprop's convention)."""

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
            warnings.warn(
                f"task {t}: only one class among {mask.sum()} labels, ROC-AUC undefined (NaN)",
                stacklevel=2,
            )
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
    s["cell"] = [
        f"{m:.{digits}f} ± {sd:.{digits}f}" if c > 1 else f"{m:.{digits}f}"
        for m, sd, c in zip(s["mean"], s["std"], s["count"], strict=True)
    ]
    return s.pivot_table(
        index=index, columns=list(columns), values="cell", aggfunc="first", sort=False
    )


def _seed_rows(pred, n_items: int, name: str) -> np.ndarray:
    """Predictions as (n_seeds, n_items): a 1-D array is one training seed."""
    arr = np.asarray(pred, dtype=float)
    arr = arr.reshape(1, -1) if arr.ndim <= 1 else arr.reshape(arr.shape[0], -1)
    if arr.shape[1] != n_items:
        raise ValueError(
            f"{name} must have one value per item ({n_items}) for each training seed, "
            f"got shape {np.shape(pred)}"
        )
    if arr.shape[0] < 1:
        raise ValueError(f"{name} holds no training seed")
    return arr


def paired_bootstrap(
    y_true,
    pred_a,
    pred_b,
    metric,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    groups=None,
) -> dict[str, float]:
    """Is model A better than model B on the same test items? A paired bootstrap over the items,
    and over the training seeds where a model was trained with several.

    ``metric(y_true, y_pred) -> float`` (e.g. ``lambda y, p: regression_metrics(y, p)["rmse"]``).
    ``pred_a`` / ``pred_b``: one prediction per item (n,), or one row per training seed
    (n_seeds, n); a model's score is the mean over its seeds of the metric on the items.
    Each of ``n_boot`` resamples draws the test items with replacement (the same items for both
    models: paired) and, for a model with several seeds, its seeds with replacement (a two-level
    bootstrap: the interval then holds the training variance as well as the test sample's);
    returns ``a``, ``b`` and ``diff = a - b`` on the full test set and every seed, the ``level``
    percentile interval of the difference (``low``, ``high``), ``p_lower``, the share of resamples
    where A's metric is lower than B's (for RMSE: A better; for ROC-AUC: A worse), ``n``, the
    resamples used (those where the metric is undefined, e.g. a ROC-AUC drawn with one class, are
    skipped), and ``seeds_a`` / ``seeds_b``. An interval that straddles 0 means the test set (and
    the seeds) cannot tell A from B.

    ``groups`` (one label per item, e.g. the split each test molecule comes from): a stratified
    bootstrap. Items are resampled within each group, and a model's score is the mean over groups
    of its metric on that group, so models trained on different splits are never scored on one
    pooled ranking.
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    n_items = len(y_true)
    if (
        np.ndim(pred_a) <= 1
        and np.ndim(pred_b) <= 1
        and not (len(np.ravel(pred_a)) == len(np.ravel(pred_b)) == n_items)
    ):
        raise ValueError(
            f"y_true, pred_a and pred_b must have one value per item (lengths {n_items}, "
            f"{len(np.ravel(pred_a))}, {len(np.ravel(pred_b))})"
        )
    runs_a, runs_b = _seed_rows(pred_a, n_items, "pred_a"), _seed_rows(pred_b, n_items, "pred_b")
    if n_items < 2:
        raise ValueError("a paired bootstrap needs at least 2 test items")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    if groups is None:
        members = [np.arange(n_items)]
    else:
        groups = np.asarray(groups).ravel()
        if len(groups) != n_items:
            raise ValueError(f"groups has {len(groups)} labels for {n_items} items")
        members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]

    def score(runs: np.ndarray, rows: np.ndarray, parts: list[np.ndarray]) -> float:
        return float(
            np.mean([np.mean([metric(y_true[i], runs[r][i]) for i in parts]) for r in rows])
        )

    all_a, all_b = np.arange(len(runs_a)), np.arange(len(runs_b))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        parts = [m[rng.integers(0, len(m), len(m))] for m in members]
        rows_a = rng.integers(0, len(runs_a), len(runs_a)) if len(runs_a) > 1 else all_a
        rows_b = rng.integers(0, len(runs_b), len(runs_b)) if len(runs_b) > 1 else all_b
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = score(runs_a, rows_a, parts) - score(runs_b, rows_b, parts)
        if np.isfinite(d):
            diffs.append(d)
    diffs = np.asarray(diffs)
    a, b = score(runs_a, all_a, members), score(runs_b, all_b, members)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail]) if len(diffs) else (np.nan, np.nan)
    return {
        "a": a,
        "b": b,
        "diff": a - b,
        "low": float(low),
        "high": float(high),
        "p_lower": float(np.mean(diffs < 0)) if len(diffs) else float("nan"),
        "n": int(len(diffs)),
        "seeds_a": int(len(runs_a)),
        "seeds_b": int(len(runs_b)),
    }


def task_metrics(kind: str, y_true, y_pred) -> dict[str, float]:
    """The metrics of a task kind, in one place: ``classification`` (scores are class-1
    probabilities; one column or several tasks): ``roc_auc`` (mean over tasks with a defined AUC)
    and, for one task, ``accuracy`` and ``f1``; ``regression``: ``mae``, ``rmse``, ``r2``."""
    if kind == "classification":
        y_true = np.asarray(y_true, dtype=float)
        y_pred = np.asarray(y_pred, dtype=float)
        if y_true.ndim == 2 and y_true.shape[1] > 1:
            return {"roc_auc": mean_roc_auc(y_true, y_pred)}
        return classification_metrics(y_true.ravel(), y_pred.ravel())
    if kind == "regression":
        return regression_metrics(y_true, y_pred)
    raise ValueError(f"task kind must be 'classification' or 'regression', not {kind!r}")


def roc_auc_fast(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC of 1-D labels ``y`` (0/1, NaN skipped) and scores ``p`` as the Mann-Whitney
    statistic with average ranks for ties: the value of ``sklearn.metrics.roc_auc_score`` (NaN with
    one class only), about a hundred times faster, for the thousands of paired-bootstrap
    resamples of a claim."""
    from scipy.stats import rankdata

    y, p = np.asarray(y, dtype=float).ravel(), np.asarray(p, dtype=float).ravel()
    mask = ~np.isnan(y)
    y, p = y[mask], p[mask]
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
