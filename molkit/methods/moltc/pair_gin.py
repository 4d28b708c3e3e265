"""MolTC's pair baselines with chemistry: both molecules' Morgan bits side by side
(``pair_fingerprints``, for `molkit.methods.baselines.fit_gradient_boosting`), and the pair GIN
(``PairGIN``: one GIN shared by both molecules of a pair graph, an MLP head on the two molecule
embeddings, optionally after CIGIN's atom-level interaction layer; ``fit_pair_gin`` trains it).

The pair GIN is MolTC's own and not `molkit.methods.baselines.GINBaseline`: that one embeds one
molecule per graph, this one reads a pair graph (two disconnected molecules, ``role`` marking
each) and combines the two molecule embeddings symmetrically (DDI) or by role (solute / solvent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "COMBINE",
    "FittedPairGIN",
    "PairGIN",
    "fit_pair_gin",
    "pair_fingerprints",
    "pair_graphs",
    "pair_node_embeddings",
]


def pair_fingerprints(
    smiles_1: Sequence[str],
    smiles_2: Sequence[str],
    radius: int = 2,
    n_bits: int = 1024,
    extra: np.ndarray | None = None,
    counts: bool = False,
    descriptors: bool = False,
) -> np.ndarray:
    """Pair features for gradient boosting: molecule 1's Morgan fingerprint, then molecule 2's
    (bits, or substructure counts with ``counts``), with ``descriptors`` every RDKit 2-D descriptor
    of molecule 1 and then of molecule 2 (`molkit.chem.rdkit_descriptors`, NaN where undefined),
    then ``extra`` context columns (e.g. temperature). Each molecule is featurised once; float32
    (n, 2 * n_bits [+ 2 * 217] + n_extra)."""
    from molkit.chem import morgan_bits, morgan_counts, rdkit_descriptors

    unique = list(dict.fromkeys([*smiles_1, *smiles_2]))
    fingerprint = morgan_counts if counts else morgan_bits
    tables = [fingerprint(unique, radius=radius, n_bits=n_bits, progress=False)]
    if descriptors:
        tables.append(rdkit_descriptors(unique, progress=False))
    table = np.hstack(tables).astype(np.float32)
    row = {s: i for i, s in enumerate(unique)}
    parts = [table[[row[s] for s in smiles_1]], table[[row[s] for s in smiles_2]]]
    if extra is not None:
        parts.append(np.asarray(extra, dtype=np.float32).reshape(len(smiles_1), -1))
    return np.hstack(parts).astype(np.float32)


def pair_graphs(smiles_1: Sequence[str], smiles_2: Sequence[str], progress: bool = False) -> list:
    """One PyG ``Data`` per pair: both molecules as one disconnected graph, molecule 1's atoms
    first, with ``role`` (N,) = 0 / 1 marking the molecule (each molecule is featurised once)."""
    from torch_geometric.data import Data

    from molkit.chem import graphs_from_smiles

    unique = list(dict.fromkeys([*smiles_1, *smiles_2]))
    parts = {
        s: (g.x.numpy(), g.edge_index.numpy(), g.edge_attr.numpy())
        for s, g in zip(unique, graphs_from_smiles(unique, progress=progress), strict=True)
    }
    out = []
    for a, b in zip(smiles_1, smiles_2, strict=True):
        (x1, e1, f1), (x2, e2, f2) = parts[a], parts[b]
        n1, n2 = len(x1), len(x2)
        out.append(
            Data(
                x=torch.from_numpy(np.concatenate([x1, x2])),
                edge_index=torch.from_numpy(np.concatenate([e1, e2 + n1], axis=1)),
                edge_attr=torch.from_numpy(np.concatenate([f1, f2])),
                role=torch.from_numpy(np.repeat(np.array([0, 1]), [n1, n2])),
                num_nodes=n1 + n2,
            )
        )
    return out


#: How `PairGIN` combines the two molecules.
COMBINE = ("concat", "symmetric", "interaction")


class PairGIN(nn.Module):
    """One GIN shared by both molecules of a pair graph (see :func:`pair_graphs`) and an MLP head.

    ``combine="concat"``: head on [h1, h2] (role-aware: solute / solvent); ``"symmetric"``: head on
    [h1 + h2, h1 * h2] (invariant to swapping the molecules, for DDI); ``"interaction"``: CIGIN's
    interaction layer (Pathak et al., AAAI 2020) before pooling: the map I = tanh(H1 H2^T) between
    every atom of molecule 1 and every atom of molecule 2, each atom's embedding extended by what it
    sees of the other molecule ([H1, I H2] and [H2, I^T H1]), mean-pooled per molecule (CIGIN uses
    Set2Set) and the head on the two (role-aware).
    ``forward(batch)`` -> (B, n_tasks).
    """

    def __init__(
        self,
        n_tasks: int = 1,
        gin=None,
        combine: str = "concat",
        head_hidden: int = 256,
        dropout: float = 0.1,
        **gin_kwargs,
    ):
        from molkit.models.gnn import GIN

        super().__init__()
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, not {combine!r}")
        self.gin = gin if gin is not None else GIN(**gin_kwargs)
        self.combine = combine
        d = self.gin.out_dim
        self.head = nn.Sequential(
            nn.Linear((4 if combine == "interaction" else 2) * d, head_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, n_tasks),
        )

    def node_embeddings(self, batch):
        """Dense atom embeddings per molecule: (B, 2, max_atoms, d) and a bool mask
        (B, 2, max_atoms)."""
        return pair_node_embeddings(self.gin, batch)

    def molecule_embeddings(self, batch):
        """Mean-pooled molecule embeddings (B, 2, d)."""
        nodes = self.gin.node_embeddings(batch)
        index = _molecule_index(batch)
        n = 2 * _n_pairs(batch)
        zeros = torch.zeros(n, nodes.shape[1], dtype=nodes.dtype, device=nodes.device)
        sums = zeros.index_add_(0, index, nodes)
        counts = torch.bincount(index, minlength=n).clamp(min=1).unsqueeze(1).to(nodes.dtype)
        return (sums / counts).view(-1, 2, nodes.shape[1])

    def interaction_embeddings(self, batch):
        """CIGIN's interaction layer: per molecule the masked mean of [H, I H_other] with
        I = tanh(H1 H2^T) over real atoms only, (B, 2, 2d)."""
        dense, mask = self.node_embeddings(batch)
        h1, h2 = dense[:, 0], dense[:, 1]
        m1, m2 = mask[:, 0].to(h1.dtype), mask[:, 1].to(h2.dtype)
        inter = torch.tanh(h1 @ h2.transpose(1, 2)) * m1.unsqueeze(2) * m2.unsqueeze(1)
        f1 = torch.cat([h1, inter @ h2], dim=-1)
        f2 = torch.cat([h2, inter.transpose(1, 2) @ h1], dim=-1)
        return torch.stack([_masked_mean(f1, m1), _masked_mean(f2, m2)], dim=1)

    def forward(self, batch):
        if self.combine == "interaction":
            h = self.interaction_embeddings(batch)
            return self.head(torch.cat([h[:, 0], h[:, 1]], dim=1))
        h = self.molecule_embeddings(batch)
        h1, h2 = h[:, 0], h[:, 1]
        if self.combine == "concat":
            z = torch.cat([h1, h2], dim=1)
        else:
            z = torch.cat([h1 + h2, h1 * h2], dim=1)
        return self.head(z)


def _masked_mean(features, mask):
    """Mean over the real atoms: features (B, M, k), mask (B, M) of 0 / 1 -> (B, k)."""
    return (features * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def _n_pairs(batch) -> int:
    return int(batch.num_graphs) if getattr(batch, "batch", None) is not None else 1


def _molecule_index(batch):
    vector = getattr(batch, "batch", None)
    if vector is None:
        vector = torch.zeros(batch.x.shape[0], dtype=torch.long, device=batch.x.device)
    return 2 * vector + batch.role


def pair_node_embeddings(gin, batch, max_atoms: int | None = None):
    """Atom embeddings of every molecule of a batch of pair graphs, padded:
    (B, 2, max_atoms, d) and a bool mask (B, 2, max_atoms), True on real atoms."""
    from molkit.models.gnn import to_dense_nodes

    nodes = gin.node_embeddings(batch)
    dense, mask = to_dense_nodes(nodes, _molecule_index(batch), max_atoms)
    n = 2 * _n_pairs(batch)
    if dense.shape[0] < n:  # a trailing molecule without atoms cannot occur (RDKit needs >= 1 atom)
        raise ValueError("every molecule of a pair graph needs at least one atom")
    return dense.view(-1, 2, *dense.shape[1:]), mask.view(-1, 2, mask.shape[-1])


@dataclass
class FittedPairGIN:
    """A trained :class:`PairGIN`, its training history and the target scaling (regression)."""

    model: object
    history: object
    task: str
    mean: float = 0.0
    std: float = 1.0

    def predict(self, graphs: Sequence) -> np.ndarray:
        """Probabilities (classification) or values in the original unit (regression), (n,)."""
        from molkit.models.gnn import predict_graph_model

        out = predict_graph_model(self.model, graphs, self.task)[:, 0]
        return out if self.task == "classification" else out * self.std + self.mean


def fit_pair_gin(
    train_graphs: Sequence,
    y_train: np.ndarray,
    valid_graphs: Sequence,
    y_valid: np.ndarray,
    task: str = "classification",
    combine: str = "concat",
    hidden: int = 300,
    num_layers: int = 5,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    patience: int = 5,
    seed: int = 0,
    progress: bool = True,
    min_steps: int = 0,
) -> FittedPairGIN:
    """Train a :class:`PairGIN` with ``molkit.models.gnn.train_graph_model`` (early stopping on the
    validation loss; regression targets standardised on the training part).

    ``min_steps`` raises ``epochs`` until they hold at least that many optimiser steps, so a small
    set (FreeSolv: ~500 training pairs, 2 batches an epoch) is not left at the training mean by an
    epoch budget sized for a large one."""
    from molkit.models.gnn import train_graph_model

    if min_steps > 0:
        steps_per_epoch = max(1, math.ceil(len(train_graphs) / batch_size))
        epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    y_train = np.asarray(y_train, dtype=np.float32)
    y_valid = np.asarray(y_valid, dtype=np.float32)
    if task == "classification":
        mean, std = 0.0, 1.0
    else:
        mean, std = float(y_train.mean()), float(y_train.std() or 1.0)
    torch.manual_seed(seed)
    model = PairGIN(1, combine=combine, hidden=hidden, num_layers=num_layers)
    history = train_graph_model(
        model, train_graphs, (y_train - mean) / std, valid_graphs, (y_valid - mean) / std,
        task=task, epochs=epochs, lr=lr, batch_size=batch_size, patience=patience, seed=seed,
        progress=progress,
    )  # fmt: skip
    return FittedPairGIN(model, history, task, mean, std)
