"""Graph tokens: a molecule's atom embeddings turned into a few LM input vectors.

* ``QFormerLayer`` / ``QFormerProjector``: learned query tokens that self-attend, cross-attend to a
  molecule's atom embeddings (from ``molkit.models.gnn.GIN``) and are mapped to the LM's hidden
  size (BLIP-2's Q-Former, as MolCA / MolTC use it); ``init_projector_from_bert`` copies a BERT's
  self-attention and feed-forward weights into it.
* ``RoleProjectors``: one projector shared by both molecules of a pair, or one per role
  (``separate()``: shared in pre-training, copied per role for fine-tuning).
* ``GraphTokenEncoder``: a frozen GIN (atom embeddings cached per molecule) and the role
  projectors; ``forward(pairs)`` gives each pair's graph tokens.
* ``GRAPH_TOKEN`` / ``add_graph_token`` / ``graph_positions`` / ``encode_graph_examples``: the
  placeholder token whose input embeddings the graph tokens replace
  (`molkit.models.lm.splice_embeddings`), and answer-only examples that know where.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "GRAPH_TOKEN",
    "GraphTokenEncoder",
    "QFormerLayer",
    "QFormerProjector",
    "RoleProjectors",
    "add_graph_token",
    "encode_graph_examples",
    "graph_positions",
    "init_projector_from_bert",
]

#: The placeholder token whose input embeddings the graph tokens replace.
GRAPH_TOKEN = "<graph>"


class QFormerLayer(nn.Module):
    """One BERT-style (post-norm) block for query tokens: self-attention over the queries, cross-
    attention from the queries to atom embeddings (keys/values of width ``kv_dim``), feed-forward.

    The self-attention, its LayerNorm, the feed-forward and its LayerNorm have a BERT layer's
    shapes, so :func:`init_projector_from_bert` can copy them; the cross-attention is new (random),
    as in BLIP-2's Q-Former.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        kv_dim: int,
        intermediate: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        intermediate = intermediate or 4 * hidden
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.cross_attn = nn.MultiheadAttention(
            hidden, heads, dropout=dropout, kdim=kv_dim, vdim=kv_dim, batch_first=True
        )
        self.cross_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, atoms: Tensor, atom_mask: Tensor) -> Tensor:
        """``queries`` (B, Q, hidden), ``atoms`` (B, A, kv_dim), ``atom_mask`` (B, A) True on real
        atoms."""
        attended = self.self_attn(queries, queries, queries, need_weights=False)[0]
        h = self.self_norm(queries + self.dropout(attended))
        attended = self.cross_attn(
            h, atoms, atoms, key_padding_mask=~atom_mask, need_weights=False
        )[0]
        h = self.cross_norm(h + self.dropout(attended))
        ffn = self.ffn_out(nn.functional.gelu(self.ffn_in(h)))
        return self.ffn_norm(h + self.dropout(ffn))


class QFormerProjector(nn.Module):
    """Q-Former-style projector: ``n_query`` learned query tokens (a parameter) pass ``n_layers``
    :class:`QFormerLayer` blocks attending to a molecule's atom embeddings, then a linear map to
    the LM's hidden size. ``forward(atoms (B, A, atom_dim), mask (B, A))`` -> (B, n_query, out_dim).
    """

    def __init__(
        self,
        atom_dim: int,
        out_dim: int,
        n_query: int = 8,
        hidden: int = 384,
        heads: int = 12,
        n_layers: int = 2,
        intermediate: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.n_query, self.hidden, self.out_dim = n_query, hidden, out_dim
        self.queries = nn.Parameter(torch.randn(1, n_query, hidden) * 0.02)
        self.query_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(
            QFormerLayer(hidden, heads, atom_dim, intermediate, dropout) for _ in range(n_layers)
        )
        self.to_lm = nn.Linear(hidden, out_dim)

    def forward(self, atoms: Tensor, atom_mask: Tensor) -> Tensor:
        if atoms.dim() != 3 or atom_mask.shape != atoms.shape[:2]:
            raise ValueError(
                f"atoms must be (B, A, d) with a (B, A) mask; got {tuple(atoms.shape)} and "
                f"{tuple(atom_mask.shape)}"
            )
        h = self.query_norm(self.queries.expand(atoms.shape[0], -1, -1))
        for layer in self.layers:
            h = layer(h, atoms, atom_mask)
        return self.to_lm(h)


@torch.no_grad()
def init_projector_from_bert(projector: QFormerProjector, bert) -> list[str]:
    """Copy the first ``len(projector.layers)`` layers of a Hugging Face ``BertModel`` (e.g.
    registry ``minilm-l6``) into ``projector``: self-attention (query/key/value/output), its
    LayerNorm, the feed-forward and its LayerNorm, and the embedding LayerNorm into
    ``query_norm``. Cross-attention, queries and the output map stay random. Returns the copied
    parameter names of the projector.
    """
    config = bert.config
    if config.hidden_size != projector.hidden:
        raise ValueError(
            f"BERT hidden size {config.hidden_size} != projector hidden {projector.hidden}; build "
            f"QFormerProjector(hidden={config.hidden_size}, heads={config.num_attention_heads})"
        )
    if len(projector.layers) > config.num_hidden_layers:
        raise ValueError(
            f"the projector has {len(projector.layers)} layers, the BERT only "
            f"{config.num_hidden_layers}"
        )
    copied = []

    def put(target: Tensor, source: Tensor, name: str) -> None:
        if target.shape != source.shape:
            raise ValueError(
                f"{name}: shape {tuple(source.shape)} does not fit {tuple(target.shape)}"
            )
        target.copy_(source)
        copied.append(name)

    put(projector.query_norm.weight, bert.embeddings.LayerNorm.weight, "query_norm.weight")
    put(projector.query_norm.bias, bert.embeddings.LayerNorm.bias, "query_norm.bias")
    for i, layer in enumerate(projector.layers):
        src = bert.encoder.layer[i]
        att = src.attention.self
        weights = torch.cat([att.query.weight, att.key.weight, att.value.weight])
        biases = torch.cat([att.query.bias, att.key.bias, att.value.bias])
        put(layer.self_attn.in_proj_weight, weights, f"layers.{i}.self_attn.in_proj_weight")
        put(layer.self_attn.in_proj_bias, biases, f"layers.{i}.self_attn.in_proj_bias")
        pairs = {
            "self_attn.out_proj": src.attention.output.dense,
            "self_norm": src.attention.output.LayerNorm,
            "ffn_in": src.intermediate.dense,
            "ffn_out": src.output.dense,
            "ffn_norm": src.output.LayerNorm,
        }
        for name, module in pairs.items():
            target = layer.get_submodule(name)
            put(target.weight, module.weight, f"layers.{i}.{name}.weight")
            put(target.bias, module.bias, f"layers.{i}.{name}.bias")
    return copied


class RoleProjectors(nn.Module):
    """Projectors for the two roles of a pair (molecule 1 / molecule 2, e.g. solute / solvent).

    ``shared=True``: one projector serves both roles; :meth:`separate` copies it into one projector
    per role (MolTC's dynamic parameter sharing: shared in pre-training, role-specific in
    fine-tuning). ``forward(atoms, mask, role)`` -> (B, n_query, out_dim).
    """

    def __init__(self, projector: QFormerProjector, shared: bool = True):
        super().__init__()
        copies = [projector] if shared else [projector, copy.deepcopy(projector)]
        self.projectors = nn.ModuleList(copies)

    @property
    def shared(self) -> bool:
        return len(self.projectors) == 1

    def separate(self) -> RoleProjectors:
        """Give each role its own copy of the shared projector (in place); returns ``self``."""
        if self.shared:
            self.projectors.append(copy.deepcopy(self.projectors[0]))
        return self

    def forward(self, atoms: Tensor, atom_mask: Tensor, role: int) -> Tensor:
        if role not in (0, 1):
            raise ValueError(f"role must be 0 (molecule 1) or 1 (molecule 2), not {role!r}")
        return self.projectors[0 if self.shared else role](atoms, atom_mask)


class GraphTokenEncoder(nn.Module):
    """Graph tokens for molecule pairs: a frozen GIN's atom embeddings (computed once per molecule
    and kept) go through :class:`RoleProjectors`; ``forward(pairs)`` -> one (2 * n_query,
    lm_hidden) tensor per pair (molecule 1's tokens, then molecule 2's)."""

    def __init__(self, gin, projectors: RoleProjectors):
        super().__init__()
        self.gin = gin.eval().requires_grad_(False)
        self.projectors = projectors
        self._atoms: dict[str, Tensor] = {}

    @property
    def n_query(self) -> int:
        return self.projectors.projectors[0].n_query

    @torch.no_grad()
    def cache_atoms(self, smiles: Sequence[str], batch_size: int = 256) -> None:
        """Compute and keep the GIN atom embeddings of molecules not seen yet."""
        from torch_geometric.data import Batch

        from molkit.chem import graphs_from_smiles

        new = [s for s in dict.fromkeys(smiles) if s not in self._atoms]
        device = next(self.gin.parameters()).device
        for start in range(0, len(new), batch_size):
            chunk = new[start : start + batch_size]
            batch = Batch.from_data_list(graphs_from_smiles(chunk, progress=False)).to(device)
            nodes = self.gin.node_embeddings(batch).float().cpu()
            for k, s in enumerate(chunk):
                self._atoms[s] = nodes[batch.batch.cpu() == k]

    def _dense(self, smiles: Sequence[str]) -> tuple[Tensor, Tensor]:
        self.cache_atoms(smiles)
        width = max(self._atoms[s].shape[0] for s in smiles)
        device = next(self.projectors.parameters()).device
        atoms = torch.zeros(len(smiles), width, self.gin.out_dim)
        mask = torch.zeros(len(smiles), width, dtype=torch.bool)
        for i, s in enumerate(smiles):
            n = self._atoms[s].shape[0]
            atoms[i, :n], mask[i, :n] = self._atoms[s], True
        return atoms.to(device), mask.to(device)

    def forward(self, pairs: Sequence[tuple[str, str]]) -> list[Tensor]:
        first = self.projectors(*self._dense([a for a, _ in pairs]), role=0)
        second = self.projectors(*self._dense([b for _, b in pairs]), role=1)
        return list(torch.cat([first, second], dim=1).float())


def add_graph_token(model, tokenizer, token: str = GRAPH_TOKEN) -> int:
    """Register ``token`` as a special token (never merged with its neighbours, so each copy in a
    prompt is one position) and grow the model's embeddings when it is new. Returns its id. Its own
    embedding is never read: `molkit.models.lm.splice_embeddings` replaces it by a graph
    token."""
    if token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [token]}, replace_extra_special_tokens=False
        )
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return int(tokenizer.convert_tokens_to_ids(token))


def graph_positions(tokenizer, prompt: str, graph_token_id: int) -> list[int]:
    """Token positions of the graph placeholders in ``tokenizer(prompt)``."""
    ids = tokenizer(prompt)["input_ids"]
    return [i for i, t in enumerate(ids) if t == graph_token_id]


def encode_graph_examples(
    tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    graph_token_id: int | None,
    max_length: int = 512,
) -> list:
    """`molkit.models.lm.encode_example` per (prompt, answer) with the graph placeholders
    as ``extra_positions`` (none when ``graph_token_id`` is None): answer-only loss labels."""
    from molkit.models.lm import encode_example

    out = []
    for prompt, answer in zip(prompts, answers, strict=True):
        positions = (
            graph_positions(tokenizer, prompt, graph_token_id) if graph_token_id is not None else []
        )
        out.append(
            encode_example(
                tokenizer, prompt, answer, max_length=max_length, extra_positions=positions
            )
        )
    return out
