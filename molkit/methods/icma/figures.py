"""The figures of ``02_icma.ipynb``; each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from molkit.methods.icma.method import paper_table

__all__ = ["pipeline_diagram", "metrics_vs_baselines", "retrieval_quality", "draw_translations"]


def pipeline_diagram():
    """ICMA's three stages, from the query to the fine-tuned LM's answer (Theory)."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(
        [
            "query molecule (mol2cap) or caption (cap2mol)",
            ["molecule retrieval: Morgan / RDKit Tanimoto, GIN cosine", "caption retrieval: BM25"],
            "re-ranking: random walk (training), sequence reversal",
            "prompt: k examples + query, within the cut-off",
            "in-context tuning: answer-only loss",
            "greedy generation: caption or SMILES",
        ],
        title="ICMA: hybrid retrieval, post-retrieval re-ranking, in-context molecule tuning",
        highlight=(2, 4),
    )


def metrics_vs_baselines(tables: dict[str, pd.DataFrame], n_test: int):
    """BLEU-2 (mol2cap) and Morgan FTS (cap2mol) of every method of this run, ICMA in red, with the
    published rows (except MolT5-base) as dashed lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, (direction, metric) in zip(
        axes, (("mol2cap", "bleu2"), ("cap2mol", "morgan_fts")), strict=True
    ):
        values = tables[direction][metric].sort_values()
        ax.barh(
            values.index, values.values, color=["C3" if m == "ICMA" else "C0" for m in values.index]
        )
        for name, value in paper_table(direction)[metric].dropna().items():
            if "MolT5-base" not in name:
                ax.axvline(value, ls="--", lw=1, color="grey")
                ax.text(
                    value,
                    len(values) - 0.5,
                    name.split(" (")[0],
                    rotation=90,
                    fontsize=7,
                    va="top",
                    ha="right",
                )
        ax.set_xlabel(f"{metric} ({n_test} test molecules)")
        ax.set_title(direction)
    fig.tight_layout()
    return fig


def retrieval_quality(table: pd.DataFrame, n_pairs: int):
    """BLEU-2 of the top-1 neighbour's caption per molecule retriever (mol2cap retrieval only)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    rows = table.loc["mol2cap"]
    ax.bar(rows.index, rows["bleu2"], color="C0")
    ax.set_ylabel("BLEU-2 of the top-1 neighbour's caption")
    ax.set_title(f"mol2cap retrieval only ({n_pairs} test molecules)")
    return fig


def draw_translations(
    truth: Sequence[str], predictions: dict[str, Sequence[str]], size: float = 2.2
):
    """One row per molecule, the ground truth then each method's prediction (an unparsable
    prediction is shown as text, marked invalid)."""
    import matplotlib.pyplot as plt
    from rdkit import Chem
    from rdkit.Chem import Draw

    columns = {"ground truth": list(truth), **{k: list(v) for k, v in predictions.items()}}
    fig, axes = plt.subplots(
        len(truth), len(columns), figsize=(size * len(columns), size * len(truth)), squeeze=False
    )
    for col, (name, smiles) in enumerate(columns.items()):
        for row, smi in enumerate(smiles):
            ax = axes[row, col]
            ax.axis("off")
            mol = Chem.MolFromSmiles(smi) if str(smi).strip() else None
            if mol is None:
                ax.text(
                    0.5,
                    0.5,
                    f"invalid SMILES\n{str(smi)[:40]}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    wrap=True,
                )
            else:
                ax.imshow(Draw.MolToImage(mol, size=(300, 300)))
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig
