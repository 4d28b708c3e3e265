"""The figures of notebook 01: each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from molkit.eval.metrics import summarize
from molkit.methods.molex.experiment import MAIN_METHODS, PAPER_MUTAG_ACCURACY
from molkit.viz.explain import attribution_grid, grouped_bars, speed_bars
from molkit.viz.pipeline import pipeline_figure

__all__ = [
    "accuracy_bars",
    "calibration_curves",
    "calibration_gain_bars",
    "explanation_bars",
    "explanation_examples",
    "pipeline",
    "speed_figure",
]

#: The paper's average calibration gains (accuracy, explanation AUC), drawn as dashed lines.
PAPER_CALIBRATION_GAIN = {"accuracy": 0.070, "explanation_auc": 0.088, "explanation_auc_abs": 0.088}


def pipeline():
    """MoleX's steps as boxes and arrows (the paper's contributions filled)."""
    return pipeline_figure(
        [
            "molecule (SMILES)",
            "functional-group n-grams as SMILES fragments",
            "chemical LM, IB fine-tuned top layers",
            "summed n-gram embeddings",
            "sparse reduction",
            "logistic regression",
            "residual calibration (orthogonal complement)",
            ["prediction", "exact n-gram / atom contributions"],
        ],
        title="MoleX: an LLM-augmented linear model",
        highlight=[2, 4, 6],
    )


def accuracy_bars(results: pd.DataFrame):
    """Test accuracy (mean ± std over seeds) of the main methods per dataset, with the paper's
    MoleX accuracy on MUTAG as a dashed marker. ``results``: the benchmark rows."""
    summary = summarize(results[results["metric"] == "accuracy"])
    return grouped_bars(
        summary[summary["method"].isin(MAIN_METHODS)],
        ylabel="test accuracy",
        title="Accuracy (mean ± std over seeds); dashed: paper's MoleX on MUTAG",
        reference={"mutag": PAPER_MUTAG_ACCURACY},
    )


def explanation_bars(scores: pd.DataFrame):
    """Explanation AUC per dataset and method, signed (top) and |importance| (bottom), chance at
    0.5. ``scores``: the explanation rows (`explanation_scores`' ``scores``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 7.5))
    for ax, metric, label in zip(
        axes, ["explanation_auc", "explanation_auc_abs"], ["signed", "|importance|"], strict=True
    ):
        part = summarize(scores[scores["metric"] == metric])
        grouped_bars(part, ylabel=f"explanation AUC ({label})", ax=ax)
        ax.axhline(0.5, c="grey", lw=0.8)
    fig.tight_layout()
    return fig


def calibration_gain_bars(summary: pd.DataFrame):
    """Calibration gain (mean ± std over seeds) per dataset in accuracy and both explanation
    AUCs, with the paper's average gains dashed. ``summary``: `calibration_gain`'s ``summary``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for ax, (metric, paper) in zip(axes, PAPER_CALIBRATION_GAIN.items(), strict=True):
        part = summary[summary["metric"] == metric]
        ax.bar(part["dataset"], part["mean"], yerr=part["std"].fillna(0), capsize=3)
        ax.axhline(paper, ls="--", c="k", lw=1, label="paper (average)")
        ax.axhline(0, c="grey", lw=0.8)
        ax.set_title(f"calibration gain in {metric}")
        ax.legend(fontsize=8)
    return fig


def calibration_curves(histories: Mapping[int, pd.DataFrame], name: str):
    """Training (dotted) and validation log-loss per calibration round, one colour per seed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (s, hist) in enumerate(histories.items()):
        ax.plot(hist["round"], hist["valid_loss"], c=f"C{i}", label=f"valid, seed {s}")
        ax.plot(hist["round"], hist["train_loss"], c=f"C{i}", ls=":", label=f"train, seed {s}")
    ax.set_xlabel("calibration round")
    ax.set_ylabel("log-loss")
    ax.set_title(f"residual calibration on {name}")
    ax.legend(fontsize=7)
    return fig


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
