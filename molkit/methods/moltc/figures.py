"""The 04_moltc notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from molkit.methods.moltc.experiment import LMSection
from molkit.methods.moltc.method import PIPELINE_STEPS, STAGES

__all__ = [
    "baseline_bars", "parity_plots", "pipeline", "roc_curves", "stages", "text_table",
    "training_curves",
]  # fmt: skip

SPLIT_COLOURS = {
    "upstream": "#4C72B0", "drug_cold": "#DD8452", "drug_cold_both": "#C44E52",
    "random": "#55A868", "grouped": "#8172B3", "unseen_solvent": "#937860",
}  # fmt: skip


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
        colours = [SPLIT_COLOURS.get(s, "#999999") for s in stats.split]
        ax.barh(labels, stats["mean"], xerr=stats["std"].fillna(0), color=colours)
        seeds = part.seed.nunique()
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}; whole test parts, up to {seeds} seeds", fontsize=9)
    axes[0].axvline(0.5, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    return fig


def stages():
    """Which parts train in each stage (`STAGES`): the paper, the official code and this notebook,
    one coloured cell per stage and part (trained green, frozen grey), the paper's Figure 2 as a
    table."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(STAGES).T
    colours = {"trained": "#8FD19E", "frozen": "#D0D0D0", "-": "#FFFFFF"}
    cells = [[colours[v.split(",")[0]] for v in row] for row in frame.to_numpy()]
    fig, ax = plt.subplots(figsize=(11, 2.6))
    ax.axis("off")
    table = ax.table(cellText=frame.to_numpy().tolist(), rowLabels=list(frame.index),
                     colLabels=list(frame.columns), cellColours=cells, loc="center",
                     cellLoc="center")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.4)
    ax.set_title("What trains in each stage (green: trained, grey: frozen)", fontsize=10)
    return fig


def training_curves(section: LMSection):
    """The validation loss of every run of an LM section against the optimiser step, one panel per
    variant and one line per training seed, the kept step (the lowest validation loss) marked: how
    each step count was chosen."""
    import matplotlib.pyplot as plt

    curves = section.curves
    variants = list(section.runs)
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.4), squeeze=False,
                             sharey=True)  # fmt: skip
    for ax, name in zip(axes[0], variants, strict=True):
        for run in section.runs[name]:
            part = curves[(curves.variant == name) & (curves.seed == run.seed)]
            if not len(part) or "valid_loss" not in part:
                continue
            line = ax.plot(part.step, part.valid_loss, marker=".", label=f"seed {run.seed}")[0]
            kept = part[part.step == run.report.best_step]
            ax.scatter(kept.step, kept.valid_loss, s=80, facecolors="none",
                       edgecolors=line.get_color())  # fmt: skip
        ax.set_xlabel("optimiser step")
        ax.set_title(f"{section.dataset}: {name}", fontsize=8)
        ax.legend(fontsize=7, title="circle: kept step", title_fontsize=7)
    axes[0, 0].set_ylabel("validation loss (answer tokens)")
    fig.tight_layout()
    return fig


def roc_curves(section: LMSection):
    """ROC curves on each DDI LM test set: the trivial baseline and the other baselines on the same
    pairs (solid) and each LM variant's first training seed (dashed); n in each title."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    sets = list(section.y_test)
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.6), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        y, table = section.y_test[set_name], section.tables[set_name]
        shown = {**dict([section.trivial[set_name]]), **section.context.get(set_name, {})}
        for name, pred in shown.items():
            ax.plot(*roc_curve(y, pred)[:2], label=f"{name} ({table.loc[name, 'roc_auc']:.3f})")
        for name, runs in section.runs.items():
            fpr, tpr, _ = roc_curve(y, runs[0].tests[set_name].y_pred)
            ax.plot(fpr, tpr, ls="--", label=f"{name}, seed {runs[0].seed} "
                    f"(mean of {len(runs)}: {table.loc[name, 'roc_auc']:.3f})")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"DDI, {section.set_labels[set_name]}: n = {len(y)}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", title="ROC-AUC", title_fontsize=7)
    fig.tight_layout()
    return fig


def parity_plots(section: LMSection, unit: str = ""):
    """Predicted against measured on a regression LM section's first test set: the baselines on
    the same pairs, then each LM variant's first training seed (its chosen readout), one panel
    each with its RMSE; n and seed in each title."""
    import matplotlib.pyplot as plt

    set_name = next(iter(section.y_test))
    y = section.y_test[set_name]
    panels = {**section.context.get(set_name, {})}
    titles = {name: "" for name in panels}
    for name, runs in section.runs.items():
        panels[name] = runs[0].tests[set_name].y_pred
        titles[name] = f", seed {runs[0].seed}, {runs[0].readout}"
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.5), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    lo, hi = np.min(y) - 1, np.max(y) + 1
    for ax, (name, pred) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(y, pred, s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        rmse = float(np.sqrt(np.mean((np.asarray(pred) - y) ** 2)))
        ax.set_title(f"{name}\nRMSE {rmse:.2f} (n = {len(y)}{titles[name]})", fontsize=8)
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
