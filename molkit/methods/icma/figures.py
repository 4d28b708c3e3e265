"""The figures of ``02_icma.ipynb``; each function returns a matplotlib figure."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "pipeline_diagram",
    "training_curves",
    "masking_curve",
    "retrieved_neighbours",
    "prompt_lengths",
    "metrics_vs_baselines",
    "retrieval_quality",
    "draw_translations",
    "translation_examples",
]

#: The main ICMA row, its test-time ablations (names starting with "ICMA"), everything else.
ICMA_COLOUR, ABLATION_COLOUR, OTHER_COLOUR = "#b2182b", "#f4a582", "C0"
CHOSEN_COLOUR = "C3"
_DIRECTION_ORDER = ("mol2cap", "cap2mol")


def pipeline_diagram():
    """ICMA's pipeline, retrieve → re-rank → prompt → tune → generate (Theory); the paper's two
    contributions, post-retrieval re-ranking and in-context molecule tuning, are filled."""
    from molkit.viz import pipeline_figure

    return pipeline_figure(
        [
            "query: molecule (mol2cap) or caption (cap2mol)",
            [
                "retrieve, mol2cap: Morgan / RDKit Tanimoto, GIN cosine "
                "(chosen on a validation part of the pool)",
                "retrieve, cap2mol: BM25 over captions (Okapi, as the official code)",
            ],
            "re-rank: random walk (training only), sequence reversal (most similar last)",
            "prompt: k examples + query (the share kept whole is printed)",
            "tune: LoRA, answer-only loss, stopped on a validation part (weights cached)",
            "generate: greedy, stop at the end of the line",
        ],
        title="ICMA: hybrid retrieval, post-retrieval re-ranking, in-context molecule tuning",
        width=2.9,
        wrap=30,
        highlight=(2, 4),
    )


def training_curves(reports: Mapping[str, Mapping[str, Sequence]]):
    """The validation loss of every LM training run against the optimiser step, one panel per
    direction (``reports``: direction -> arm -> one `molkit.models.lm.TrainReport` per training
    seed, None for an untuned arm), one colour per arm, one line per seed; a dot marks the step
    each run kept (its validation optimum)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    directions = [d for d in reports if any(r for runs in reports[d].values() for r in runs)]
    if not directions:
        raise ValueError("training_curves needs at least one trained run")
    fig, axes = plt.subplots(1, len(directions), figsize=(6 * len(directions), 3.8), squeeze=False)
    for ax, direction in zip(axes[0], directions, strict=True):
        trained = [(arm, runs) for arm, runs in reports[direction].items() if any(runs)]
        for colour, (arm, runs) in enumerate(trained):
            for seed, report in enumerate(r for r in runs if r is not None):
                curve = report.curve_frame()
                if curve.empty or "valid_loss" not in curve:
                    continue
                label = arm if seed == 0 else None
                ax.plot(curve["step"], curve["valid_loss"], color=f"C{colour}", lw=1.2,
                        alpha=0.85, label=label)  # fmt: skip
                best = curve[curve["step"] == report.best_step]
                ax.plot(best["step"], best["valid_loss"], "o", color=f"C{colour}", ms=5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("validation loss (answer tokens)")
        ax.set_title(f"{direction}: validation curves, the kept step dotted")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def masking_curve(report):
    """The GIN's attribute-masking loss per epoch (`molkit.models.fit.FitReport`: training and
    held-out validation), the kept epoch marked."""
    import matplotlib.pyplot as plt

    curve = report.frame()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["epoch"], curve["train_loss"], marker=".", label="training")
    ax.plot(curve["epoch"], curve["valid_loss"], marker=".", label="validation (held-out graphs)")
    best = curve[curve["step"] == report.best_step]
    ax.plot(best["epoch"], best["valid_loss"], "o", color="C3", ms=8, label="kept")
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked-atom cross-entropy")
    ax.set_title("GIN attribute masking")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _truncate(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: max(n - 1, 0)].rstrip() + "…"


def _draw_molecule(ax, smiles: str, size: int = 300) -> bool:
    """``smiles`` drawn into ``ax`` (axis off); an unparsable one as the text "invalid SMILES".
    Returns whether it parsed."""
    from rdkit import Chem
    from rdkit.Chem import Draw
    from rdkit.rdBase import BlockLogs

    ax.axis("off")
    with BlockLogs():
        mol = Chem.MolFromSmiles(str(smiles)) if str(smiles).strip() else None
    if mol is None:
        shown = "".join(ch for ch in str(smiles)[:60] if ch.isascii() and ch.isprintable())
        shown = "\n".join(textwrap.wrap(shown, 20, break_on_hyphens=False)[:3])  # inside its panel
        ax.text(
            0.5,
            0.5,
            f"invalid SMILES\n{shown}",
            ha="center",
            va="center",
            fontsize=7,
            transform=ax.transAxes,
        )
        return False
    ax.imshow(Draw.MolToImage(mol, size=(size, size)))
    return True


def _caption_below(ax, caption: str, truncate: int, width: int = 34, fontsize: float = 6):
    ax.text(
        0.5,
        -0.02,
        textwrap.fill(_truncate(caption, truncate), width),
        ha="center",
        va="top",
        fontsize=fontsize,
        transform=ax.transAxes,
    )


def retrieved_neighbours(
    query_smiles: str,
    query_caption: str,
    neighbours: Mapping[str, Sequence[tuple[str, str, float]]],
    truncate: int = 160,
):
    """One query molecule (first column of the first row, its caption below) and, one row per
    retriever (``neighbours``' keys, e.g. morgan, rdkit, gin, random), that retriever's top-k
    neighbours ``(smiles, caption, score)`` in ranked order, each titled with its score and its
    caption (wrapped, at most ``truncate`` characters) below. The first column of the other rows
    stays empty; an unparsable SMILES is shown as text."""
    import matplotlib.pyplot as plt

    if not neighbours:
        raise ValueError("retrieved_neighbours needs at least one retriever")
    rows = len(neighbours)
    columns = 1 + max(len(v) for v in neighbours.values())
    cell_w, cell_h = 2.3, 3.2
    fig, axes = plt.subplots(
        rows, columns, figsize=(cell_w * columns, cell_h * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    query_ax = axes[0, 0]
    _draw_molecule(query_ax, query_smiles)
    query_ax.set_title("query", fontsize=9, fontweight="bold")
    _caption_below(query_ax, query_caption, truncate)
    for row, (name, items) in enumerate(neighbours.items()):
        for j, (smiles, caption, score) in enumerate(items):
            ax = axes[row, 1 + j]
            _draw_molecule(ax, smiles)
            ax.set_title(f"#{j + 1}: {float(score):.3f}", fontsize=8)
            _caption_below(ax, caption, truncate)
        # the retriever's name, vertical, left of its first neighbour
        axes[row, 1 if columns > 1 else 0].text(
            -0.04,
            0.5,
            name,
            rotation=90,
            ha="right",
            va="center",
            fontsize=10,
            fontweight="bold",
            transform=axes[row, 1 if columns > 1 else 0].transAxes,
        )
    fig.subplots_adjust(left=0.03, right=0.98, top=1 - 0.35 / (cell_h * rows), bottom=0.06)
    fig.subplots_adjust(hspace=0.55, wspace=0.15)
    return fig


def _share_label(within: int, total: int) -> str:
    """``within / total`` in whole percent, never rounded to 0% or 100% unless it is so."""
    if total == 0:
        return "n/a"
    if within == total:
        return "100%"
    if within == 0:
        return "0%"
    return f"{min(max(round(100 * within / total), 1), 99)}%"


def prompt_lengths(lengths: Mapping[str, np.ndarray], cutoff: int):
    """Histograms of the token counts (prompt + answer) of each prompt set, one subplot per
    direction (a key's first word, "mol2cap" or "cap2mol"), the sets overlaid as steps, the
    cut-off as a dashed red line; each subplot's title gives the share of its items (all its
    sets together) within the cut-off."""
    import matplotlib.pyplot as plt

    if not lengths:
        raise ValueError("prompt_lengths needs at least one set")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, values in lengths.items():
        direction = name.split()[0] if name.split() else name
        groups.setdefault(direction, {})[name] = np.asarray(values, dtype=float).ravel()
    order = [d for d in _DIRECTION_ORDER if d in groups] + [
        d for d in groups if d not in _DIRECTION_ORDER
    ]
    fig, axes = plt.subplots(1, len(order), figsize=(6 * len(order), 3.8), squeeze=False)
    for ax, direction in zip(axes[0], order, strict=True):
        sets = groups[direction]
        pooled = np.concatenate(list(sets.values()))
        top = max(float(pooled.max()) if pooled.size else 0.0, float(cutoff))
        bins = np.linspace(0, top * 1.03 + 1, 41)
        for i, (name, values) in enumerate(sets.items()):
            label = f"{name} (n={values.size}, max={int(values.max()) if values.size else '–'})"
            if values.size:
                ax.hist(values, bins=bins, histtype="step", lw=1.5, color=f"C{i}", label=label)
            else:
                ax.plot([], [], color=f"C{i}", label=label)
        ax.axvline(cutoff, ls="--", color="red", lw=1.2, label=f"cut-off {cutoff}")
        within = int((pooled <= cutoff).sum())
        ax.set_title(f"{direction}: {_share_label(within, pooled.size)} within the cut-off")
        ax.set_xlabel("tokens (prompt + answer)")
        ax.set_ylabel("prompts")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _method_colour(name: str) -> str:
    if name == "ICMA":
        return ICMA_COLOUR
    if str(name).startswith("ICMA"):
        return ABLATION_COLOUR
    return OTHER_COLOUR


#: The metric each direction's claims judge (`molkit.methods.icma.scoring.PER_ITEM_METRIC`),
#: as the summary table names it, and its axis label.
CLAIM_METRIC = {
    "mol2cap": ("rougeL", "ROUGE-L F1 (mean per caption)"),
    "cap2mol": ("morgan_fts_all", "Morgan Tanimoto (mean per molecule, invalid = 0)"),
}


def metrics_vs_baselines(
    tables: Mapping[str, pd.DataFrame],
    n_test: int,
    published: Mapping[str, pd.DataFrame] | None = None,
    seeds: Mapping[str, int] | None = None,
):
    """The metric each direction's claims judge (`CLAIM_METRIC`: ROUGE-L for mol2cap, Morgan
    Tanimoto with an invalid molecule as 0 for cap2mol) of every method of this run on the same
    ``n_test`` test molecules, each bar labelled with its value (so that an arm at 0 is seen): the
    main ICMA row dark red, its ablations and probes (names starting with "ICMA") light red; an arm
    with several training ``seeds`` (method -> count) is the mean over them and says so. Where the
    ``published`` table of the direction (`molkit.methods.icma.claims.paper_table`) has the same
    metric, its rows (except MolT5-base) are grey lines named in a legend ("paper: ...")."""
    import matplotlib.pyplot as plt

    seeds = seeds or {}
    panels = []
    for direction, (metric, label) in CLAIM_METRIC.items():
        if direction not in tables:
            continue
        frame = tables[direction]
        if metric not in frame.columns:
            raise KeyError(f"the {direction} table has no column {metric!r} (its claims' metric)")
        panels.append(
            (direction, metric, label, frame[metric].dropna().astype(float).sort_values())
        )
    if not panels:
        raise ValueError(f"tables holds none of the directions {tuple(CLAIM_METRIC)}")
    n_rows = max(len(v) for *_, v in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), max(4, 0.4 * n_rows + 1.5)), squeeze=False
    )
    for ax, (direction, metric, label, values) in zip(axes[0], panels, strict=True):
        names = [str(m) for m in values.index]
        shown = [f"{m} (mean of {seeds[m]} seeds)" if seeds.get(m, 1) > 1 else m for m in names]
        bars = ax.barh(shown, values.values, color=[_method_colour(m) for m in names])
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=7)
        top = max(float(values.max()), 0.05)
        paper = (published or {}).get(direction)
        if paper is not None and metric in paper.columns:
            rows = [(n, v) for n, v in paper[metric].dropna().items() if "MolT5-base" not in n]
            for (name, value), style in zip(
                rows, ("--", ":", "-.", (0, (5, 1, 1, 1))), strict=False
            ):
                top = max(top, float(value))
                ax.axvline(value, ls=style, lw=1.2, color="dimgrey",
                           label=f"paper: {name} {value:.3f}")  # fmt: skip
            if rows:
                ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel(label)
        ax.set_title(f"{direction}: the same {n_test} test molecules")
    fig.tight_layout()
    return fig


def retrieval_quality(table: pd.DataFrame, n_pairs: int, metric: str = "rougeL"):
    """``metric`` of the top-1 neighbour's caption taken as the prediction, per molecule retriever
    (``table``'s index; mol2cap retrieval only, on a validation part of the pool), the retriever
    marked in a boolean ``chosen`` column highlighted and annotated."""
    import matplotlib.pyplot as plt

    if isinstance(table.index, pd.MultiIndex) and "mol2cap" in table.index.get_level_values(0):
        table = table.loc["mol2cap"]
    if metric not in table.columns:
        raise KeyError(f"no column {metric!r} in the retrieval table ({list(table.columns)})")
    values = table[metric].astype(float)
    chosen = (
        table["chosen"].fillna(False).astype(bool)
        if "chosen" in table.columns
        else pd.Series(False, index=table.index)
    )
    names = [str(n) for n in table.index]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(names) + 1.5), 3.4))
    bars = ax.bar(
        names,
        values.values,
        color=[CHOSEN_COLOUR if c else OTHER_COLOUR for c in chosen.values],
        edgecolor=["black" if c else "none" for c in chosen.values],
    )
    for bar, value, is_chosen in zip(bars, values.values, chosen.values, strict=True):
        label = f"{value:.3f}" + ("\nchosen" if is_chosen else "")
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold" if is_chosen else "normal",
        )
    top = float(np.nanmax(values.values)) if len(values) else 1.0
    ax.set_ylim(0, top * 1.3 if top > 0 else 1)
    ax.set_ylabel(f"{metric} of the top-1\nneighbour's caption")
    ax.set_title(f"mol2cap retrieval only on {n_pairs} validation queries of the pool")
    fig.tight_layout()
    return fig


def draw_translations(
    truth: Sequence[str], predictions: dict[str, Sequence[str]], size: float = 2.2
):
    """One row per molecule, the ground truth then each method's prediction (an unparsable
    prediction is shown as text, marked invalid)."""
    import matplotlib.pyplot as plt

    columns = {"ground truth": list(truth), **{k: list(v) for k, v in predictions.items()}}
    fig, axes = plt.subplots(
        len(truth), len(columns), figsize=(size * len(columns), size * len(truth)), squeeze=False
    )
    for col, (name, smiles) in enumerate(columns.items()):
        for row, smi in enumerate(smiles):
            _draw_molecule(axes[row, col], smi)
            if row == 0:
                axes[row, col].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def translation_examples(result, n: int = 4):
    """`draw_translations` of the first ``n`` cap2mol test molecules of a
    `molkit.methods.icma.records.DirectionEvaluation`: the truth, then ICMA, the untuned LM and
    direct fine-tuning (their first training seed), where the evaluation has them."""
    from molkit.methods.icma.method import DIRECT, ICMA, NO_TUNING

    frame = result.predictions.head(n)
    methods = {m: frame[m].tolist() for m in (ICMA, NO_TUNING, DIRECT) if m in frame}
    return draw_translations(frame["truth"].tolist(), methods)
