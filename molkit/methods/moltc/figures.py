"""The 04_moltc notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from molkit.methods.moltc.method import PIPELINE_STEPS, STAGES

__all__ = ["baseline_bars", "parity_plots", "pipeline", "roc_curves", "stages", "text_table"]

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
    seeds, whole test parts; the LM test sets are left out), and ``regression``'s test RMSE per
    method and split."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    panels = (
        (axes[0], "chchminer", "roc_auc", "test ROC-AUC",
         "ChCh-Miner DDI: upstream (blue), drug-cold (orange), both unseen (red)"),
        (axes[1], regression, "rmse", "test RMSE", f"{regression}"),
    )  # fmt: skip
    for ax, dataset, metric, xlabel, title in panels:
        part = rows[(rows.dataset == dataset) & (rows.metric == metric)]
        part = part[~part.split.str.contains("LM")]
        stats = part.groupby(["split", "method"], sort=False)["value"].agg(["mean", "std"])
        stats = stats.reset_index()
        labels = [f"{m} [{s}]" for s, m in zip(stats.split, stats.method, strict=True)]
        colours = [SPLIT_COLOURS.get(s, "#55A868") for s in stats.split]
        ax.barh(labels, stats["mean"], xerr=stats["std"].fillna(0), color=colours)
        seeds = part.seed.nunique()
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}; whole test parts, up to {seeds} seeds", fontsize=9)
    axes[0].axvline(0.5, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    return fig


def stages():
    """Which parts train in each stage (`STAGES`): official MolTC beside this notebook, one
    coloured cell per part and stage (trained green, frozen grey), the paper's Figure 2 as a
    table."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(STAGES)
    colours = {"trained": "#8FD19E", "frozen": "#D0D0D0", "-": "#FFFFFF"}
    cells = [[colours[v.split(",")[0]] for v in row] for row in frame.to_numpy()]
    fig, ax = plt.subplots(figsize=(11, 2.2))
    ax.axis("off")
    table = ax.table(cellText=frame.to_numpy().tolist(), rowLabels=list(frame.index),
                     colLabels=list(frame.columns), cellColours=cells, loc="center",
                     cellLoc="center")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.4)
    ax.set_title("What trains in each stage (green: trained, grey: frozen)", fontsize=10)
    return fig


def _subset(res_runs: Mapping[str, Mapping], set_name: str) -> tuple[np.ndarray, dict]:
    first = next(iter(res_runs.values()))["tests"][set_name]
    return first["y_true"], {m: out["tests"][set_name]["y_pred"] for m, out in res_runs.items()}


def roc_curves(lm: Mapping, seed: int = 0):
    """ROC curves on each DDI LM test set (``lm``: `ddi_lm`'s artefacts): the trivial baseline,
    the other baselines on the same pairs (solid) and the LM variants (dashed); n and seed in each
    title."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    sets = list(lm["trivial"])
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.6), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        y, lm_preds = _subset(lm["runs"], set_name)
        table = lm["tables"][set_name]
        for name in table.index:
            pred = lm_preds.get(name)
            if pred is None:
                continue
            fpr, tpr, _ = roc_curve(y, pred)
            ax.plot(fpr, tpr, ls="--", label=f"{name} ({table.loc[name, 'roc_auc']:.3f})")
        for name in table.index.difference(list(lm_preds), sort=False):
            ax.plot([], [], label=f"{name} ({table.loc[name, 'roc_auc']:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"DDI, {set_name}: n = {len(y)}, seed {seed}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", title="ROC-AUC", title_fontsize=7)
    fig.tight_layout()
    return fig


def parity_plots(lm: Mapping, unit: str = "", seed: int = 0):
    """Predicted against measured on one regression LM test set (``lm``: `freesolv_lm` /
    `role_lm`'s artefacts): the context baselines on the same pairs, then every LM variant, one
    panel each with its RMSE; n and seed in each title."""
    import matplotlib.pyplot as plt

    set_name = next(iter(lm["trivial"]))
    y, lm_preds = _subset(lm["runs"], set_name)
    panels = {**lm.get("context", {}).get(set_name, {}), **lm_preds}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.5), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    lo, hi = np.min(y) - 1, np.max(y) + 1
    for ax, (name, pred) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(y, pred, s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        rmse = float(np.sqrt(np.mean((np.asarray(pred) - y) ** 2)))
        ax.set_title(f"{name}\nRMSE {rmse:.2f} (n = {len(y)}, seed {seed})", fontsize=8)
        ax.set_xlabel(f"measured {unit}".strip())
    axes[0, 0].set_ylabel(f"predicted {unit}".strip())
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
