"""MolGraph-LarDo's graph-text side: the CLIP model and its pre-training (`GraphTextCLIP`,
`clip_loss`, `pretrain_clip`), how much a pre-trained pair of projections can tell molecules apart
by their texts (`retrieval_hits`, `graph_to_text_hits`), and the fine-tuning predictor that starts
from the pre-trained encoder (`build_predictor`: unlike the official code, which never loads it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(
    graph_z: torch.Tensor, text_z: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): cross-entropy of graph->text and text->graph similarity rows,
    averaged.

    ``graph_z``, ``text_z``: (B, d), L2-normalised inside; pair i is (graph i, text i).
    ``logit_scale``: log of the inverse temperature (scalar tensor). Returns a scalar tensor.
    """
    g = F.normalize(graph_z, dim=-1)
    t = F.normalize(text_z, dim=-1)
    logits = logit_scale.exp() * g @ t.T
    target = torch.arange(len(g), device=g.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class GraphTextCLIP(nn.Module):
    """A GIN with a graph projection (H -> 256 -> ``proj_dim``) and a projection of frozen sentence
    embeddings (``text_dim`` -> 256 -> ``proj_dim``; the official 768 -> 256 -> 128), trained with
    `clip_loss` and a learnable temperature: ``logit_scale`` = log(1/T), initialised at T = 0.07,
    clamped to T >= 0.01."""

    def __init__(
        self,
        gin: nn.Module,
        text_dim: int,
        proj_dim: int = 128,
        hidden: int = 256,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.gin = gin
        self.graph_proj = _mlp(gin.out_dim, hidden, proj_dim)
        self.text_proj = _mlp(text_dim, hidden, proj_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp())

    def forward(self, batch, text_emb: torch.Tensor) -> torch.Tensor:
        """CLIP loss of a graph batch against its (B, text_dim) text embeddings."""
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE)
        return clip_loss(self.graph_proj(self.gin(batch)), self.text_proj(text_emb), scale)

    @torch.no_grad()
    def project(
        self, graphs: Sequence, text_emb: np.ndarray, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """``graphs`` and their (n, text_dim) text embeddings in the shared space, each row
        L2-normalised: two (n, proj_dim) arrays (eval mode)."""
        from torch_geometric.data import Batch

        self.eval()
        graph_z = [
            self.graph_proj(self.gin(Batch.from_data_list(list(graphs[i : i + batch_size]))))
            for i in range(0, len(graphs), batch_size)
        ]
        text_z = self.text_proj(torch.as_tensor(np.asarray(text_emb), dtype=torch.float32))
        g = F.normalize(torch.cat(graph_z), dim=-1) if graph_z else torch.zeros(0, text_z.shape[1])
        return g.numpy(), F.normalize(text_z, dim=-1).numpy()


@dataclass
class ClipFit:
    """What `pretrain_clip` did: per-epoch ``history`` (``epoch``, ``loss`` on the training pairs,
    ``valid_loss`` on the held-out ones, NaN without, ``temperature``; ``attrs["best_epoch"]``),
    the epoch whose weights were kept (``best_epoch``) and the trained ``model`` (its ``gin`` is
    the encoder passed in, trained in place)."""

    history: pd.DataFrame
    best_epoch: int
    model: GraphTextCLIP


def pretrain_clip(
    gin,
    graphs: Sequence,
    text_emb: np.ndarray,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    valid_fraction: float = 0.0,
    patience: int | None = None,
    progress: bool = True,
) -> ClipFit:
    """Graph-text contrastive pre-training of ``gin`` (in place) on ``graphs`` paired row by row
    with ``text_emb`` (n, d).

    ``valid_fraction``: a seeded share of the pairs held out; their CLIP loss is measured after
    every epoch (in fixed batches of ``batch_size`` pairs, the last one wrapping around, so it is
    comparable with the training loss), and
    with ``patience`` training stops after that many epochs without a lower validation loss and
    the best epoch's weights are restored. Returns a `ClipFit`: per-epoch ``loss`` (training),
    ``valid_loss`` (NaN without a validation part) and ``temperature``, the best epoch and the
    model with its projection heads; leaves ``gin`` in eval mode."""
    from torch_geometric.data import Batch

    from molkit.models.fit import fit

    if len(graphs) != len(text_emb):
        raise ValueError(
            f"{len(graphs)} graphs but {len(text_emb)} text embeddings: pair them row by row"
        )
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), not {valid_fraction}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GraphTextCLIP(gin, text_dim=text_emb.shape[1])
    texts = torch.as_tensor(np.asarray(text_emb), dtype=torch.float32)
    shuffled = rng.permutation(len(graphs))
    n_valid = int(round(valid_fraction * len(graphs))) if valid_fraction else 0
    n_valid = n_valid if n_valid >= 2 else 0
    valid, train = np.sort(shuffled[:n_valid]), shuffled[n_valid:]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)

    def batches(order: np.ndarray):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) >= 2:  # one pair has no negatives
                yield Batch.from_data_list([graphs[i] for i in idx]), texts[idx]

    # fixed held-out batches, each of min(batch_size, n_valid) pairs (the last one wraps around):
    # as many negatives per row as a training batch has, so the two losses are comparable
    size = min(batch_size, n_valid)
    wrapped = np.concatenate([valid, valid])
    valid_batches = list(batches(wrapped[: size * -(-n_valid // size)]) if n_valid else [])

    def step(item) -> float:
        batch, text = item
        model.train()
        loss = model(batch, text)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    def validate() -> dict[str, float]:
        valid_loss = np.nan
        if n_valid:
            model.eval()
            with torch.no_grad():
                valid_loss = float(np.mean([model(b, t).item() for b, t in valid_batches]))
        return {"valid_loss": valid_loss, "temperature": model.temperature}

    report = fit(
        step,
        (batches(train[rng.permutation(len(train))]) for _ in range(epochs)),
        validate=validate,
        patience=patience if n_valid else None,
        state=model.state_dict,
        desc="graph-text pre-training",
        progress=progress,
    )
    gin.eval()
    history = pd.DataFrame(
        [
            {"epoch": int(r["epoch"]), "loss": r["train_loss"], "valid_loss": r["valid_loss"],
             "temperature": r["temperature"]}
            for r in report.curve
        ],
        columns=["epoch", "loss", "valid_loss", "temperature"],
    )  # fmt: skip
    history.attrs["best_epoch"] = int(report.best_epoch) if n_valid else len(history)
    model.eval()
    return ClipFit(history, history.attrs["best_epoch"], model)


# ------------------------------------------------------------------------------- retrieval


def retrieval_hits(graph_z: np.ndarray, text_z: np.ndarray, k: int) -> np.ndarray:
    """Graph -> text retrieval among the ``n`` candidates of row-aligned (n, d) embeddings: for
    each graph, the chance that its own text is among the ``k`` most similar texts (cosine, as
    the rows are normalised), ties broken at random. With ``g`` candidates more similar than its
    own text and ``e`` others exactly as similar (a text identical to its own), that chance is
    ``clip((k - g) / (e + 1), 0, 1)``; so texts that say nothing about their molecule (all equal)
    score ``k / n`` exactly, the chance level. Returns (n,) floats in [0, 1]."""
    graph_z, text_z = np.asarray(graph_z, dtype=np.float64), np.asarray(text_z, dtype=np.float64)
    if graph_z.shape != text_z.shape:
        raise ValueError(f"graph {graph_z.shape} and text {text_z.shape} embeddings differ")
    if k < 1:
        raise ValueError(f"k counts candidates (>= 1), not {k}")
    sim = graph_z @ text_z.T
    own = np.diag(sim)[:, None]
    above = (sim > own).sum(1)
    ties = (sim == own).sum(1) - 1
    return np.clip((k - above) / (ties + 1), 0.0, 1.0)


def graph_to_text_hits(
    model: GraphTextCLIP, graphs: Sequence, text_emb: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, np.ndarray]:
    """`retrieval_hits` of ``model``'s projections of ``graphs`` and their texts' embeddings
    (the candidates: these texts only), for each ``k`` of ``ks``."""
    graph_z, text_z = model.project(graphs, text_emb)
    return {int(k): retrieval_hits(graph_z, text_z, int(k)) for k in ks}


def build_predictor(gin, n_tasks: int, dropout: float = 0.3):
    """A ``GraphPredictor`` whose encoder is a deep copy of ``gin``: it starts from exactly the
    pre-trained weights (the official fine-tuning never loads them), and fine-tuning leaves
    ``gin`` untouched."""
    from molkit.models.gnn import GraphPredictor

    return GraphPredictor(n_tasks, gin=copy.deepcopy(gin), dropout=dropout)
