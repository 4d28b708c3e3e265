"""Data layer: file registry (pooch + offline mirror), dataset loaders, splits."""

from molkit.data.datasets import (
    DatasetSpec,
    UnknownDatasetError,
    citation,
    get_spec,
    licence,
    list_datasets,
    load_dataset,
)
from molkit.data.registry import (
    DataError,
    DataHashError,
    DataUnavailableError,
    fetch_file,
    registered_files,
)
from molkit.data.splits import (
    group_split,
    make_split,
    murcko_scaffold,
    predefined_split,
    random_split,
    scaffold_split,
    subsample,
)

__all__ = [
    "DataError",
    "DataHashError",
    "DataUnavailableError",
    "DatasetSpec",
    "UnknownDatasetError",
    "citation",
    "fetch_file",
    "get_spec",
    "group_split",
    "licence",
    "list_datasets",
    "load_dataset",
    "make_split",
    "murcko_scaffold",
    "predefined_split",
    "random_split",
    "registered_files",
    "scaffold_split",
    "subsample",
]
