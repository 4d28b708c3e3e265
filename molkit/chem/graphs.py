"""Molecular graphs for PyTorch Geometric (imports torch: reach it lazily via ``molkit.chem``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import Data

from .features import (
    ATOM_FEATURE_DIM,
    BOND_FEATURE_DIM,
    atom_feature_indices,
    bond_feature_indices,
)
from .smiles import InvalidSmilesError, as_mol, progress_bar

__all__ = ["smiles_to_graph", "graphs_from_smiles"]


def smiles_to_graph(smiles: str | Chem.Mol, y: Sequence[float] | float | None = None) -> Data:
    """One molecule as a PyG ``Data``.

    ``x`` float32 (N, ATOM_FEATURE_DIM) one-hot blocks; ``edge_index`` long (2, 2B), both
    directions of bond b at columns 2b and 2b+1; ``edge_attr`` float32 (2B, BOND_FEATURE_DIM);
    ``z`` long (N,) atomic numbers; ``smiles`` the input string (canonical SMILES for a ``Mol``);
    ``y`` float32 (1, n_tasks) when given. Node i is atom i of ``Chem.MolFromSmiles(smiles)``.
    Raises ``InvalidSmilesError``.
    """
    mol = as_mol(smiles)
    name = smiles if isinstance(smiles, str) else Chem.MolToSmiles(smiles)
    return _mol_to_graph(mol, name, y)


def _mol_to_graph(mol: Chem.Mol, smiles: str, y) -> Data:
    n_atoms = mol.GetNumAtoms()
    x = np.zeros((n_atoms, ATOM_FEATURE_DIM), dtype=np.float32)
    for atom in mol.GetAtoms():
        x[atom.GetIdx(), atom_feature_indices(atom)] = 1.0
    n_bonds = mol.GetNumBonds()
    edge_index = np.zeros((2, 2 * n_bonds), dtype=np.int64)
    edge_attr = np.zeros((2 * n_bonds, BOND_FEATURE_DIM), dtype=np.float32)
    for bond in mol.GetBonds():
        b, u, v = bond.GetIdx(), bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edge_index[:, 2 * b] = (u, v)
        edge_index[:, 2 * b + 1] = (v, u)
        edge_attr[2 * b, bond_feature_indices(bond)] = 1.0
        edge_attr[2 * b + 1] = edge_attr[2 * b]
    data = Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        z=torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long),
        smiles=smiles,
        num_nodes=n_atoms,
    )
    if y is not None:
        data.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(1, -1))
    return data


def graphs_from_smiles(
    smiles_list: Iterable[str | Chem.Mol],
    y: Sequence | np.ndarray | None = None,
    progress: bool = True,
    on_invalid: Literal["raise", "none"] = "raise",
) -> list[Data | None]:
    """``smiles_to_graph`` over a batch, in order.

    ``y``: optional labels (n,) or (n, n_tasks), NaN for missing, stored as ``data.y`` (1, n_tasks).
    ``on_invalid="raise"`` raises ``InvalidSmilesError`` (with the position); ``"none"`` puts
    ``None`` at invalid positions (nothing is dropped silently; see ``standardize_many``).
    """
    items = list(smiles_list)
    labels = None
    if y is not None:
        labels = np.asarray(y, dtype=np.float32).reshape(len(items), -1)
    graphs: list[Data | None] = []
    for i, smi in enumerate(progress_bar(items, progress, "graphs")):
        try:
            mol = as_mol(smi, i)
        except InvalidSmilesError:
            if on_invalid == "raise":
                raise
            graphs.append(None)
            continue
        name = smi if isinstance(smi, str) else Chem.MolToSmiles(mol)
        graphs.append(_mol_to_graph(mol, name, None if labels is None else labels[i]))
    return graphs
