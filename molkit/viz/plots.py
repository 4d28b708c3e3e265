"""Reusable matplotlib / seaborn figures."""

from __future__ import annotations

import numpy as np

from molkit._linalg import pca_scores


def embedding_map(
    embeddings,
    values,
    title: str = "",
    label: str = "",
    method: str = "pca",
    seed: int = 0,
    ax=None,
):
    """2-D map (PCA or t-SNE) of (n, d) embeddings coloured by ``values``; returns (figure, 2-D
    coordinates)."""
    import matplotlib.pyplot as plt

    x = np.asarray(embeddings, dtype=np.float32)
    if method == "pca":
        xy = pca_scores(x, 2)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(
            n_components=2, random_state=seed, init="pca", perplexity=min(30, max(5, len(x) // 10))
        ).fit_transform(x)
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', not {method!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
    else:
        fig = ax.figure
    points = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=8, cmap="viridis", alpha=0.8)
    fig.colorbar(points, ax=ax, label=label)
    ax.set_title(title)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    return fig, xy


def split_overview(split: dict, labels=None, title: str = ""):
    """Bar chart of split sizes, with the positive rate of each part when binary ``labels`` are
    given."""
    import matplotlib.pyplot as plt

    names = list(split)
    sizes = [len(split[k]) for k in names]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    bars = ax.bar(names, sizes, color=["#4C72B0", "#DD8452", "#55A868"][: len(names)])
    if labels is not None:
        labels = np.asarray(labels, dtype=float)
        for bar, k in zip(bars, names, strict=True):
            part = labels[split[k]]
            rate = np.nanmean(part) if len(part) else float("nan")
            ax.annotate(
                f"{rate:.0%} pos.",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
            )
    ax.set_ylabel("molecules")
    ax.set_title(title)
    return fig
