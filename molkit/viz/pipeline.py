"""The pipeline figure of a notebook's Theory section: the method's steps as boxes and arrows."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence


def pipeline_figure(
    steps: Sequence[str | Sequence[str]],
    title: str = "",
    width: float = 2.3,
    wrap: int = 18,
    highlight: Sequence[int] = (),
):
    """A left-to-right diagram of ``steps``. A step is a label, or a list of labels drawn stacked
    (parallel branches that meet the next step). ``highlight``: indices of the steps that are the
    paper's contribution (drawn filled). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if not steps:
        raise ValueError("a pipeline needs at least one step")
    columns = [[s] if isinstance(s, str) else list(s) for s in steps]
    height = max(len(c) for c in columns)
    fig, ax = plt.subplots(figsize=(width * len(columns), 1.1 + 0.9 * height))
    box_w, box_h = 0.78, 0.7
    centres = []
    for i, labels in enumerate(columns):
        ys = [height / 2 + (len(labels) - 1) / 2 - j for j in range(len(labels))]  # first on top
        centres.append([(i + 0.5, y) for y in ys])
        for label, y in zip(labels, ys, strict=True):
            filled = i in highlight
            ax.add_patch(
                FancyBboxPatch(
                    (i + 0.5 - box_w / 2, y - box_h / 2),
                    box_w,
                    box_h,
                    boxstyle="round,pad=0.02,rounding_size=0.08",
                    linewidth=1.2,
                    edgecolor="#0b4f6c",
                    facecolor="#cfe8f3" if filled else "white",
                )
            )
            ax.text(i + 0.5, y, textwrap.fill(label, wrap), ha="center", va="center", fontsize=8.5)
    for left, right in zip(centres, centres[1:], strict=False):
        for x0, y0 in left:
            for x1, y1 in right:
                ax.add_patch(
                    FancyArrowPatch(
                        (x0 + box_w / 2, y0),
                        (x1 - box_w / 2, y1),
                        arrowstyle="-|>",
                        mutation_scale=10,
                        linewidth=0.9,
                        color="#444444",
                    )
                )
    ax.set_xlim(0, len(columns))
    ax.set_ylim(height / 2 - (height - 1) / 2 - 0.6, height / 2 + (height - 1) / 2 + 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
