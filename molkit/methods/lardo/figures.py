"""The 03_lardo notebook's figures; each function returns a matplotlib figure."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from molkit.methods.lardo.experiment import Calibration, Retrieval
from molkit.methods.lardo.protocol import EmbeddingMap
from molkit.methods.lardo.settings import METHOD_LABELS

#: The Theory section's pipeline: the paper's contribution is the DSM-calibrated two-stage prompting
#: and the graph-text alignment (highlighted).
PIPELINE_STEPS = (
    "dataset: name, task, target",
    ["stage 1 (paper): LLM names properties", "stage 1 (ranked): LLM ranks DSM descriptors"],
    ["DSM (RDKit) computes the mapped properties", "SMILES of each molecule"],
    "stage 2: LLM describes the molecule with the DSM values",
    ["sentence encoder (frozen) embeds the text (<MOLECULE> substituted)", "GIN embeds the graph"],
    "graph-text contrastive pre-training (CLIP loss, held-out validation)",
    "fine-tune the GIN on the property (official split x seeds; balanced splits)",
)


def plot_pipeline():
    """The method as boxes and arrows (`molkit.viz.pipeline_figure`)."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(PIPELINE_STEPS, title="MolGraph-LarDo", highlight=(1, 2, 3, 5))


def plot_retrieval(retrieval: Retrieval):
    """Held-out graph -> text retrieval per text source: the top-k hit rate for each k, with the
    95 % interval of its difference to chance, and chance as a grey tick."""
    import matplotlib.pyplot as plt

    table = retrieval.table
    ks = sorted(set(table["k"])) if len(table) else []
    fig, axes = plt.subplots(1, max(1, len(ks)), figsize=(5.2 * max(1, len(ks)), 3.2),
                             squeeze=False)  # fmt: skip
    for ax, k in zip(axes[0], ks, strict=False):
        part = table[table["k"] == k]
        rows = np.arange(len(part))
        rate = part["hit rate"].to_numpy()
        err = np.vstack([part["hit rate - chance"] - part["low"],
                         part["high"] - part["hit rate - chance"]])  # fmt: skip
        ax.barh(rows, rate, xerr=err, color="#4C72B0")
        ax.scatter(part["chance"], rows, marker="|", s=300, color="grey", label="chance")
        ax.set_yticks(rows, part["source"] if ax is axes[0][0] else [""] * len(part))
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"top-{k} retrieval rate")
        n = int(part["held-out molecules"].iloc[0])
        ax.set_title(f"graph -> text among held-out texts\n{n} molecules, "
                     f"{len(retrieval.seeds)} seed(s), {retrieval.split}", fontsize=9)  # fmt: skip
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_calibration(calib: Calibration):
    """Two panels: per variant, contradictions per checkable claim (the count of claims written
    on each bar) and the share of descriptions that make a checkable claim; then the share of
    claims contradicting RDKit per variant and property."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    summary = calib.summary
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 2]})
    labels = [METHOD_LABELS[v] for v in summary.index]
    rows = np.arange(len(summary))
    axes[0].barh(rows - 0.2, summary["share_of_claims_contradicting_rdkit"].fillna(0), 0.4,
                 color="#C44E52", label="contradictions per checkable claim")  # fmt: skip
    axes[0].barh(rows + 0.2, summary["share_descriptions_with_checkable_claim"], 0.4,
                 color="#8C8C8C", label="descriptions making a checkable claim")  # fmt: skip
    for row, n in zip(rows, summary["checkable_claims"], strict=True):
        axes[0].text(0.01, row - 0.2, f"{int(n)} claims", va="center", fontsize=7, color="white")
    axes[0].set_yticks(rows, labels)
    axes[0].invert_yaxis()
    axes[0].set_xlim(0, 1)
    n = int(summary["descriptions"].iloc[0]) if len(summary) else 0
    axes[0].set_xlabel(f"share (the same {n} molecules per variant)")
    axes[0].legend(fontsize=7, loc="lower right")
    if len(calib.table):
        table = calib.table.assign(variant=calib.table["variant"].map(METHOD_LABELS))
        sns.barplot(table, x="descriptor", y="contradicts", hue="variant", errorbar=None,
                    ax=axes[1], hue_order=labels)  # fmt: skip
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
        ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7.5,
                transform=ax.transAxes)  # fmt: skip
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_results(results: pd.DataFrame):
    """Mean ± std over units of the test metric per method: one row of panels per protocol (its
    test split), one panel per dataset and metric (same method rows); each title gives the
    units."""
    import matplotlib.pyplot as plt

    table = results[results["metric"].isin(["roc_auc", "rmse", "roc_auc_frozen", "rmse_frozen"])]
    splits = list(dict.fromkeys(table["split"]))
    columns = list(dict.fromkeys(zip(table["dataset"], table["metric"], strict=True)))
    methods = list(dict.fromkeys(table["method"]))
    rows = np.arange(len(methods))
    fig, axes = plt.subplots(
        len(splits), len(columns), figsize=(2.9 * len(columns) + 1.5,
        (0.3 * len(methods) + 1.2) * len(splits)), squeeze=False,
    )  # fmt: skip
    for i, split in enumerate(splits):
        for j, (dataset, metric) in enumerate(columns):
            ax = axes[i, j]
            part = table[(table["split"] == split) & (table["dataset"] == dataset)
                         & (table["metric"] == metric)]  # fmt: skip
            stats = part.groupby("method")["value"].agg(["mean", "std"]).reindex(methods)
            ax.barh(rows, stats["mean"].fillna(0.0), xerr=stats["std"].fillna(0.0),
                    color="#55A868")  # fmt: skip
            for row in rows[stats["mean"].isna().to_numpy()]:
                ax.text(0.02, row, "n/a", va="center", transform=ax.get_yaxis_transform(),
                        fontsize=8)  # fmt: skip
            ax.set_title(f"{dataset} · {metric}\n{split} · {part['seed'].nunique()} unit(s)",
                         fontsize=8)  # fmt: skip
            ax.set_yticks(rows, methods if j == 0 else [""] * len(methods))
            ax.invert_yaxis()
            if metric.startswith("roc") and stats["mean"].notna().any():
                low = float(np.nanmin(stats["mean"] - stats["std"].fillna(0.0)))
                ax.set_xlim(min(0.4, low), 1.0)
    fig.tight_layout()
    return fig


def plot_embeddings(emb: EmbeddingMap, seed: int = 0):
    """Two PCA maps of a dataset's test graphs (``emb``: the first unit's), coloured by the first
    label: the random GIN and the GIN after LarDo pre-training; each title gives the class
    separation (`separation_score`). Reads the sealed test labels (a display after scoring)."""
    import matplotlib.pyplot as plt

    from molkit.data import final_scoring
    from molkit.viz import embedding_map

    with final_scoring():
        labels = np.asarray(emb.labels, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, points, title in ((axes[0], emb.before, "random GIN"),
                              (axes[1], emb.after, "after LarDo pre-training")):  # fmt: skip
        score = separation_score(points, labels)
        embedding_map(
            points, labels, title=f"{emb.dataset} ({emb.unit}): {title}\nsilhouette of the "
            f"classes {score:+.3f}", label="label", ax=ax, seed=seed,
        )  # fmt: skip
    fig.tight_layout()
    return fig


def _first_unit(history: pd.DataFrame) -> pd.DataFrame:
    """Each dataset's rows of its first unit (the official split's first seed, else the first
    balanced split)."""
    keys = ["protocol", "split", "seed"]
    first = history.groupby("dataset", sort=False)[keys].transform("first")
    return history[(history[keys] == first).all(axis=1)]


def plot_pretraining_loss(history: pd.DataFrame):
    """Per dataset, the CLIP loss per epoch on the training and the held-out pairs of the first
    unit's LarDo pre-training (the kept epoch marked), and the learned temperature of every
    pre-training run of that unit."""
    import matplotlib.pyplot as plt

    first = _first_unit(history)
    datasets = list(dict.fromkeys(first["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4 * len(datasets), 6.4), squeeze=False)
    for j, name in enumerate(datasets):
        part = first[first["dataset"] == name]
        main = part[part["method"] == "lardo"]
        ax = axes[0, j]
        ax.plot(main["epoch"], main["loss"], label="training pairs")
        ax.plot(main["epoch"], main["valid_loss"], label="held-out pairs")
        if len(main):
            best = int(main["best_epoch"].iloc[0])
            ax.axvline(best, color="grey", ls=":", lw=1, label=f"kept epoch {best}")
            ax.set_title(f"{name}: {METHOD_LABELS['lardo']}, {int(main['pairs'].iloc[0])} pairs",
                         fontsize=9)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("CLIP loss")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows["epoch"], rows["temperature"], label=METHOD_LABELS[method])
        ax.set_xlabel("epoch")
        ax.set_ylabel("learned temperature")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_finetuning(history: pd.DataFrame):
    """Per dataset, the validation loss per epoch of every encoder's fine-tuning in the first
    unit, each with the epoch kept (a dot): where early stopping chose."""
    import matplotlib.pyplot as plt

    first = _first_unit(history)
    datasets = list(dict.fromkeys(first["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        part = first[first["dataset"] == name]
        for method, rows in part.groupby("method", sort=False):
            (line,) = ax.plot(rows["epoch"], rows["valid_loss"], label=METHOD_LABELS[method])
            kept = rows[rows["epoch"] == rows["best_epoch"]]
            ax.scatter(kept["epoch"], kept["valid_loss"], color=line.get_color(), zorder=3)
        unit = part[["protocol", "split", "seed"]].iloc[0] if len(part) else None
        where = "" if unit is None else (
            f"{unit['protocol']} split, seed {unit['seed']}" if unit["protocol"] == "official"
            else f"balanced split {unit['split']}"
        )  # fmt: skip
        ax.set_title(f"{name}: fine-tuning ({where})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss (dot: epoch kept)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def separation_score(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """How well the classes separate in an embedding space: the silhouette score (cosine) of the
    labels, in [-1, 1] (0: no structure by class; NaN with fewer than two classes or regression
    targets)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels, dtype=float)
    keep = ~np.isnan(labels)
    values = np.unique(labels[keep])
    if len(values) < 2 or len(values) > 10:
        return float("nan")
    return float(silhouette_score(np.asarray(embeddings)[keep], labels[keep], metric="cosine"))
