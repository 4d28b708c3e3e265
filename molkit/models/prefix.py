"""A BERT split in two: a frozen lower part run once per text, a top part run (and trained) often.

Fine-tuning only the top ``k`` layers of a BERT-style encoder leaves the embeddings and the lower
layers unchanged, so their outputs can be computed once per text (`encode_prefix`) and reused for
every epoch, seed and later embedding (`PrefixStates`). `run_layers` runs a stack of BERT layers on
such states and `pool` turns them into one vector per text. Every forward pass runs under the
precision policy (`molkit.models.runtime.autocast`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from molkit._progress import tqdm
from molkit.models.runtime import autocast

__all__ = [
    "PrefixStates",
    "bucketed_order",
    "encode_prefix",
    "extended_mask",
    "load_chemical_lm",
    "pool",
    "prefix_hidden",
    "run_layers",
]


def load_chemical_lm(name_or_path: str | Path = "rxnfp-bert"):
    """(BERT-style encoder in eval mode on the CPU, tokenizer) for a registry name, a local
    folder or a hub id. The encoder must expose ``embeddings`` and ``encoder.layer`` (what
    `encode_prefix` splits)."""
    from molkit.models.encoders import load_encoder, load_tokenizer

    model = load_encoder(name_or_path, device="cpu")
    if not hasattr(model, "encoder") or not hasattr(model, "embeddings"):
        raise ValueError(
            f"{name_or_path}: prefix encoding needs a BERT-style encoder "
            f"(embeddings + encoder.layer), got {type(model).__name__}"
        )
    return model.eval(), load_tokenizer(name_or_path)


def extended_mask(config, hidden: torch.Tensor, mask: torch.Tensor):
    """The bidirectional attention mask the BERT layers of ``config`` expect, from a (B, L)
    padding mask."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def run_layers(layers, config, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, L, d) through a stack of BERT layers, with padding mask (B, L)."""
    ext = extended_mask(config, hidden, mask)
    for layer in layers:
        hidden = layer(hidden, ext)
    return hidden


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector (B, d) per text: the ``mean`` over unpadded tokens or the first (``cls``)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")


def prefix_hidden(model, enc, n_frozen: int) -> torch.Tensor:
    """The embeddings and the first ``n_frozen`` layers of ``model`` on tokenised texts ``enc``
    (``input_ids``, ``attention_mask``, optional ``token_type_ids``): float32 (B, L, d)."""
    with autocast("cpu"):  # the precision policy (molkit.models.runtime)
        hidden = model.embeddings(
            input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids")
        )
        hidden = run_layers(
            model.encoder.layer[:n_frozen], model.config, hidden, enc["attention_mask"]
        ).float()
    return hidden


@dataclass
class PrefixStates:
    """Outputs of a BERT's frozen lower part (embeddings + the first ``n_frozen`` layers) for a
    list of texts: ``states[i]`` is text i's (length_i, hidden) float32 tensor."""

    states: list[torch.Tensor]
    n_frozen: int

    def __len__(self) -> int:
        return len(self.states)

    def subset(self, idx: Sequence[int]) -> PrefixStates:
        return PrefixStates([self.states[int(i)] for i in idx], self.n_frozen)

    def batches(
        self, batch_size: int, order: Sequence[int] | None = None
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """Yield (indices, hidden (B, L, d), mask (B, L)) padded batches in ``order``
        (default: by length, which keeps padding small)."""
        if order is None:
            order = np.argsort([len(s) for s in self.states], kind="stable")
        order = np.asarray(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = [self.states[i] for i in idx]
            hidden = nn.utils.rnn.pad_sequence(rows, batch_first=True)
            mask = torch.zeros(hidden.shape[:2], dtype=torch.long)
            for j, r in enumerate(rows):
                mask[j, : len(r)] = 1
            yield idx, hidden, mask


def bucketed_order(prefix: PrefixStates, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order whose consecutive ``batch_size`` blocks hold texts of similar length
    (shuffle, sort within windows of 8 batches, shuffle the batches): less padding per step."""
    perm = rng.permutation(len(prefix))
    window = 8 * batch_size
    lengths = np.array([len(s) for s in prefix.states])
    chunks = [
        w[np.argsort(lengths[w], kind="stable")]
        for w in np.split(perm, range(window, len(perm), window))
    ]
    batches = [b for c in chunks for b in np.split(c, range(batch_size, len(c), batch_size))]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else perm


@torch.no_grad()
def encode_prefix(
    model,
    tokenizer,
    texts: Sequence[str],
    n_trainable_layers: int,
    batch_size: int = 64,
    max_length: int = 256,
    progress: bool = True,
) -> PrefixStates:
    """Run the embeddings and the frozen lower ``num_layers - n_trainable_layers`` layers once
    over ``texts`` (batched by length), keeping each text's unpadded states."""
    n_layers = len(model.encoder.layer)
    if not 0 <= n_trainable_layers <= n_layers:
        raise ValueError(f"n_trainable_layers must be in 0..{n_layers}, got {n_trainable_layers}")
    n_frozen = n_layers - n_trainable_layers
    model.eval()
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    states: list[torch.Tensor | None] = [None] * len(texts)
    for start in tqdm(
        range(0, len(texts), batch_size), desc="LM (frozen layers)", disable=not progress
    ):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = prefix_hidden(model, enc, n_frozen)
        lengths = enc["attention_mask"].sum(1).tolist()
        for j, i in enumerate(idx):
            states[i] = hidden[j, : lengths[j]].clone()
    return PrefixStates(states, n_frozen)  # type: ignore[arg-type]
