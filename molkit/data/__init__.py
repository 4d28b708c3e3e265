"""Data layer: file registry (pooch + offline mirror), dataset loaders, your own CSV files,
splits."""

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
from molkit.data.sealed import SealedLabels, TestLabelAccessError, final_scoring, seal
from molkit.data.splits import (
    group_split,
    make_split,
    murcko_scaffold,
    predefined_split,
    random_split,
    scaffold_split,
    subsample,
)
from molkit.data.user_csv import (
    CsvProblem,
    CsvReport,
    DataCheckError,
    check_csv,
    is_csv_path,
    load_csv,
)

__all__ = [
    "SealedLabels",
    "TestLabelAccessError",
    "final_scoring",
    "seal",
    "CsvProblem",
    "CsvReport",
    "DataCheckError",
    "DataError",
    "DataHashError",
    "DataUnavailableError",
    "DatasetSpec",
    "UnknownDatasetError",
    "check_csv",
    "citation",
    "fetch_file",
    "get_spec",
    "group_split",
    "is_csv_path",
    "licence",
    "list_datasets",
    "load_csv",
    "load_dataset",
    "make_split",
    "murcko_scaffold",
    "predefined_split",
    "random_split",
    "registered_files",
    "scaffold_split",
    "subsample",
]
