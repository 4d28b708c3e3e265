"""The figures of notebook 01: each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from molkit.eval.metrics import summarize
from molkit.methods.molex.experiment import (
    MAIN_METHODS,
    PAPER_CALIBRATION_GAIN,
    PAPER_MUTAG_ACCURACY,
)
from molkit.viz.explain import attribution_grid, grouped_bars, speed_bars
from molkit.viz.pipeline import pipeline_figure

__all__ = [
    "accuracy_bars",
    "calibration_curves",
    "calibration_gain_bars",
    "explanation_bars",
    "explanation_examples",
    "finetune_curves",
    "loadings_heatmap",
    "molecule_contributions",
    "pipeline",
    "speed_figure",
]


def pipeline():
    """MoleX's steps as boxes and arrows (the paper's contributions filled)."""
    return pipeline_figure(
        [
            "molecule (SMILES)",
            "functional-group n-grams as SMILES fragments",
            "chemical LM, IB fine-tuned top layers",
            "bottleneck mean of each n-gram, summed",
            "sparse reduction",
            "logistic regression",
            "residual calibration (orthogonal complement)",
            ["prediction", "exact n-gram / atom contributions"],
        ],
        title="MoleX: an LLM-augmented linear model",
        highlight=[2, 4, 6],
    )


def accuracy_bars(results: pd.DataFrame):
    """Test accuracy (mean ± std over folds) of the main methods per dataset, with the paper's
    MoleX accuracy on MUTAG as a dashed marker. ``results``: the benchmark rows."""
    summary = summarize(results[results["metric"] == "accuracy"])
    return grouped_bars(
        summary[summary["method"].isin(MAIN_METHODS)],
        ylabel="test accuracy",
        title="Accuracy (mean ± std over cross-validation folds); dashed: paper's MoleX on MUTAG",
        reference={"mutag": PAPER_MUTAG_ACCURACY},
    )


def explanation_bars(scores: pd.DataFrame):
    """Explanation AUC per dataset and method, pooled over folds, in the four readings (atom /
    group token, signed / |importance|), chance at 0.5, the molecules scored under each bar.
    ``scores``: `explanation_scores`' ``scores``."""
    import matplotlib.pyplot as plt
    import numpy as np

    readings = list(dict.fromkeys(scores["reading"]))
    fig, axes = plt.subplots(len(readings), 1, figsize=(11, 3.2 * len(readings)), squeeze=False)
    for ax, reading in zip(axes[:, 0], readings, strict=True):
        part = scores[scores["reading"] == reading]
        datasets = list(dict.fromkeys(part["dataset"]))
        methods = list(dict.fromkeys(part["method"]))
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            rows = part[part["method"] == method].set_index("dataset").reindex(datasets)
            x = np.arange(len(datasets)) + j * width
            ax.bar(x, rows["auc"], width, label=method)
        ax.set_xticks(
            np.arange(len(datasets)) + 0.4 - width / 2,
            [f"{d}\n(n={int(part[part['dataset'] == d]['n_explained'].max())})" for d in datasets],
        )
        ax.axhline(0.5, c="grey", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"AUC ({reading.replace('_abs', ', |importance|')})")
    axes[0, 0].legend(fontsize=8, ncol=len(methods))
    axes[0, 0].set_title("Explanation AUC, test molecules pooled over folds (n: molecules scored)")
    fig.tight_layout()
    return fig


def calibration_gain_bars(gain: pd.DataFrame):
    """Calibration gain in points per dataset (pooled over folds) in accuracy and the
    |importance| explanation AUCs, with the paper's average gains dashed. ``gain``:
    `calibration_gain`'s ``gain``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for ax, (metric, paper) in zip(axes, PAPER_CALIBRATION_GAIN.items(), strict=True):
        part = gain[gain["metric"] == metric]
        ax.bar(part["dataset"], part["gain"])
        ax.axhline(paper, ls="--", c="k", lw=1, label="paper (average)")
        ax.axhline(0, c="grey", lw=0.8)
        ax.set_title(f"calibration gain in {metric} (points)")
        ax.legend(fontsize=8)
    return fig


def finetune_curves(finetune: pd.DataFrame):
    """IB fine-tuning curves per dataset: training and validation cross-entropy and the KL term
    per epoch, mean over folds (thin: every fold's validation curve), beta > 0 solid, beta = 0
    dashed. ``finetune``: the benchmark's ``finetune`` artefact."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(finetune["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.2 * len(datasets), 5.6), squeeze=False)
    for j, name in enumerate(datasets):
        part = finetune[finetune["dataset"] == name]
        for beta, ls in zip(sorted(part["beta"].unique(), reverse=True), ("-", "--"), strict=False):
            b = part[part["beta"] == beta]
            mean = b.groupby("epoch")[["train_ce", "valid_ce", "train_kl"]].mean()
            for _, fold in b.groupby("fold"):
                axes[0, j].plot(fold["epoch"], fold["valid_ce"], c="C1", lw=0.3, ls=ls)
            axes[0, j].plot(mean.index, mean["train_ce"], c="C0", ls=ls, label=f"train, β={beta:g}")
            axes[0, j].plot(mean.index, mean["valid_ce"], c="C1", ls=ls, label=f"valid, β={beta:g}")
            axes[1, j].plot(mean.index, mean["train_kl"], c="C2", ls=ls, label=f"β={beta:g}")
        axes[0, j].set_title(f"{name} ({part['fold'].nunique()} folds)")
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].set_ylabel("cross-entropy")
    axes[1, 0].set_ylabel("KL to N(0, I)")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def loadings_heatmap(loadings, weights, dataset: str):
    """The sparse reduction's loadings (components x bottleneck features; white: exactly zero)
    next to the logistic weight of each component."""
    import matplotlib.pyplot as plt
    import numpy as np

    L = np.asarray(loadings)
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(12, 0.3 * len(L) + 1.8), gridspec_kw={"width_ratios": [6, 1]}
    )
    lim = float(np.abs(L).max()) or 1.0
    shown = np.where(L == 0, np.nan, L)
    im = ax.imshow(shown, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim)
    ax.set_xlabel("feature (bottleneck mean dimension)")
    ax.set_ylabel("component")
    ax.set_title(f"{dataset}: sparse loadings ({np.mean(L == 0):.0%} exactly zero)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    bx.barh(np.arange(len(weights)), weights, color=["C3" if w > 0 else "C0" for w in weights])
    bx.set_ylim(len(weights) - 0.5, -0.5)
    bx.set_title("logistic weight")
    fig.tight_layout()
    return fig


def molecule_contributions(smiles: str, atom_scores, truth, title: str = ""):
    """One molecule's MoleX atom scores (each n-gram's contribution spread over its atoms; red
    toward the explained class) next to its ground truth."""
    return attribution_grid([smiles], [atom_scores], [truth], [title])


def explanation_examples(examples: pd.DataFrame, n: int):
    """MoleX atom scores next to the ground truth for the first ``n`` test molecules with a
    ground truth (`DatasetRun.examples`); None when there is none."""
    ex = examples[examples["truth"].notna()].head(n)
    if not len(ex):
        return None
    legends = [
        f"(label {label}, predicted {pred})"
        for label, pred in zip(ex["label"], ex["prediction"], strict=True)
    ]
    return attribution_grid(
        ex["smiles"].tolist(), ex["molex"].tolist(), ex["truth"].tolist(), legends
    )


def speed_figure(steps: pd.DataFrame, dataset: str, threads: int):
    """Seconds per molecule of every MoleX and LM-classifier step (`measure_throughput`)."""
    return speed_bars(
        steps, title=f"CPU inference on {dataset} test molecules ({threads} thread(s))"
    )


def calibration_curves(histories: Mapping[int, pd.DataFrame], name: str):
    """Training (dotted) and validation log-loss per calibration round, one colour per fold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, hist in enumerate(histories.values()):
        label = "valid (solid) / train (dotted), a colour per fold" if i == 0 else None
        ax.plot(hist["round"], hist["valid_loss"], c=f"C{i % 10}", label=label)
        ax.plot(hist["round"], hist["train_loss"], c=f"C{i % 10}", ls=":")
    ax.set_xlabel("calibration round")
    ax.set_ylabel("log-loss")
    ax.set_title(f"residual calibration on {name}")
    ax.legend(fontsize=7)
    return fig
