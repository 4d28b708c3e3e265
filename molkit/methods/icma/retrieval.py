"""ICMA's hybrid context retrieval: BM25 over captions (cap2mol), molecular similarity (mol2cap).

* :class:`OkapiBM25Retriever`: BM25 as the official code computes it (``rank_bm25.BM25Okapi``:
  k1 1.5, b 0.75, a negative IDF floored at 0.25 x the mean IDF; captions tokenised by the
  official ``remove_punctuation``: "-", ",", "(", ")" become spaces, "." is dropped, split on
  spaces, case kept, no stop words; ``data/easy_load_examples.py`` of phenixace/ICMA, lines 35-61),
  written with sparse matrices so that it scores a whole pool at once.
* :class:`LuceneBM25Retriever`: ``bm25s``' Lucene variant with English stop words (what molkit
  used before; measured against the official one in the notebook).
* :class:`FingerprintRetriever`: Tanimoto of Morgan (radius 2, 2,048 bits: MolReGPT's) or RDKit
  topological fingerprints (what the official code's "morgan" option computes).
* :class:`GraphRetriever`: cosine of GIN graph embeddings. The paper uses Mole-BERT, not available
  offline; :func:`pretrain_gin` pre-trains a GIN on the pool's molecules by attribute masking
  until the masked-atom loss of held-out pool graphs stops improving.
* :class:`RandomRetriever`: the floor.

A pool query never retrieves itself nor any pool entry of the same molecule (``exclude``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.methods.icma.corpus import inputs_and_outputs
from molkit.methods.icma.settings import check_direction

__all__ = [
    "Neighbours",
    "OkapiBM25Retriever",
    "LuceneBM25Retriever",
    "FingerprintRetriever",
    "GraphRetriever",
    "RandomRetriever",
    "official_bm25_tokens",
    "pretrain_gin",
    "search",
    "retrieval_only",
]


@dataclass
class Neighbours:
    """Retrieved pool indices (n, k), most similar first, and their scores (n, k)."""

    indices: np.ndarray
    scores: np.ndarray


def _top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None) -> Neighbours:
    """Top-k columns of a (n, m) score matrix per row, excluded columns never chosen; ties go to
    the lower pool index (the official code's stable sort)."""
    scores = np.array(scores, dtype=np.float64)
    if exclude is not None:
        for row, cols in enumerate(exclude):
            scores[row, cols] = -np.inf
    if k > scores.shape[1]:
        raise ValueError(f"k = {k} exceeds the pool size {scores.shape[1]}")
    indices = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return Neighbours(indices, np.take_along_axis(scores, indices, axis=1))


#: Queries scored at once: a dense (CHUNK, pool) block of scores and its sort, ~0.4 GB at
#: ChEBI-20's 26k-pair pool, whatever the number of queries.
CHUNK = 1024


def _chunked_top_k(
    scores: Callable[[int, int], np.ndarray],
    n: int,
    k: int,
    exclude: Sequence[np.ndarray] | None,
) -> Neighbours:
    """`_top_k` over ``n`` queries, `CHUNK` at a time: ``scores(start, stop)`` gives the
    (stop - start, pool) block of those queries. The same neighbours as one block."""
    parts = [
        _top_k(scores(i, min(i + CHUNK, n)), k, None if exclude is None else exclude[i : i + CHUNK])
        for i in range(0, n, CHUNK)
    ]
    if not parts:
        return Neighbours(np.zeros((0, k), dtype=np.int64), np.zeros((0, k)))
    return Neighbours(
        np.concatenate([p.indices for p in parts]), np.concatenate([p.scores for p in parts])
    )


def official_bm25_tokens(text: str) -> list[str]:
    """A caption's tokens as the official ICMA code makes them (``remove_punctuation``, then a
    split on single spaces; the case is kept)."""
    for old, new in (("-", " "), (",", " "), (".", ""), ("(", " "), (")", " ")):
        text = text.replace(old, new)
    return re.sub(r" +", " ", text).split(" ")


class OkapiBM25Retriever:
    """Okapi BM25 over the pool's captions, as ``rank_bm25.BM25Okapi`` scores them (module
    docstring): ``idf(t) = ln(N - n_t + 0.5) - ln(n_t + 0.5)``, negative values replaced by
    ``epsilon`` x the mean idf; ``score(q, d) = sum over the query's tokens (repeats counted) of
    idf(t) tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))``."""

    name = "Okapi BM25 (official: punctuation stripped, no stop words)"

    def __init__(
        self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ):
        from scipy import sparse

        docs = [official_bm25_tokens(str(t)) for t in texts]
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, doc in enumerate(docs):
            for token in doc:
                rows.append(i)
                cols.append(self.vocab.setdefault(token, len(self.vocab)))
        self.n = len(docs)
        tf = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(self.n, len(self.vocab))
        )  # duplicates summed: term counts
        tf.sum_duplicates()
        doc_len = np.array([len(d) for d in docs], dtype=float)
        df = np.bincount(tf.indices, minlength=len(self.vocab)).astype(float)
        idf = np.log(self.n - df + 0.5) - np.log(df + 0.5)
        idf[idf < 0] = epsilon * idf.mean()
        norm = k1 * (1 - b + b * doc_len / doc_len.mean())
        weights = tf.copy()
        counts = weights.data
        row_of = np.repeat(np.arange(self.n), np.diff(weights.indptr))
        weights.data = idf[weights.indices] * counts * (k1 + 1) / (counts + norm[row_of])
        self._weights = weights.T.tocsr()  # (vocab, docs)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(n_queries, pool) BM25 scores."""
        from scipy import sparse

        rows, cols = [], []
        for i, query in enumerate(queries):
            for token in official_bm25_tokens(str(query)):
                j = self.vocab.get(token)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        q = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab))
        )
        return np.asarray((q @ self._weights).todense())

    def search(
        self, queries: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """The ``k`` best pool captions per query; ``exclude[i]``: pool indices query i skips.
        Scored in chunks of `CHUNK` queries (a dense block of scores each)."""
        queries = list(queries)
        return _chunked_top_k(lambda a, b: self.scores(queries[a:b]), len(queries), k, exclude)


class LuceneBM25Retriever:
    """BM25 of ``bm25s`` (Lucene variant, lower-cased, English stop words) over the captions."""

    name = "Lucene BM25 (bm25s, English stop words)"

    def __init__(self, texts: Sequence[str]):
        import bm25s

        from molkit._progress import quiet_library_logs

        quiet_library_logs(("bm25s",))  # bm25s sets its logger to DEBUG when imported
        self.n = len(texts)
        self._bm25 = bm25s.BM25()
        tokens = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
        self._bm25.index(tokens, show_progress=False)

    def search(
        self, queries: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """The ``k`` best pool captions per query; ``exclude[i]``: pool indices query i skips."""
        import bm25s

        if k > self.n:
            raise ValueError(f"k = {k} exceeds the pool size {self.n}")
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        depth = min(self.n, k + extra)
        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        docs, scores = self._bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
        indices = np.zeros((len(queries), k), dtype=np.int64)
        kept = np.zeros((len(queries), k))
        for row in range(len(queries)):
            banned = set(exclude[row].tolist()) if exclude is not None else set()
            keep = [j for j in range(depth) if int(docs[row, j]) not in banned][:k]
            indices[row], kept[row] = docs[row, keep], scores[row, keep]
        return Neighbours(indices, kept)


class FingerprintRetriever:
    """Tanimoto similarity of fingerprints: ``morgan`` (radius 2, 2,048 bits) or ``rdkit``
    (RDKit topological, what the official ICMA code's "morgan" option actually computes)."""

    def __init__(self, smiles: Sequence[str], kind: str = "morgan"):
        from molkit.chem import fingerprint_objects

        if kind not in ("morgan", "rdkit"):
            raise ValueError(f"kind must be 'morgan' or 'rdkit', got {kind!r}")
        self.kind = kind
        self._fps = fingerprint_objects(list(smiles), kind=kind, progress=False)

    def search(
        self, smiles: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """The ``k`` pool molecules most similar to each query molecule (`CHUNK` at a time)."""
        from molkit.chem import fingerprint_objects, tanimoto_matrix

        queries = fingerprint_objects(list(smiles), kind=self.kind, progress=False)
        return _chunked_top_k(
            lambda a, b: tanimoto_matrix(queries[a:b], self._fps), len(queries), k, exclude
        )


def pretrain_gin(
    graphs: Sequence,
    valid_graphs: Sequence,
    layers: int = 5,
    hidden: int = 128,
    max_epochs: int = 50,
    patience: int = 3,
    mask_rate: float = 0.15,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
):
    """A ``GIN`` (mean pooling) pre-trained on ``graphs`` by attribute masking
    (`molkit.models.gnn.attribute_masking_pretrain`), validated after every epoch by the
    masked-atom cross-entropy of ``valid_graphs`` (the same masks each time), stopped after
    ``patience`` epochs without improvement, the best state restored. Returns ``(gin,
    FitReport)``; the report's ``curve`` holds ``train_loss`` and ``valid_loss`` per epoch."""
    import torch

    from molkit.models.gnn import GIN, attribute_masking_pretrain

    if not graphs or not valid_graphs:
        raise ValueError("pretrain_gin needs training and validation graphs")
    torch.manual_seed(seed)
    gin = GIN(num_layers=layers, hidden=hidden, pooling="mean")
    report = attribute_masking_pretrain(
        gin, graphs, epochs=max_epochs, mask_rate=mask_rate, lr=lr, batch_size=batch_size,
        seed=seed, progress=progress, valid_graphs=valid_graphs, patience=patience,
    )  # fmt: skip
    return gin, report


class GraphRetriever:
    """Cosine similarity of (pre-trained) GIN graph embeddings of the pool's ``graphs``, each
    dimension standardised with the pool's mean and standard deviation first: mean-pooled
    attribute-masking embeddings share one large common direction (raw cosines of any two
    molecules sit near 0.99), which standardising removes, so the cosine ranks by what differs."""

    def __init__(self, graphs: Sequence, gin):
        from molkit.models.gnn import embed_graphs

        self.gin = gin
        raw = embed_graphs(self.gin, list(graphs))
        self._mean, self._std = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        self._emb = self._normalise(raw)

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        emb = (raw - self._mean) / self._std
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def search(
        self, smiles: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """The ``k`` pool molecules whose embeddings are closest (cosine) to each query
        molecule's."""
        from molkit.chem import graphs_from_smiles
        from molkit.models.gnn import embed_graphs

        graphs = graphs_from_smiles(list(smiles), progress=False)
        queries = self._normalise(embed_graphs(self.gin, list(graphs)))
        return _chunked_top_k(lambda a, b: queries[a:b] @ self._emb.T, len(queries), k, exclude)


class RandomRetriever:
    """The floor of retrieval: ``k`` pool entries drawn at random per query (seeded), scored 0.
    A retriever is worth its cost only when its contexts beat these; its top-1 output is the
    trivial baseline (gate) of every generating arm."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed

    def search(
        self, queries: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """``k`` distinct random pool indices per query, never an excluded one."""
        if k > self.n:
            raise ValueError(f"k = {k} exceeds the pool size {self.n}")
        rng = np.random.default_rng(self.seed)  # drawn row after row: the same in any chunks
        indices = _chunked_top_k(
            lambda a, b: rng.random((b - a, self.n)), len(queries), k, exclude
        ).indices
        return Neighbours(indices, np.zeros(indices.shape))


def search(
    direction: str,
    retriever,
    queries: pd.DataFrame,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
) -> Neighbours:
    """Run ``retriever`` on the side of ``queries`` a direction retrieves by: canonical SMILES for
    mol2cap (fingerprint / graph retrievers), captions for cap2mol (BM25)."""
    check_direction(direction)
    column = "smiles" if direction == "mol2cap" else "text"
    return retriever.search(queries[column].astype(str).tolist(), k, exclude)


def retrieval_only(direction: str, neighbours: Neighbours, pool: pd.DataFrame) -> list[str]:
    """The nearest neighbour's output as the prediction (its caption, or its SMILES)."""
    outputs = inputs_and_outputs(direction, pool)[1]
    return [outputs[i] for i in neighbours.indices[:, 0]]
