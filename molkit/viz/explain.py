"""Figures for explainable models: atom attributions next to ground truth, grouped metric bars,
per-step speed comparisons."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["attribution_grid", "grouped_bars", "speed_bars"]


def attribution_grid(
    smiles: Sequence[str],
    attributions: Sequence[Sequence[float]],
    truths: Sequence[Sequence[int] | None],
    legends: Sequence[str] | None = None,
    panel_size: tuple[int, int] = (300, 240),
):
    """One row per molecule: its atom attributions (red positive, blue negative) and its
    ground-truth atoms. Returns a matplotlib figure."""
    import matplotlib.pyplot as plt

    from molkit.viz.molecules import draw_highlighted

    n = len(smiles)
    if not (len(attributions) == len(truths) == n):
        raise ValueError(
            f"{n} molecules, {len(attributions)} attributions and {len(truths)} ground truths "
            "must be aligned"
        )
    fig, axes = plt.subplots(n, 2, figsize=(7, 2.8 * n), squeeze=False)
    for i, (s, a, t) in enumerate(zip(smiles, attributions, truths, strict=True)):
        truth = np.zeros(len(a)) if t is None else np.asarray(t, dtype=float)
        title = legends[i] if legends is not None else ""
        for ax, weights, label in (
            (axes[i, 0], a, f"attribution {title}"),
            (axes[i, 1], truth, "ground truth"),
        ):
            ax.imshow(draw_highlighted(s, weights, size=panel_size))
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def grouped_bars(
    summary,
    value: str = "mean",
    error: str = "std",
    group: str = "dataset",
    hue: str = "method",
    ylabel: str = "",
    title: str = "",
    reference: dict | None = None,
    ax=None,
):
    """Bars of ``summary[value]`` per ``group`` (x axis) and ``hue`` (colours), with ``error``
    bars; ``reference`` maps a group to a horizontal marker (e.g. a paper's number)."""
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(summary[group]))
    hues = list(dict.fromkeys(summary[hue]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) * max(1, len(hues)) / 3), 3.8))
    else:
        fig = ax.figure
    width = 0.8 / max(len(hues), 1)
    for j, h in enumerate(hues):
        part = summary[summary[hue] == h].set_index(group)
        x = [i + (j - (len(hues) - 1) / 2) * width for i in range(len(groups))]
        heights = [part[value].get(g, np.nan) for g in groups]
        errors = [part[error].get(g, 0.0) if error in part else 0.0 for g in groups]
        ax.bar(x, heights, width, yerr=errors, label=h, capsize=2)
    for i, g in enumerate(groups):
        if reference and g in reference:
            ax.hlines(
                reference[g], i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1
            )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(len(hues), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return fig


def speed_bars(steps, title: str = ""):
    """Horizontal bars of seconds per molecule (log scale) for each pipeline step, stacked per
    pipeline, from rows with columns pipeline, step, seconds_per_molecule."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(steps) + 1.2))
    labels = [f"{p}: {s}" for p, s in zip(steps["pipeline"], steps["step"], strict=True)]
    colours = ["#4C72B0" if p == "MoleX" else "#DD8452" for p in steps["pipeline"]]
    ax.barh(labels, steps["seconds_per_molecule"], color=colours)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("seconds per molecule (log scale)")
    ax.set_title(title)
    return fig
