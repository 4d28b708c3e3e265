"""Graph isomorphism network (Hu et al. 2020 style) with training and pre-training helpers.

Graphs come from ``molkit.chem.graphs_from_smiles``: ``x`` (N, ATOM_FEATURE_DIM) one-hot atom
features and ``edge_attr`` (E, BOND_FEATURE_DIM) one-hot bond features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import (
    BatchNorm,
    GINEConv,
    global_add_pool,
    global_max_pool,
    global_mean_pool,
)
from torch_geometric.utils import to_dense_batch

from molkit.chem.features import (
    ATOM_FEATURE_BLOCKS,
    ATOM_FEATURE_DIM,
    BOND_FEATURE_DIM,
    NUM_ATOM_TYPES,
)
from molkit.models.fit import FitReport, fit

__all__ = [
    "GIN",
    "GraphPredictor",
    "TrainHistory",
    "to_dense_nodes",
    "masked_loss",
    "graph_model_loss",
    "train_graph_model",
    "predict_graph_model",
    "embed_graphs",
    "attribute_masking_pretrain",
]

Task = Literal["classification", "regression"]
_POOLS = {
    "mean": global_mean_pool,
    "sum": global_add_pool,
    "add": global_add_pool,
    "max": global_max_pool,
}


class GIN(nn.Module):
    """GIN with edge features (``GINEConv``): atom encoder, ``num_layers`` x (conv, batch norm,
    ReLU except after the last layer, dropout), jumping knowledge, graph pooling.

    ``jk``: "last" | "sum" | "max" | "cat" (concatenation projected back to ``hidden``), so node
    and graph embeddings always have width ``hidden`` (``self.out_dim``).
    """

    def __init__(
        self,
        num_layers: int = 5,
        hidden: int = 300,
        dropout: float = 0.0,
        pooling: Literal["mean", "sum", "add", "max"] = "mean",
        jk: Literal["last", "sum", "max", "cat"] = "last",
        atom_dim: int = ATOM_FEATURE_DIM,
        bond_dim: int = BOND_FEATURE_DIM,
    ):
        super().__init__()
        if pooling not in _POOLS:
            raise ValueError(f"pooling must be one of {list(_POOLS)}, got {pooling!r}")
        if jk not in ("last", "sum", "max", "cat"):
            raise ValueError(f"jk must be 'last', 'sum', 'max' or 'cat', got {jk!r}")
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.num_layers, self.hidden, self.out_dim = num_layers, hidden, hidden
        self.dropout, self.pooling, self.jk = dropout, pooling, jk
        self.atom_encoder = nn.Linear(atom_dim, hidden)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(
                    nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
                ),
                edge_dim=bond_dim,
            )
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            BatchNorm(hidden, allow_single_element=True) for _ in range(num_layers)
        )
        self.jk_proj = nn.Linear(num_layers * hidden, hidden) if jk == "cat" else None

    def node_embeddings(self, batch: Data | Batch) -> Tensor:
        """Atom embeddings (N, hidden), rows in the order of ``batch.x``."""
        h = self.atom_encoder(batch.x)
        layers = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h, batch.edge_index, batch.edge_attr))
            if i < self.num_layers - 1:
                h = torch.relu(h)
            h = nn.functional.dropout(h, self.dropout, self.training)
            layers.append(h)
        if self.jk == "last":
            return layers[-1]
        if self.jk == "sum":
            return torch.stack(layers).sum(0)
        if self.jk == "max":
            return torch.stack(layers).max(0).values
        return self.jk_proj(torch.cat(layers, dim=-1))

    def forward(self, batch: Data | Batch) -> Tensor:
        """Graph embeddings (B, hidden); a single ``Data`` gives (1, hidden)."""
        nodes = self.node_embeddings(batch)
        vector, n_graphs = _batch_vector(batch, nodes)
        return _POOLS[self.pooling](nodes, vector, size=n_graphs)


def _batch_vector(batch: Data | Batch, nodes: Tensor) -> tuple[Tensor, int]:
    vector = getattr(batch, "batch", None)
    if vector is None:
        return torch.zeros(nodes.shape[0], dtype=torch.long, device=nodes.device), 1
    return vector, int(batch.num_graphs)


def to_dense_nodes(
    node_emb: Tensor, batch_vector: Tensor, max_atoms: int | None = None
) -> tuple[Tensor, Tensor]:
    """Pad node embeddings (N, d) per graph: returns (B, max_atoms, d) and a bool mask
    (B, max_atoms), True on real atoms (for cross-attention key padding use ``~mask``)."""
    return to_dense_batch(node_emb, batch_vector, max_num_nodes=max_atoms)


class GraphPredictor(nn.Module):
    """GIN encoder + MLP head: ``forward(batch) -> (B, n_tasks)`` logits or regression outputs.

    Pass a (pre-trained) ``gin`` or GIN keyword arguments; ``head_hidden`` adds a hidden layer.
    """

    def __init__(
        self,
        n_tasks: int,
        gin: GIN | None = None,
        head_hidden: int | None = None,
        dropout: float = 0.0,
        **gin_kwargs,
    ):
        super().__init__()
        self.gin = gin if gin is not None else GIN(**gin_kwargs)
        self.n_tasks = n_tasks
        d = self.gin.out_dim
        if head_hidden:
            self.head = nn.Sequential(
                nn.Linear(d, head_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, n_tasks),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, n_tasks))

    def forward(self, batch: Data | Batch) -> Tensor:
        return self.head(self.gin(batch))


def masked_loss(pred: Tensor, target: Tensor, task: Task = "classification") -> Tensor:
    """Mean loss over non-NaN targets (binary cross-entropy on logits, or squared error).

    ``pred``, ``target``: (B, n_tasks). NaN targets contribute neither loss nor gradient; with
    no labelled entry at all the loss is 0 (still differentiable).
    """
    target = target.reshape(pred.shape).to(pred.dtype)
    mask = ~torch.isnan(target)
    filled = torch.where(mask, target, torch.zeros_like(target))
    if task == "classification":
        per_entry = nn.functional.binary_cross_entropy_with_logits(pred, filled, reduction="none")
    elif task == "regression":
        per_entry = (pred - filled) ** 2
    else:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    per_entry = torch.where(mask, per_entry, torch.zeros_like(per_entry))
    return per_entry.sum() / mask.sum().clamp(min=1)


@dataclass
class TrainHistory:
    """Per-epoch ``records`` (epoch, train_loss, valid_loss), the epoch whose weights the model
    holds after training (``best_epoch``, 1-based) and its validation loss."""

    records: pd.DataFrame
    best_epoch: int
    best_valid_loss: float


def _labels(y, n: int) -> Tensor:
    arr = np.asarray(y, dtype=np.float32)
    if arr.shape[0] != n:
        raise ValueError(f"got {arr.shape[0]} labels for {n} graphs")
    return torch.from_numpy(arr.reshape(n, -1))


def _device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


def _batches(graphs: Sequence[Data], order: np.ndarray, batch_size: int, device):
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, Batch.from_data_list([graphs[i] for i in idx]).to(device)


@torch.no_grad()
def _outputs(model: nn.Module, graphs: Sequence[Data], batch_size: int, device) -> Tensor:
    model.eval()
    order = np.arange(len(graphs))
    outs = [model(b).cpu() for _, b in _batches(graphs, order, batch_size, device)]
    return torch.cat(outs) if outs else torch.zeros(0)


def graph_model_loss(
    model: nn.Module,
    graphs: Sequence[Data],
    y,
    task: Task = "classification",
    batch_size: int = 256,
    device=None,
) -> float:
    """``masked_loss`` over a whole set in eval mode (mean over all labelled entries)."""
    device = _device(model, device)
    return float(
        masked_loss(_outputs(model, graphs, batch_size, device), _labels(y, len(graphs)), task)
    )


def train_graph_model(
    model: nn.Module,
    train_graphs: Sequence[Data],
    y_train,
    valid_graphs: Sequence[Data] | None = None,
    y_valid=None,
    task: Task = "classification",
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    seed: int = 0,
    device=None,
    progress: bool = True,
    encoder_lr: float | None = None,
) -> TrainHistory:
    """Adam training of ``model(batch) -> (B, n_tasks)`` on labels (n,) or (n, n_tasks), NaN =
    missing (masked out of the loss).

    With a validation set: stops after ``patience`` epochs without a lower validation loss and
    loads the best epoch's weights back into ``model``. Without one: trains all ``epochs``.
    Seeds torch's global RNG and the shuffling with ``seed``. Leaves the model in eval mode.
    ``encoder_lr``: a separate learning rate for ``model.gin`` (a `GraphPredictor`'s encoder; the
    rest trains at ``lr``), as fine-tuning a pre-trained encoder usually does.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = _device(model, device)
    model.to(device)
    y_tr = _labels(y_train, len(train_graphs))
    has_valid = valid_graphs is not None and len(valid_graphs) > 0
    if encoder_lr is None:
        groups = [{"params": list(model.parameters())}]
    else:
        if not isinstance(getattr(model, "gin", None), nn.Module):
            raise ValueError(
                "encoder_lr needs a model with a .gin encoder (a GraphPredictor); "
                "pass encoder_lr=None to train every parameter at lr"
            )
        encoder = {id(p) for p in model.gin.parameters()}
        groups = [
            {"params": list(model.gin.parameters()), "lr": encoder_lr},
            {"params": [p for p in model.parameters() if id(p) not in encoder]},
        ]
    optimiser = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)

    def step(item) -> tuple[float, float]:
        idx, batch = item
        model.train()
        target = y_tr[idx].to(device)
        loss = masked_loss(model(batch), target, task)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        n_labelled = int((~torch.isnan(target)).sum())
        return loss.item() * n_labelled, float(n_labelled)

    def validate() -> dict[str, float]:
        return {"valid_loss": graph_model_loss(model, valid_graphs, y_valid, task, device=device)}

    order = lambda: rng.permutation(len(train_graphs))  # noqa: E731 - drawn as each epoch starts
    report = fit(
        step,
        (_batches(train_graphs, order(), batch_size, device) for _ in range(epochs)),
        validate=validate if has_valid else None,
        patience=patience,
        state=model.state_dict,
        desc="training",
        progress=progress,
    )
    model.eval()
    records = pd.DataFrame(
        [
            {
                "epoch": int(row["epoch"]),
                "train_loss": row["train_loss"],
                "valid_loss": row.get("valid_loss", np.nan),
            }
            for row in report.curve
        ],
        columns=["epoch", "train_loss", "valid_loss"],
    )
    if not has_valid:
        return TrainHistory(records, int(report.best_epoch), np.nan)
    return TrainHistory(records, int(report.best_epoch), report.best)


def predict_graph_model(
    model: nn.Module,
    graphs: Sequence[Data],
    task: Task = "classification",
    batch_size: int = 256,
    device=None,
) -> np.ndarray:
    """Predictions (n, n_tasks): probabilities (sigmoid of logits) for classification, raw
    outputs for regression."""
    out = _outputs(model, graphs, batch_size, _device(model, device))
    return (torch.sigmoid(out) if task == "classification" else out).numpy()


def embed_graphs(
    gin: GIN, graphs: Sequence[Data], batch_size: int = 256, device=None
) -> np.ndarray:
    """Pooled graph embeddings (n, hidden) float32 in eval mode, e.g. for similarity retrieval."""
    return _outputs(gin, graphs, batch_size, _device(gin, device)).numpy()


def attribute_masking_pretrain(
    gin: GIN,
    graphs: Sequence[Data],
    epochs: int = 10,
    mask_rate: float = 0.15,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device=None,
    progress: bool = True,
    valid_graphs: Sequence[Data] | None = None,
    patience: int | None = None,
) -> FitReport:
    """Self-supervised attribute masking (Hu et al. 2020), training ``gin`` in place.

    Each step hides the atomic-number block of ``x`` for a ``mask_rate`` share of atoms (at least
    one per batch; the block becomes all zeros, the mask token) and trains a linear head on the
    node embeddings to recover the element (cross-entropy over ``NUM_ATOM_TYPES`` classes).
    With ``valid_graphs``: the same masked-atom cross-entropy on them (the same masks at every
    evaluation) before the first epoch and after each, the best state of the GIN (and its head)
    kept and restored, training stopped after ``patience`` epochs without improvement (``epochs``
    is then a maximum). Returns the `molkit.models.fit.FitReport` (``curve``: ``train_loss``, and
    ``valid_loss`` with a validation part, per epoch). Leaves ``gin`` in eval mode.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = _device(gin, device)
    start, stop = ATOM_FEATURE_BLOCKS["atomic_num"]
    head = nn.Linear(gin.out_dim, NUM_ATOM_TYPES).to(device)
    optimiser = torch.optim.Adam([*gin.parameters(), *head.parameters()], lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def masked_loss(batch, gen: torch.Generator) -> Tensor:
        n_nodes = batch.x.shape[0]
        n_mask = max(1, round(mask_rate * n_nodes))
        masked = torch.randperm(n_nodes, generator=gen)[:n_mask].to(device)
        target = batch.x[masked, start:stop].argmax(dim=1)
        x = batch.x.clone()
        x[masked, start:stop] = 0.0
        batch.x = x
        return nn.functional.cross_entropy(head(gin.node_embeddings(batch)[masked]), target)

    def step(item) -> float:
        _, batch = item
        gin.train()
        head.train()
        loss = masked_loss(batch, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    @torch.no_grad()
    def validate() -> dict[str, float]:
        gin.eval()
        head.eval()
        gen = torch.Generator().manual_seed(seed + 1)  # the same masks at every evaluation
        batches = _batches(valid_graphs, np.arange(len(valid_graphs)), batch_size, device)
        losses = [masked_loss(b, gen).item() for _, b in batches]
        return {"valid_loss": float(np.mean(losses))}

    def state() -> dict[str, Tensor]:
        return {
            **{f"gin.{k}": v for k, v in gin.state_dict().items()},
            **{f"head.{k}": v for k, v in head.state_dict().items()},
        }

    has_valid = bool(valid_graphs)
    report = fit(
        step,
        (_batches(graphs, rng.permutation(len(graphs)), batch_size, device) for _ in range(epochs)),
        validate=validate if has_valid else None,
        patience=patience if has_valid else None,
        state=state,
        eval_at_start=has_valid,
        total_steps=epochs * -(-len(graphs) // batch_size),
        desc="attribute masking",
        progress=progress,
    )
    gin.eval()
    return report
