"""ICMA: in-context molecule adaptation (Li et al., *Large Language Models are In-Context
Molecule Learners*, arXiv 2403.04197), molecule -> caption (``mol2cap``) and caption -> molecule
(``cap2mol``).

1. **Hybrid context retrieval** (:class:`BM25Retriever`, :class:`FingerprintRetriever`,
   :class:`GraphRetriever`): cap2mol retrieves pool pairs whose captions match the query caption
   (BM25, ``bm25s``); mol2cap retrieves pool molecules similar to the query molecule, by
   fingerprint Tanimoto (``morgan``: Morgan radius-2 bits, MolReGPT's baseline; ``rdkit``: RDKit's
   topological fingerprint, which is what the official code's "morgan" option computes) or by
   cosine similarity of GIN graph embeddings. The paper uses Mole-BERT, which is not available
   offline; :func:`pretrain_gin` pre-trains ``molkit.models.gnn.GIN`` on the pool's molecules with
   attribute masking (``molkit.models.gnn.attribute_masking_pretrain``: hide the element of 15 % of
   the atoms, predict it from the node embeddings) and the graph embedding is the mean of the node
   embeddings. A training query never retrieves itself, nor any pool entry of the same molecule
   (:func:`same_molecule_exclusions`); the pool never holds a test molecule (:func:`load_chebi20`).
2. **Post-retrieval re-ranking** (:func:`rerank`): *random walk* (training prompts only) picks
   ``k`` of the top ``candidates`` by walking down the ranked list from the top: at each
   candidate a coin with probability ``p_skip`` decides to step past it, otherwise it is taken; the
   walk stops when ``k`` are taken; if the list runs out first, the highest-ranked candidates not
   yet taken fill the remaining slots. The order of the taken examples stays the ranked order.
   (The released code has no random walk; this rule implements the paper's description: the model
   sees lower-ranked examples during training, with a chance that decays geometrically with the
   rank.) *Sequence reversal* then orders the examples from least to most similar, so the most
   similar example sits last, right before the query, as the official code does.
3. **In-context molecule tuning** (:func:`build_prompts`, :func:`fine_tune_and_generate`): prompts
   of ``k`` examples in the official template's shape (:data:`TEMPLATES`) followed by the query; the
   loss covers only the answer tokens (``molkit.models.lm``). Examples that do not fit the
   cut-off are dropped from the front (the least similar ones after reversal).

Evaluation: corpus metrics per direction (:func:`evaluate_direction`) and per-item scores for paired
comparisons (:func:`per_item_scores`); the trivial baseline copies the best-retrieved output
(:func:`retrieval_only`).

Data here: ChEBI-20's 26,407-pair train split is upstream only, so the ``smoke`` and ``default``
profiles train and retrieve from the 3,301-pair validation split and test on the official test
split; ``full`` uses the real train split (``chebi20-full``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.models.lm import FewShotTemplate

__all__ = [
    "DIRECTIONS",
    "PAPER_RESULTS",
    "TEMPLATES",
    "Neighbours",
    "BM25Retriever",
    "FingerprintRetriever",
    "GraphRetriever",
    "RandomRetriever",
    "molecule_keys",
    "load_chebi20",
    "same_molecule_exclusions",
    "pretrain_gin",
    "rerank",
    "random_walk",
    "search",
    "references",
    "build_prompts",
    "retrieval_only",
    "evaluate_direction",
    "per_item_scores",
    "PER_ITEM_METRIC",
    "mean_score",
    "LMRun",
    "fine_tune_and_generate",
    "newline_token_ids",
    "failure_modes",
    "clean_generation",
    "molt5_predictions",
    "paper_table",
]

DIRECTIONS = ("mol2cap", "cap2mol")

#: Published ChEBI-20 test numbers quoted by the issue (ICMA paper Tables; MolT5 paper for
#: MolT5-base).
PAPER_RESULTS = pd.DataFrame(
    [
        (
            "mol2cap",
            "ICMA (Mistral-7B)",
            {"bleu2": 0.651, "bleu4": 0.581, "rougeL": 0.625, "meteor": 0.661},
        ),
        (
            "mol2cap",
            "Mistral-7B direct fine-tuning",
            {"bleu2": 0.566, "bleu4": 0.478, "rougeL": 0.547, "meteor": 0.572},
        ),
        (
            "mol2cap",
            "MolT5-large",
            {"bleu2": 0.594, "bleu4": 0.508, "rougeL": 0.594, "meteor": 0.614},
        ),
        (
            "mol2cap",
            "MolT5-base (MolT5 paper)",
            {
                "bleu2": 0.540,
                "bleu4": 0.457,
                "rouge1": 0.634,
                "rouge2": 0.485,
                "rougeL": 0.578,
                "meteor": 0.569,
            },
        ),
        (
            "cap2mol",
            "ICMA (Mistral-7B)",
            {"exact_match": 0.460, "morgan_fts": 0.789, "validity": 0.958},
        ),
        (
            "cap2mol",
            "Mistral-7B direct fine-tuning",
            {"exact_match": 0.234, "morgan_fts": 0.649, "validity": 0.918},
        ),
        ("cap2mol", "MolT5-large", {"exact_match": 0.311, "morgan_fts": 0.684, "validity": 0.905}),
        (
            "cap2mol",
            "MolT5-base (MolT5 paper)",
            {
                "bleu": 0.769,
                "exact_match": 0.081,
                "levenshtein": 24.458,
                "maccs_fts": 0.721,
                "rdk_fts": 0.588,
                "morgan_fts": 0.529,
                "validity": 0.772,
            },
        ),
    ],
    columns=["direction", "method", "metrics"],
)

TEMPLATES: dict[str, FewShotTemplate] = {
    "mol2cap": FewShotTemplate(
        example="Generate a caption for the molecule: {input}\nCaption: {output}",
        query="Generate a caption for the molecule: {input}\nCaption:",
        query_after_examples=(
            "Based on the above examples, analyse the similarities and differences between the "
            "examples and finally generate a caption for the molecule: {input}\nCaption:"
        ),
    ),
    "cap2mol": FewShotTemplate(
        example="Generate a molecule for the caption: {input}\nMolecule: {output}",
        query="Generate a molecule for the caption: {input}\nMolecule:",
        query_after_examples=(
            "Based on the above examples, analyse the similarities and differences between the "
            "examples and finally generate a molecule for the caption: {input}\nMolecule:"
        ),
    ),
}


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'mol2cap' or 'cap2mol', got {direction!r}")


# ---------------------------------------------------------------- data


def molecule_keys(smiles: Sequence[str]) -> list[str]:
    """One identity key per molecule: its standard InChIKey (RDKit), or the string itself where
    RDKit cannot make one. Two SMILES of the same molecule (other tautomer spelling, other
    aromaticity or charge notation that canonical SMILES keep apart) get the same key."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        keys = []
        for smi in smiles:
            mol = Chem.MolFromSmiles(str(smi))
            key = Chem.MolToInchiKey(mol) if mol is not None else ""
            keys.append(key or str(smi))
        return keys
    finally:
        RDLogger.EnableLog("rdApp.*")


def load_chebi20(dataset: str = "chebi20") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(pool, test, note)``: the retrieval / training pool and the official test split.

    ``chebi20``: the pool is the 3,301-pair validation split (the train split is not mirrored);
    ``chebi20-full``: the 26,407-pair train split. Pool rows whose molecule also occurs in the test
    split are removed, compared by InChIKey (`molecule_keys`), which also catches the pairs whose
    canonical SMILES differ (counted in ``note``). Columns: ``id``, ``smiles`` (canonical),
    ``smiles_raw`` (as in the file: the text the LM reads and writes), ``text``, ``key``
    (InChIKey).
    """
    from molkit.data import load_dataset

    if dataset not in ("chebi20", "chebi20-full"):
        raise ValueError(f"dataset must be 'chebi20' or 'chebi20-full', got {dataset!r}")
    df = load_dataset(dataset)
    pool_split = "valid" if dataset == "chebi20" else "train"
    test = df[df["split"] == "test"].reset_index(drop=True)
    pool = df[df["split"] == pool_split].reset_index(drop=True)
    test["key"] = molecule_keys(test["smiles_raw"].tolist())
    pool["key"] = molecule_keys(pool["smiles_raw"].tolist())
    overlap = pool["key"].isin(set(test["key"]))
    by_smiles = int(pool["smiles"].isin(set(test["smiles"])).sum())
    pool = pool[~overlap].reset_index(drop=True)
    note = (
        f"pool = ChEBI-20 {pool_split} split ({len(pool)} pairs after removing "
        f"{int(overlap.sum())} test molecules by InChIKey; {by_smiles} by canonical SMILES); "
        f"test = official test split ({len(test)} pairs)"
    )
    return pool, test, note


def same_molecule_exclusions(keys: Sequence[str]) -> list[np.ndarray]:
    """For each pool entry i, the pool indices a training query i must not retrieve: itself and
    every entry of the same molecule (same key: `molecule_keys`, or canonical SMILES)."""
    values = np.asarray(keys, dtype=object)
    groups = pd.Series(np.arange(len(keys))).groupby(values).apply(np.asarray)
    return [groups[s] for s in keys]


# ---------------------------------------------------------------- retrieval


@dataclass
class Neighbours:
    """Retrieved pool indices (n, k), most similar first, and their scores (n, k)."""

    indices: np.ndarray
    scores: np.ndarray


def _top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None) -> Neighbours:
    """Top-k columns of a (n, m) score matrix per row, excluded columns never chosen."""
    scores = np.array(scores, dtype=np.float64)
    if exclude is not None:
        for row, cols in enumerate(exclude):
            scores[row, cols] = -np.inf
    if k > scores.shape[1]:
        raise ValueError(f"k = {k} exceeds the pool size {scores.shape[1]}")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    indices = np.take_along_axis(part, order, axis=1)
    return Neighbours(indices, np.take_along_axis(scores, indices, axis=1))


class BM25Retriever:
    """BM25 (``bm25s``, Lucene variant, English stop words) over the pool's captions."""

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
        """The ``k`` best pool captions per query; ``exclude[i]``: the pool indices query i must
        skip."""
        import bm25s

        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        depth = min(self.n, k + extra)
        if k > self.n:
            raise ValueError(f"k = {k} exceeds the pool size {self.n}")
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
        """The ``k`` pool molecules most similar to each query molecule."""
        from molkit.chem import fingerprint_objects, tanimoto_matrix

        queries = fingerprint_objects(list(smiles), kind=self.kind, progress=False)
        return _top_k(tanimoto_matrix(queries, self._fps), k, exclude)


def pretrain_gin(
    graphs: Sequence,
    layers: int = 5,
    hidden: int = 128,
    epochs: int = 5,
    seed: int = 0,
    progress: bool = True,
):
    """A ``GIN`` (mean pooling) pre-trained on the molecular ``graphs``
    (``molkit.chem.graphs_from_smiles``) by attribute masking; returns
    ``(gin, losses per epoch)``."""
    import torch

    from molkit.models.gnn import GIN, attribute_masking_pretrain

    torch.manual_seed(seed)
    gin = GIN(num_layers=layers, hidden=hidden, pooling="mean")
    losses = attribute_masking_pretrain(
        gin, list(graphs), epochs=epochs, seed=seed, progress=progress
    )
    return gin, losses


class RandomRetriever:
    """The floor of retrieval: ``k`` pool entries drawn at random per query (seeded), scored 0.
    A retriever is worth its cost only when its contexts beat these."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed

    def search(
        self, queries: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """``k`` distinct random pool indices per query, never an excluded one."""
        if k > self.n:
            raise ValueError(f"k = {k} exceeds the pool size {self.n}")
        rng = np.random.default_rng(self.seed)
        scores = rng.random((len(queries), self.n))
        indices = _top_k(scores, k, exclude).indices
        return Neighbours(indices, np.zeros(indices.shape))


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

    def _embed(self, graphs: Sequence) -> np.ndarray:
        from molkit.models.gnn import embed_graphs

        return self._normalise(embed_graphs(self.gin, list(graphs)))

    def search(
        self, smiles: Sequence[str], k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> Neighbours:
        """The ``k`` pool molecules whose embeddings are closest (cosine) to each query
        molecule's."""
        from molkit.chem import graphs_from_smiles

        queries = self._embed(graphs_from_smiles(list(smiles), progress=False))
        return _top_k(queries @ self._emb.T, k, exclude)


def search(
    direction: str,
    retriever,
    queries: pd.DataFrame,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
) -> Neighbours:
    """Run ``retriever`` on the side of ``queries`` a direction retrieves by: canonical SMILES for
    mol2cap (fingerprint / graph retrievers), captions for cap2mol (BM25)."""
    _check_direction(direction)
    column = "smiles" if direction == "mol2cap" else "text"
    return retriever.search(queries[column].astype(str).tolist(), k, exclude)


# ---------------------------------------------------------------- re-ranking


def random_walk(ranked: np.ndarray, k: int, p_skip: float, rng: np.random.Generator) -> np.ndarray:
    """Pick ``k`` of each row's ranked candidates (n, m) by the random walk of the module docstring:
    from the top, skip each candidate with probability ``p_skip``, else take it, until ``k`` are
    taken; fill from the top if the list runs out. Returns (n, k) in ranked order."""
    ranked = np.asarray(ranked)
    if ranked.shape[1] < k:
        raise ValueError(f"need at least k = {k} candidates per row, got {ranked.shape[1]}")
    if not 0 <= p_skip < 1:
        raise ValueError(f"p_skip must be in [0, 1), got {p_skip}")
    out = np.zeros((ranked.shape[0], k), dtype=ranked.dtype)
    for row in range(ranked.shape[0]):
        taken = [j for j in range(ranked.shape[1]) if rng.random() >= p_skip][:k]
        taken += [j for j in range(ranked.shape[1]) if j not in taken][: k - len(taken)]
        out[row] = ranked[row, sorted(taken)]
    return out


def rerank(
    neighbours: Neighbours,
    k: int,
    reverse: bool = True,
    walk_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Context example indices (n, k) in prompt order from ranked ``neighbours`` (n, m >= k).

    ``walk_p``: random-walk skip probability (``None``: plain top-k); ``reverse``: most similar
    last.
    """
    if walk_p is None:
        chosen = neighbours.indices[:, :k]
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        chosen = random_walk(neighbours.indices, k, walk_p, rng)
    return chosen[:, ::-1].copy() if reverse else chosen.copy()


# ---------------------------------------------------------------- prompts


def _io(direction: str, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a pool/test frame for a direction: SMILES as written and captions."""
    smiles, text = frame["smiles_raw"].astype(str).tolist(), frame["text"].astype(str).tolist()
    return (smiles, text) if direction == "mol2cap" else (text, smiles)


def references(direction: str, frame: pd.DataFrame) -> list[str]:
    """What a direction must produce for the rows of ``frame``: captions (mol2cap) or SMILES as
    written (cap2mol)."""
    _check_direction(direction)
    return _io(direction, frame)[1]


def build_prompts(
    direction: str,
    queries: pd.DataFrame,
    pool: pd.DataFrame,
    contexts: np.ndarray | None,
    tokenizer,
    max_prompt_tokens: int | Sequence[int],
) -> tuple[list[str], list[str], np.ndarray]:
    """Prompts, answers and the number of context examples kept, for each row of ``queries``.

    ``contexts``: pool indices (n, k) in prompt order (``rerank``'s output), or ``None`` for the
    direct (no-context) prompt. ``max_prompt_tokens``: one budget for all, or one per query (e.g.
    the cut-off minus that query's answer length). Answers start with a space, as the LM writes them
    after "Caption:" / "Molecule:".
    """
    from molkit.models.lm import fit_fewshot_prompt

    _check_direction(direction)
    template = TEMPLATES[direction]
    q_in, q_out = _io(direction, queries)
    p_in, p_out = _io(direction, pool)
    budgets = np.broadcast_to(np.asarray(max_prompt_tokens), (len(q_in),))
    prompts, kept = [], np.zeros(len(q_in), dtype=int)
    for i, query in enumerate(q_in):
        examples = [] if contexts is None else [(p_in[j], p_out[j]) for j in contexts[i]]
        prompt, kept[i] = fit_fewshot_prompt(tokenizer, template, examples, query, int(budgets[i]))
        prompts.append(prompt)
    return prompts, [" " + a for a in q_out], kept


# ---------------------------------------------------------------- evaluation


def evaluate_direction(
    direction: str, predictions: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """mol2cap: caption metrics; cap2mol: molecule metrics (``molkit.eval.text``)."""
    from molkit.eval.text import caption_metrics, molecule_metrics

    _check_direction(direction)
    if direction == "mol2cap":
        return caption_metrics(predictions, references)
    return molecule_metrics(predictions, references)


#: The per-item score of each direction that paired comparisons resample (see `per_item_scores`).
PER_ITEM_METRIC = {
    "mol2cap": "ROUGE-L F1 per caption (mean)",
    "cap2mol": "Morgan Tanimoto per molecule, invalid = 0 (mean)",
}


def per_item_scores(
    direction: str, predictions: Sequence[str], references: Sequence[str]
) -> np.ndarray:
    """One score per test item (n,), higher is better: mol2cap, the ROUGE-L F1 of each caption
    (``rouge_score``, as in `caption_metrics`); cap2mol, the Tanimoto similarity of Morgan count
    fingerprints (as ``morgan_fts``) with an invalid prediction scoring 0 (``morgan_fts`` instead
    averages over valid predictions only)."""
    from molkit.eval.text import molecule_similarity

    _check_direction(direction)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
    if direction == "mol2cap":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        pairs = zip(predictions, references, strict=True)
        return np.array([scorer.score(str(r), str(p))["rougeL"].fmeasure for p, r in pairs])
    sims = molecule_similarity(
        [str(p).strip() for p in predictions], [str(r).strip() for r in references], "morgan"
    )
    return np.nan_to_num(sims, nan=0.0)


def mean_score(_y: np.ndarray, scores: np.ndarray) -> float:
    """The mean of per-item scores: the ``metric`` of a paired bootstrap over test items (its
    ``y_true`` is unused: the scores already compare each item with its reference)."""
    return float(np.mean(scores))


def retrieval_only(direction: str, neighbours: Neighbours, pool: pd.DataFrame) -> list[str]:
    """The nearest neighbour's output as the prediction (its caption, or its SMILES)."""
    _check_direction(direction)
    outputs = _io(direction, pool)[1]
    return [outputs[i] for i in neighbours.indices[:, 0]]


# ---------------------------------------------------------------- fine-tuning and generation


@dataclass
class LMRun:
    """One fine-tune-then-generate run: test predictions, the training report, generation time,
    number of generated tokens (approximate: re-tokenised outputs)."""

    predictions: list[str]
    train: object
    generation_seconds: float
    generated_tokens: int

    @property
    def generation_tokens_per_second(self) -> float:
        if self.generation_seconds <= 0:
            return float("nan")
        return self.generated_tokens / self.generation_seconds


def clean_generation(text: str) -> str:
    """The first line of a generated answer (captions and SMILES are one line each), stripped."""
    return text.strip().split("\n", 1)[0].strip()


def newline_token_ids(tokenizer) -> list[int]:
    """The ids of every vocabulary token whose text contains a line break: a caption or a SMILES
    is one line, so generation stops at the first of them (an untuned LM would otherwise go on to
    invent the next example)."""
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if "\n" in tokenizer.convert_tokens_to_string([t]))


def fine_tune_and_generate(
    lm_path,
    train_prompts: Sequence[str] | None,
    train_answers: Sequence[str] | None,
    test_prompts: Sequence[str],
    train,
    cutoff: int,
    max_new_tokens: int,
    gen_batch_size: int,
    lora: bool = False,
    extra_test_prompts: dict[str, Sequence[str]] | None = None,
    desc: str = "",
    cache: bool = True,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> tuple[LMRun, dict[str, list[str]]]:
    """Load a fresh copy of the LM, fine-tune it (LoRA if ``lora``, else fully) on the prompts with
    answer-only loss (``train``: a ``molkit.models.lm.TrainConfig``; its seed also seeds
    torch before the model loads; examples truncated to ``cutoff`` tokens; the trained weights are
    cached by `molkit.models.train_cached` unless ``cache`` is False, so a re-run replays them),
    then generate greedily, stopping at the end of the line, for ``test_prompts`` and for each set
    of ``extra_test_prompts`` (test-time ablations with the same trained model). ``lm_dtype`` /
    ``lm_quantization``: how the LM loads (`molkit.models.lm.load_lm`).

    ``train_prompts=None``: no tuning at all (in-context prompting of the pre-trained LM); the
    returned run's ``train`` is then ``None``."""
    import torch

    from molkit.models import train_cached
    from molkit.models.lm import apply_lora, encode_example, generate_texts, load_lm

    torch.manual_seed(train.seed)
    model, tok = load_lm(lm_path, dtype=lm_dtype, quantization=lm_quantization)
    report = None
    if train_prompts is not None:
        if lora:
            model = apply_lora(model)
        pairs = zip(train_prompts, train_answers, strict=True)
        examples = [encode_example(tok, p, a, max_length=cutoff) for p, a in pairs]
        report = train_cached(
            model, examples, train, tok.pad_token_id, key={"method": "icma", "run": desc},
            cache=cache,
        )  # fmt: skip
    stop = {"eos_token_id": [tok.eos_token_id, *newline_token_ids(tok)]}

    def run(prompts: Sequence[str], label: str) -> tuple[list[str], float, int]:
        start = time.perf_counter()
        outs = generate_texts(
            model,
            tok,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=gen_batch_size,
            desc=f"generating {label}",
            generate_kwargs=stop,
        )
        seconds = time.perf_counter() - start
        n_tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
        return [clean_generation(o) for o in outs], seconds, n_tokens

    predictions, seconds, n_tokens = run(test_prompts, desc)
    extra = {
        name: run(prompts, f"{desc} {name}")[0]
        for name, prompts in (extra_test_prompts or {}).items()
    }
    return LMRun(predictions, report, seconds, n_tokens), extra


def _repeats(text: str, n: int = 4) -> bool:
    """Whether some word n-gram occurs at least three times (a decoding loop)."""
    from molkit.eval.text import word_tokenize

    words = word_tokenize(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return bool(grams) and max(pd.Series(grams).value_counts()) >= 3


def failure_modes(
    direction: str,
    predictions: Sequence[str],
    context_outputs: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Per prediction, the common failure modes as booleans: ``empty``; ``copies_context``: the
    output is (nearly) one of its prompt's context outputs (captions: ROUGE-L F1 >= 0.9 with one;
    molecules: the same InChIKey as one), i.e. copy-and-edit of the context left unedited;
    ``repeats`` (captions: a word 4-gram three times or more); ``invalid`` (molecules: RDKit cannot
    parse it). ``context_outputs[i]``: the outputs of prompt i's context examples (``None``: no
    context, the column is False)."""
    _check_direction(direction)
    preds = [str(p) for p in predictions]
    contexts = context_outputs if context_outputs is not None else [[] for _ in preds]
    if len(contexts) != len(preds):
        raise ValueError(f"got {len(contexts)} context lists for {len(preds)} predictions")
    frame = pd.DataFrame({"empty": [not p.strip() for p in preds]})
    if direction == "mol2cap":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        frame["copies_context"] = [
            any(scorer.score(str(c), p)["rougeL"].fmeasure >= 0.9 for c in ctx) if p else False
            for p, ctx in zip(preds, contexts, strict=True)
        ]
        frame["repeats"] = [_repeats(p) for p in preds]
    else:
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        try:
            valid = [bool(p.strip()) and Chem.MolFromSmiles(p) is not None for p in preds]
        finally:
            RDLogger.EnableLog("rdApp.*")
        keys = molecule_keys(preds)
        frame["copies_context"] = [
            ok and key in set(molecule_keys(list(ctx))) if ctx else False
            for ok, key, ctx in zip(valid, keys, contexts, strict=True)
        ]
        frame["invalid"] = [not v for v in valid]
    return frame


# ---------------------------------------------------------------- peers and published numbers


def molt5_predictions(direction: str, queries: pd.DataFrame) -> list[str]:
    """MolT5-base's published test outputs for the rows of ``queries`` (matched by the input: the
    canonical SMILES for mol2cap, the caption for cap2mol; the files are not in test-file order and
    write some SMILES with different backslash escapes)."""
    from molkit.data import load_dataset

    _check_direction(direction)
    df = load_dataset(f"molt5-base-{direction}")
    key = "smiles" if direction == "mol2cap" else "text"
    lookup = dict(zip(df[key].astype(str), df["prediction"].astype(str), strict=True))
    missing = [q for q in queries[key].astype(str) if q not in lookup]
    if missing:
        raise KeyError(
            f"{len(missing)} queries have no MolT5-base output, e.g. {missing[0][:60]!r}"
        )
    return [lookup[q] for q in queries[key].astype(str)]


def paper_table(direction: str) -> pd.DataFrame:
    """The published rows of :data:`PAPER_RESULTS` for a direction, one column per metric."""
    _check_direction(direction)
    rows = PAPER_RESULTS[PAPER_RESULTS["direction"] == direction]
    return pd.DataFrame(list(rows["metrics"]), index=list(rows["method"]))
