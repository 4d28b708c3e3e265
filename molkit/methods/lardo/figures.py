"""The 03_lardo notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd

from molkit.methods.lardo.experiment import METHOD_LABELS
from molkit.methods.lardo.method import VARIANTS

#: The Theory section's pipeline: the paper's contribution is the DSM-calibrated two-stage prompting
#: and the graph-text alignment (highlighted).
PIPELINE_STEPS = (
    "dataset: name, task, target",
    "stage 1: LLM names the relevant properties",
    ["DSM (RDKit) computes those properties", "SMILES of each molecule"],
    "stage 2: LLM describes the molecule with the DSM values",
    ["sentence encoder (frozen) embeds the text", "GIN embeds the graph"],
    "graph-text contrastive pre-training (CLIP loss)",
    "fine-tune the GIN on the property (scaffold split)",
)


def plot_pipeline():
    """The method as boxes and arrows (`molkit.viz.pipeline_figure`)."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(PIPELINE_STEPS, title="MolGraph-LarDo", highlight=(1, 2, 3, 5))


def plot_calibration(calibration: pd.DataFrame, n_descriptions: int):
    """Two panels: share of claims that contradict RDKit per variant and descriptor; checkable
    claims per description."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    if len(calibration):
        table = calibration.assign(variant=calibration["variant"].map(METHOD_LABELS))
        sns.barplot(
            table,
            x="descriptor",
            y="contradicts",
            hue="variant",
            errorbar=None,
            ax=axes[0],
            hue_order=[METHOD_LABELS[v] for v in VARIANTS],
        )
        counts = table.groupby("variant", sort=False).size() / n_descriptions
        axes[1].barh(counts.index, counts.to_numpy(), color="#4C72B0")
    axes[0].set_ylabel("share of claims contradicting RDKit")
    axes[0].set_xlabel("property the description talks about")
    axes[0].tick_params(axis="x", labelrotation=30)
    axes[0].legend(fontsize=8, title=None)
    axes[1].set_xlabel("checkable claims per description")
    fig.tight_layout()
    return fig


def plot_examples(examples: pd.DataFrame, width: int = 70):
    """The example table (`example_descriptions`) as a figure: one panel per molecule, RDKit
    values and the texts, wrapped."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 4.2 * len(examples)), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], examples.iterrows(), strict=True):
        lines = [f"SMILES: {row['smiles']}", f"RDKit: {row['RDKit']}", ""]
        for column in examples.columns[2:]:
            text = " ".join(str(row[column]).split())
            lines.append(f"{column}:")
            lines += ["    " + part for part in textwrap.wrap(text, width)[:4]]
        ax.text(
            0,
            1,
            "\n".join(lines),
            va="top",
            ha="left",
            family="monospace",
            fontsize=7.5,
            transform=ax.transAxes,
        )
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_results(results: pd.DataFrame):
    """Mean ± std over seeds of the test metric per method, one panel per dataset and metric
    (same method rows)."""
    import matplotlib.pyplot as plt

    table = results[results["metric"].isin(["roc_auc", "rmse", "roc_auc_frozen", "rmse_frozen"])]
    panels = sorted(dict.fromkeys(zip(table["dataset"], table["metric"], strict=True)))
    methods = list(dict.fromkeys(table["method"]))
    rows = np.arange(len(methods))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.4 * len(panels) + 1.5, 0.35 * len(methods) + 1.6), squeeze=False
    )
    for ax, (dataset, metric) in zip(axes[0], panels, strict=True):
        part = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
        stats = part.groupby("method")["value"].agg(["mean", "std"]).reindex(methods)
        ax.barh(rows, stats["mean"].fillna(0.0), xerr=stats["std"].fillna(0.0), color="#55A868")
        for row in rows[stats["mean"].isna().to_numpy()]:
            ax.text(0.02, row, "n/a", va="center", transform=ax.get_yaxis_transform(), fontsize=8)
        ax.set_title(f"{dataset} · {metric}", fontsize=10)
        ax.set_yticks(rows, methods if ax is axes[0][0] else [""] * len(methods))
        ax.invert_yaxis()
        if metric.startswith("roc"):
            low = float(np.nanmin(stats["mean"] - stats["std"].fillna(0.0)))
            ax.set_xlim(min(0.4, low), 1.0)
    fig.tight_layout()
    return fig


def plot_embeddings(
    embeddings: Mapping[str, Mapping[str, np.ndarray]], dataset: str, seed: int = 0
):
    """Two PCA maps of ``dataset``'s test graphs, coloured by the first label: the random GIN and
    the GIN after LarDo pre-training (``embeddings`` from `pretrain_and_finetune`)."""
    import matplotlib.pyplot as plt

    from molkit.viz import embedding_map

    emb = embeddings[dataset]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    embedding_map(
        emb["before"],
        emb["y"],
        title=f"{dataset}: random GIN",
        label="label",
        ax=axes[0],
        seed=seed,
    )
    embedding_map(
        emb["after"],
        emb["y"],
        title=f"{dataset}: after graph-text pre-training",
        label="label",
        ax=axes[1],
        seed=seed,
    )
    fig.tight_layout()
    return fig


def plot_pretraining_loss(history: pd.DataFrame):
    """CLIP loss per epoch of every pre-training run (mean over seeds), per method and dataset."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.lineplot(history, x="epoch", y="loss", hue="method", style="dataset", errorbar=None, ax=ax)
    ax.set_ylabel("CLIP loss (pre-training pool)")
    ax.legend(fontsize=7)
    return fig
