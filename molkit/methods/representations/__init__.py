"""Notebook 00's experiments: the datasets and the representations of one molecule, and a linear
probe of a fingerprint against a chemical language model's embedding."""

from molkit.methods.representations.experiment import (
    Settings,
    dataset_overview,
    probe_comparison,
    probe_predictions,
)

__all__ = ["Settings", "dataset_overview", "probe_comparison", "probe_predictions"]
