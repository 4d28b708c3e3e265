"""The 03_lardo notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd

from molkit.methods.lardo.experiment import METHOD_LABELS

#: The Theory section's pipeline: the paper's contribution is the DSM-calibrated two-stage prompting
#: and the graph-text alignment (highlighted).
PIPELINE_STEPS = (
    "dataset: name, task, target",
    ["stage 1 (paper): LLM names properties", "stage 1 (ranked): LLM ranks DSM descriptors"],
    ["DSM (RDKit) computes the mapped properties", "SMILES of each molecule"],
    "stage 2: LLM describes the molecule with the DSM values",
    ["sentence encoder (frozen) embeds the text", "GIN embeds the graph"],
    "graph-text contrastive pre-training (CLIP loss, held-out validation)",
    "fine-tune the GIN on the property (balanced scaffold splits)",
)


def plot_pipeline():
    """The method as boxes and arrows (`molkit.viz.pipeline_figure`)."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(PIPELINE_STEPS, title="MolGraph-LarDo", highlight=(1, 2, 3, 5))


def plot_calibration(summary: pd.DataFrame, calibration: pd.DataFrame):
    """Two panels: the share of descriptions with at least one claim contradicting RDKit per
    variant, with its 95 % interval (``summary`` from `calibration`); the share of claims
    contradicting RDKit per variant and property (``calibration``: one row per checked claim)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 2]})
    labels = [METHOD_LABELS[v] for v in summary.index]
    share = summary["contradicting RDKit"].to_numpy()
    err = np.vstack([share - summary["low"].to_numpy(), summary["high"].to_numpy() - share])
    axes[0].barh(labels, share, xerr=err, color="#C44E52")
    axes[0].invert_yaxis()
    n = int(summary["descriptions"].iloc[0]) if len(summary) else 0
    axes[0].set_xlabel(f"share of descriptions contradicting RDKit\n(same {n} molecules, 95 % CI)")
    if len(calibration):
        table = calibration.assign(variant=calibration["variant"].map(METHOD_LABELS))
        sns.barplot(
            table,
            x="descriptor",
            y="contradicts",
            hue="variant",
            errorbar=None,
            ax=axes[1],
            hue_order=labels,
        )
        axes[1].legend(fontsize=7, title=None)
    axes[1].set_ylabel("share of claims contradicting RDKit")
    axes[1].set_xlabel("property the claim is about")
    axes[1].tick_params(axis="x", labelrotation=30)
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
    """Mean ± std over splits of the test metric per method, one panel per dataset and metric
    (same method rows); each panel's title gives the splits and test molecules per split."""
    import matplotlib.pyplot as plt

    table = results[results["metric"].isin(["roc_auc", "rmse", "roc_auc_frozen", "rmse_frozen"])]
    panels = sorted(dict.fromkeys(zip(table["dataset"], table["metric"], strict=True)))
    methods = list(dict.fromkeys(table["method"]))
    rows = np.arange(len(methods))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.4 * len(panels) + 1.5, 0.35 * len(methods) + 1.8), squeeze=False
    )
    for ax, (dataset, metric) in zip(axes[0], panels, strict=True):
        part = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
        stats = part.groupby("method")["value"].agg(["mean", "std"]).reindex(methods)
        ax.barh(rows, stats["mean"].fillna(0.0), xerr=stats["std"].fillna(0.0), color="#55A868")
        for row in rows[stats["mean"].isna().to_numpy()]:
            ax.text(0.02, row, "n/a", va="center", transform=ax.get_yaxis_transform(), fontsize=8)
        n_splits = part["seed"].nunique()
        ax.set_title(f"{dataset} · {metric}\n{n_splits} split{'s' if n_splits != 1 else ''}",
                     fontsize=9)  # fmt: skip
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
    """Two PCA maps of ``dataset``'s test graphs (first split), coloured by the first label: the
    random GIN and the GIN after LarDo pre-training (``embeddings`` from `pretrain_and_finetune`);
    each title gives the class separation (`separation_score`)."""
    import matplotlib.pyplot as plt

    from molkit.methods.lardo.experiment import separation_score
    from molkit.viz import embedding_map

    emb = embeddings[dataset]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, title in (
        (axes[0], "before", "random GIN"),
        (axes[1], "after", "after LarDo pre-training"),
    ):
        score = separation_score(emb[key], emb["y"])
        embedding_map(
            emb[key], emb["y"], title=f"{dataset}: {title}\nsilhouette of the classes {score:+.3f}",
            label="label", ax=ax, seed=seed,
        )  # fmt: skip
    fig.tight_layout()
    return fig


def plot_pretraining_loss(history: pd.DataFrame):
    """Per dataset, the CLIP loss per epoch on the training and the held-out pairs of the first
    split's LarDo pre-training (the best epoch marked), and the learned temperature of every
    pre-training run of that split."""
    import matplotlib.pyplot as plt

    first = history[history["split"] == history["split"].min()]
    datasets = list(dict.fromkeys(first["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4 * len(datasets), 6.4), squeeze=False)
    lardo = METHOD_LABELS["lardo"]
    for j, name in enumerate(datasets):
        part = first[first["dataset"] == name]
        main = part[part["method"] == lardo]
        ax = axes[0, j]
        ax.plot(main["epoch"], main["loss"], label="training pairs")
        ax.plot(main["epoch"], main["valid_loss"], label="held-out pairs")
        if len(main):
            best = int(main["best_epoch"].iloc[0])
            ax.axvline(best, color="grey", ls=":", lw=1, label=f"best epoch {best}")
            ax.set_title(f"{name}: {lardo}, {int(main['pairs'].iloc[0])} pairs", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("CLIP loss")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows["epoch"], rows["temperature"], label=method)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learned temperature")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
