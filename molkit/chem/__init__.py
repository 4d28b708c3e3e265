"""Chemistry layer: SMILES handling, fingerprints, descriptors, functional groups, graphs.

Importing ``molkit.chem`` needs RDKit only; the graph functions (``smiles_to_graph``,
``graphs_from_smiles``) import torch and torch_geometric on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .descriptors import (
    DESCRIPTORS,
    Descriptor,
    compute_descriptors,
    descriptor_value,
    format_descriptor,
    match_property,
    rdkit_descriptor_names,
    rdkit_descriptors,
)
from .features import (
    ATOM_FEATURE_BLOCKS,
    ATOM_FEATURE_DIM,
    BOND_FEATURE_BLOCKS,
    BOND_FEATURE_DIM,
    NUM_ATOM_TYPES,
)
from .fingerprints import (
    MACCS_N_BITS,
    fingerprint_objects,
    fingerprints,
    maccs,
    morgan_bits,
    morgan_counts,
    rdkit_fp,
    tanimoto_matrix,
)
from .groups import (
    FUNCTIONAL_GROUP_SMARTS,
    FunctionalGroup,
    GroupToken,
    functional_groups,
    group_ngrams,
    group_tokens,
)
from .smiles import (
    InvalidSmilesError,
    parse_smiles,
    standardize_many,
    standardize_smiles,
)

if TYPE_CHECKING:
    from .graphs import graphs_from_smiles, smiles_to_graph

_LAZY = {"smiles_to_graph": "graphs", "graphs_from_smiles": "graphs"}

__all__ = [
    "ATOM_FEATURE_BLOCKS",
    "ATOM_FEATURE_DIM",
    "BOND_FEATURE_BLOCKS",
    "BOND_FEATURE_DIM",
    "DESCRIPTORS",
    "Descriptor",
    "FUNCTIONAL_GROUP_SMARTS",
    "FunctionalGroup",
    "GroupToken",
    "InvalidSmilesError",
    "MACCS_N_BITS",
    "NUM_ATOM_TYPES",
    "compute_descriptors",
    "descriptor_value",
    "fingerprint_objects",
    "fingerprints",
    "format_descriptor",
    "rdkit_descriptor_names",
    "rdkit_descriptors",
    "functional_groups",
    "graphs_from_smiles",
    "group_ngrams",
    "group_tokens",
    "maccs",
    "match_property",
    "morgan_bits",
    "morgan_counts",
    "parse_smiles",
    "rdkit_fp",
    "smiles_to_graph",
    "standardize_many",
    "standardize_smiles",
    "tanimoto_matrix",
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
