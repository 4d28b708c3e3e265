"""The 04_moltc notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from molkit.methods.moltc.method import PIPELINE_STEPS

__all__ = ["baseline_bars", "parity_plots", "pipeline", "roc_curves", "text_table"]

SPLIT_COLOURS = {"upstream": "#4C72B0", "drug_cold": "#DD8452", "drug_cold_both": "#C44E52"}


def pipeline():
    """MolTC's steps as boxes and arrows (`molkit.viz.pipeline_figure`), its own parts filled."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(
        PIPELINE_STEPS, title="MolTC: a molecule pair as graph tokens in a language model",
        highlight=(2, 4),
    )  # fmt: skip


def baseline_bars(rows: pd.DataFrame, regression: str = "freesolv-pairs"):
    """Two panels from tidy result rows: DDI test ROC-AUC per method and split (mean ± std over
    seeds), and ``regression``'s test RMSE per method and split."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    panels = (
        (axes[0], "chchminer", "roc_auc", "test ROC-AUC",
         "ChCh-Miner DDI: upstream (blue), drug-cold (orange), both unseen (red)"),
        (axes[1], regression, "rmse", "test RMSE", f"{regression}"),
    )  # fmt: skip
    for ax, dataset, metric, xlabel, title in panels:
        part = rows[(rows.dataset == dataset) & (rows.metric == metric)]
        stats = part.groupby(["split", "method"], sort=False)["value"].agg(["mean", "std"])
        stats = stats.reset_index()
        labels = [f"{m} [{s}]" for s, m in zip(stats.split, stats.method, strict=True)]
        colours = [SPLIT_COLOURS.get(s, "#55A868") for s in stats.split]
        ax.barh(labels, stats["mean"], xerr=stats["std"].fillna(0), color=colours)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=9)
    axes[0].axvline(0.5, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    return fig


def roc_curves(y_test: np.ndarray, baseline_preds: Mapping[str, np.ndarray],
               lm_runs: Mapping[str, Mapping]):  # fmt: skip
    """ROC curves on the drug-cold DDI test part: the baselines on the whole part (solid), the
    LM variants on their subset (dashed; ``lm_runs``: name -> `PairLMSession.run` output)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for name, p in baseline_preds.items():
        fpr, tpr, _ = roc_curve(y_test, p)
        ax.plot(fpr, tpr, label=f"{name} (full test)")
    for name, out in lm_runs.items():
        fpr, tpr, _ = roc_curve(out["y_true"], out["y_pred"])
        ax.plot(fpr, tpr, ls="--", label=f"{name} (LM subset)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("DDI, drug-cold test split")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def parity_plots(
    y_test: np.ndarray,
    baseline_preds: Mapping[str, np.ndarray],
    lm_runs: Mapping[str, Mapping],
    shown: Sequence[str],
    unit: str = "kcal/mol",
):
    """Predicted against measured: each baseline of ``baseline_preds`` on the whole test part,
    then the LM variants ``shown`` on their subset, one panel each with its RMSE."""
    import matplotlib.pyplot as plt

    panels = [(m, y_test, p) for m, p in baseline_preds.items()]
    panels += [(m, lm_runs[m]["y_true"], lm_runs[m]["y_pred"]) for m in shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.4), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    lo, hi = np.min(y_test) - 1, np.max(y_test) + 1
    for ax, (name, y_true, y_pred) in zip(axes[0], panels, strict=True):
        ax.scatter(y_true, y_pred, s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        rmse = float(np.sqrt(np.mean((np.asarray(y_pred) - y_true) ** 2)))
        ax.set_title(f"{name}\nRMSE {rmse:.2f}", fontsize=8)
        ax.set_xlabel(f"measured ({unit})")
    axes[0, 0].set_ylabel(f"predicted ({unit})")
    fig.tight_layout()
    return fig


def text_table(frame: pd.DataFrame, title: str, col_widths: Sequence[float] | None = None):
    """A DataFrame drawn as a table (left-aligned cells), e.g. generated chains of thought."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 0.45 * len(frame) + 0.8))
    ax.axis("off")
    table = ax.table(cellText=frame.astype(str).values.tolist(), colLabels=list(frame.columns),
                     loc="center", cellLoc="left", colWidths=col_widths)  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(title)
    return fig
