"""Plots and molecule drawings used by the notebooks."""

from molkit.viz.molecules import draw_highlighted, draw_molecules
from molkit.viz.pipeline import pipeline_figure
from molkit.viz.plots import embedding_map, split_overview

__all__ = [
    "draw_highlighted",
    "draw_molecules",
    "embedding_map",
    "pipeline_figure",
    "split_overview",
]
