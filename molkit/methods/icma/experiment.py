"""ICMA's settings per profile and one function per Practical section of ``02_icma.ipynb``.

Each function takes the `Settings` (and what earlier sections returned) and returns `Results`:
tidy result rows, artefacts for the notebook to show, and `Claim` rows. None of them records;
the notebook calls ``molkit.record_results``. Called in the notebook's order, they draw the same
random numbers in the same order as the pipeline always did:

1. `load_data`: the pool, the test split and three seeded subsamples from one generator
   (training queries, LM test molecules, retrieval-evaluation pairs);
2. `check_metrics`: the metric code on MolT5-base's published outputs;
3. `build_retrievers`: BM25, fingerprint retrievers, the attribute-masking GIN; BM25 throughput;
4. `retrieval_baselines`: retrieval only (copy the nearest neighbour), per retriever;
5. `rerank_contexts`: random walk (training) and sequence reversal, test-time ablations;
6. `build_prompt_sets`: ICMA and direct prompts within the cut-off;
7. `fine_tune`: ICMA and direct fine-tuning of fresh copies of the LM, greedy generation;
8. `evaluate`: every candidate on the same LM test molecules, and the claims.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from molkit.methods.experiment import PROFILE_NAMES, Results
from molkit.methods.experiment import Settings as BaseSettings
from molkit.methods.icma.claims import DIRECT, ICMA, MOLT5, NO_TUNING, paper_claims
from molkit.methods.icma.method import (
    DIRECTIONS,
    BM25Retriever,
    FingerprintRetriever,
    GraphRetriever,
    Neighbours,
    RandomRetriever,
    build_prompts,
    evaluate_direction,
    failure_modes,
    fine_tune_and_generate,
    load_chebi20,
    molt5_predictions,
    paper_table,
    per_item_scores,
    pretrain_gin,
    references,
    rerank,
    retrieval_only,
    same_molecule_exclusions,
    search,
)
from molkit.models.lm import SMOKE_LM

__all__ = [
    "Settings",
    "ChebiData",
    "Retrievers",
    "PromptSet",
    "settings_table",
    "load_data",
    "check_metrics",
    "build_retrievers",
    "retrieval_baselines",
    "rerank_contexts",
    "lm_memory",
    "build_prompt_sets",
    "fine_tune",
    "evaluate",
    "findings",
]

MolRetriever = Literal["morgan", "rdkit", "gin"]
#: Test-time ablations of the trained ICMA model, on the ``n_ablation`` subset: contexts in ranked
#: order (``no_reversal``: no sequence reversal), no context at all (``k0``: the bare query, as in
#: direct fine-tuning), or mol2cap contexts from another molecule retriever (when it is among
#: ``mol_retrievers``).
Ablation = Literal["no_reversal", "k0", "morgan_contexts", "rdkit_contexts", "gin_contexts"]


@dataclass(frozen=True)
class Settings(BaseSettings):
    """ICMA's settings; the defaults are the ``default`` profile, sized for a ≤ 45-minute notebook
    on 2 quiet cores in float32 (the slowest machine kind; measured there, with k = 2 prompts of
    ~415 tokens: full fine-tuning ~105-128 tokens/s, LoRA 63 tokens/s on the same examples, so full
    fine-tuning; greedy generation ~2.8 s per ICMA prompt at batch 8 and 128 new tokens, no faster
    at batch 16 or 32). Generation of the five test sets dominates the budget, so ``n_train`` is
    what is left after them.

    ``n_train``: training prompts per direction (None: the whole pool); ``n_test``: LM test
    molecules; ``n_ablation``: the seeded subset of them for the test-time ablations (None: all);
    ``n_retrieval_eval``: test pairs for the retrieval-only and MolT5 evaluation (None: all);
    ``n_retriever_val``: pool molecules that choose the mol2cap retriever (each retrieves from the
    rest of the pool); ``k``: context examples; ``cutoff``: tokens per training example (prompt +
    answer) and per test prompt plus its new tokens: large enough that all ``k`` examples always
    fit (the notebook reports the share); ``random_walk_candidates``: the ranked list the random
    walk walks down (at least ``k``); ``mol2cap_retriever``: a retriever, or ``auto`` for the best
    on the validation queries. ``lm_dtype`` / ``lm_quantization``: how the LM loads for
    fine-tuning (`molkit.models.lm.load_lm`: fp32 or bf16 weights, ``"4bit"`` QLoRA with
    ``lora`` only; ``full``: Galactica-125m in bf16 with LoRA), checked against the device by
    `lm_memory` before any training."""

    seed: int = 0
    dataset: Literal["chebi20", "chebi20-full"] = "chebi20"
    lm_model: str = "smollm2-135m-instruct"
    lm_dtype: str = "fp32"
    lm_quantization: str | None = None
    n_train: int | None = 64
    n_test: int | None = 100
    n_ablation: int | None = 50
    n_retrieval_eval: int | None = None
    n_retriever_val: int = 500
    k: int = 2
    cutoff: int = 3072
    max_new_tokens_mol2cap: int = 128
    max_new_tokens_cap2mol: int = 128
    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 1
    lora: bool = False
    gen_batch_size: int = 8
    mol2cap_retriever: MolRetriever | Literal["auto"] = "auto"
    mol_retrievers: tuple[MolRetriever, ...] = ("morgan", "rdkit", "gin")
    random_walk_p: float = 0.3
    random_walk_candidates: int = 4
    gin_layers: int = 3
    gin_hidden: int = 64
    gin_epochs: int = 10
    test_time_ablations: tuple[Ablation, ...] = ("no_reversal", "k0")
    no_tuning_control: bool = True

    PROFILES = {
        "smoke": {
            "lm_model": SMOKE_LM,
            "n_train": 8,
            "n_test": 6,
            "n_ablation": 4,
            "n_retrieval_eval": 200,
            "n_retriever_val": 100,
            "cutoff": 1024,
            "max_new_tokens_mol2cap": 16,
            "max_new_tokens_cap2mol": 16,
            "lr": 1e-3,
            "batch_size": 4,
            "gen_batch_size": 4,
            "mol_retrievers": ("morgan", "gin"),
            "gin_layers": 2,
            "gin_hidden": 32,
            "gin_epochs": 1,
        },
        "default": {},
        "full": {
            "dataset": "chebi20-full",
            "lm_model": "facebook/galactica-125m",
            "lm_dtype": "bf16",
            "n_train": None,
            "n_test": None,
            "n_ablation": 500,
            "n_retriever_val": 2000,
            "cutoff": 2048,  # Galactica-125m's context length
            "max_new_tokens_mol2cap": 256,
            "max_new_tokens_cap2mol": 256,
            "lr": 2e-5,
            "batch_size": 8,
            "grad_accum": 4,
            "lora": True,
            "gen_batch_size": 32,
            "random_walk_candidates": 6,
            "gin_layers": 5,
            "gin_hidden": 300,
            "gin_epochs": 50,
            "test_time_ablations": ("no_reversal", "k0", "morgan_contexts", "rdkit_contexts"),
        },
    }

    def _checked(self) -> Settings:
        """The base class's type checks, then: the mol2cap retriever is one that gets built (or
        ``auto``), ``k`` >= 1, ``lm_dtype`` / ``lm_quantization`` known, 4-bit only with LoRA."""
        from molkit.models.lm import check_lm_dtype, check_lm_quantization

        super()._checked()
        check_lm_dtype(self.lm_dtype)
        if check_lm_quantization(self.lm_quantization) and not self.lora:
            raise ValueError(
                f"lm_quantization={self.lm_quantization!r} trains through LoRA only: set "
                "lora=True, or lm_quantization=None"
            )
        if self.mol2cap_retriever not in (*self.mol_retrievers, "auto"):
            raise ValueError(
                f"mol2cap_retriever {self.mol2cap_retriever!r} is not among mol_retrievers "
                f"{self.mol_retrievers}: add it there, or choose 'auto'"
            )
        if self.k < 1:
            raise ValueError(f"k must be at least 1, not {self.k} (k = 0 is a test-time ablation)")
        return self

    def max_new_tokens(self, direction: str) -> int:
        """``max_new_tokens_mol2cap`` or ``max_new_tokens_cap2mol``."""
        return getattr(self, f"max_new_tokens_{direction}")


def settings_table(settings: Settings) -> pd.DataFrame:
    """This run's settings beside each profile's (one row per setting)."""
    columns = {"this run": settings.as_dict()}
    columns |= {p: Settings.for_profile(p).as_dict() for p in PROFILE_NAMES}
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})


# --------------------------------------------------------------------------- 1. data


@dataclass
class ChebiData:
    """The retrieval / training ``pool``, the ``test`` split and the seeded subsamples:
    ``train_idx`` (pool rows that become training queries), ``test_lm`` (the LM test molecules),
    ``ablation_idx`` (rows of ``test_lm`` for the test-time ablations), ``test_retrieval`` (the
    retrieval-only and MolT5 evaluation pairs), ``val_idx`` (pool rows that choose the mol2cap
    retriever)."""

    pool: pd.DataFrame
    test: pd.DataFrame
    train_idx: np.ndarray
    test_lm: pd.DataFrame
    test_retrieval: pd.DataFrame
    ablation_idx: np.ndarray
    val_idx: np.ndarray
    note: str

    @property
    def train_queries(self) -> pd.DataFrame:
        return self.pool.iloc[self.train_idx].reset_index(drop=True)

    @cached_property
    def exclusions(self) -> list[np.ndarray]:
        """Per pool entry, the pool indices of the same molecule (`same_molecule_exclusions` over
        the InChIKeys): what a pool query must never retrieve."""
        return same_molecule_exclusions(self.pool["key"].tolist())

    @property
    def test_ablation(self) -> pd.DataFrame:
        return self.test_lm.iloc[self.ablation_idx].reset_index(drop=True)

    @property
    def retrieval_split(self) -> str:
        return f"test ({len(self.test_retrieval)})"

    @property
    def lm_split(self) -> str:
        return f"test subset ({len(self.test_lm)})"

    @property
    def ablation_split(self) -> str:
        return f"test ablation subset ({len(self.ablation_idx)})"


def load_data(settings: Settings) -> Results:
    """ChEBI-20's pool and test split (`load_chebi20`, de-duplicated by InChIKey) and the seeded
    subsamples, drawn in this order from ``np.random.default_rng(settings.seed)``: training
    queries (``n_train`` of the pool), LM test molecules (``n_test``), retrieval-evaluation pairs
    (``n_retrieval_eval``), the ablation subset (``n_ablation`` of the LM test molecules), the
    retriever-validation queries (``n_retriever_val`` of the pool). Artefacts: ``data``
    (`ChebiData`), ``summary`` (text)."""
    from molkit.data import subsample
    from molkit.eval.text import meteor_available

    pool, test, note = load_chebi20(settings.dataset)
    rng = np.random.default_rng(settings.seed)
    train_idx = subsample(len(pool), settings.n_train, rng=rng)
    lm_idx = subsample(len(test), settings.n_test, rng=rng)
    retrieval_idx = subsample(len(test), settings.n_retrieval_eval, rng=rng)
    ablation_idx = np.sort(subsample(len(lm_idx), settings.n_ablation, rng=rng))
    val_idx = subsample(len(pool), min(settings.n_retriever_val, len(pool)), rng=rng)
    data = ChebiData(
        pool=pool,
        test=test,
        train_idx=train_idx,
        test_lm=test.iloc[lm_idx].reset_index(drop=True),
        test_retrieval=test.iloc[retrieval_idx].reset_index(drop=True),
        ablation_idx=ablation_idx,
        val_idx=val_idx,
        note=note,
    )
    meteor = "available (WordNet found)" if meteor_available() else "UNAVAILABLE (no WordNet): NaN"
    summary = (
        f"{note}\nLM training prompts per direction: {len(train_idx)}; LM test molecules: "
        f"{len(lm_idx)} (seeded), of which {len(ablation_idx)} for the test-time ablations; "
        f"retrieval / MolT5 evaluation: {len(retrieval_idx)} test pairs; mol2cap retriever "
        f"chosen on {len(val_idx)} pool molecules\nMETEOR: {meteor}"
    )
    return Results(artefacts={"data": data, "summary": summary})


# --------------------------------------------------------------------------- 2. metric check


def check_metrics(settings: Settings, data: ChebiData) -> Results:
    """MolT5-base's published outputs scored by our metric code on the retrieval-evaluation pairs
    (rows, both directions); artefact ``check``: direction -> our numbers beside the MolT5 paper's
    MolT5-base row (whole test split) and their difference. The tests check the same code on all
    3,300 outputs of each direction (``tests/test_text_metrics.py``)."""
    res, check = Results(), {}
    for direction in DIRECTIONS:
        preds = molt5_predictions(direction, data.test_retrieval)
        scores = evaluate_direction(direction, preds, references(direction, data.test_retrieval))
        _add_metric_rows(
            res, settings, direction, MOLT5, scores, data.retrieval_split
        )  # fmt: skip
        paper = paper_table(direction).loc["MolT5-base (MolT5 paper)"].dropna()
        frame = pd.DataFrame({"ours": pd.Series(scores), "MolT5 paper": paper})
        frame["difference"] = frame["ours"] - frame["MolT5 paper"]
        check[direction] = frame
    res.artefacts["check"] = check
    return res


def _add_metric_rows(
    res: Results,
    settings: Settings,
    direction: str,
    method: str,
    metrics: dict[str, float],
    split: str,
) -> None:
    for metric, value in metrics.items():
        res.add_row(f"chebi20-{direction}", method, metric, value, seed=settings.seed, split=split)


# --------------------------------------------------------------------------- 3. retrievers


@dataclass
class Retrievers:
    """BM25 over the pool's captions, the molecule retrievers by name (``random`` among them: the
    floor), the GIN's attribute-masking losses per epoch (empty without a GIN) and ``mol2cap``:
    the molecule retriever the mol2cap contexts come from (set by `retrieval_baselines` when the
    settings say ``auto``)."""

    bm25: BM25Retriever
    molecule: dict[str, FingerprintRetriever | GraphRetriever | RandomRetriever]
    gin_losses: list[float]
    mol2cap: str | None = None

    def for_direction(self, direction: str):
        """The retriever of a direction: BM25 for cap2mol, the chosen one for mol2cap."""
        if direction == "cap2mol":
            return self.bm25
        if self.mol2cap is None:
            raise RuntimeError("no mol2cap retriever chosen yet: run retrieval_baselines first")
        return self.molecule[self.mol2cap]


def build_retrievers(settings: Settings, data: ChebiData) -> Results:
    """BM25 over the pool's captions, each of ``mol_retrievers`` over its molecules (the GIN
    pre-trained on the pool's graphs by attribute masking) and a random retriever, then BM25's
    throughput with the retrieval-evaluation captions as queries (a row). Artefacts:
    ``retrievers``, ``timings`` (seconds per index), ``bm25_qps``, ``summary``."""
    from molkit.chem import graphs_from_smiles

    pool = data.pool
    timings = {}
    start = time.perf_counter()
    bm25 = BM25Retriever(pool["text"].tolist())
    timings["BM25 index"] = time.perf_counter() - start
    molecule, gin_losses = {}, []
    for name in settings.mol_retrievers:
        start = time.perf_counter()
        if name == "gin":
            graphs = graphs_from_smiles(pool["smiles"].tolist())
            gin, gin_losses = pretrain_gin(
                graphs,
                layers=settings.gin_layers,
                hidden=settings.gin_hidden,
                epochs=settings.gin_epochs,
                seed=settings.seed,
            )
            molecule[name] = GraphRetriever(graphs, gin)
        else:
            molecule[name] = FingerprintRetriever(pool["smiles"].tolist(), name)
        timings[f"{name} index"] = time.perf_counter() - start
    molecule["random"] = RandomRetriever(len(pool), seed=settings.seed)
    start = time.perf_counter()
    search("cap2mol", bm25, data.test_retrieval, 1)
    qps = len(data.test_retrieval) / (time.perf_counter() - start)
    res = Results()
    res.add_row(
        "chebi20-cap2mol",
        "BM25 retrieval",
        "queries_per_second",
        qps,
        seed=settings.seed,
        split=data.retrieval_split,
        note="tokenisation + retrieval, top-1, caption queries, this machine",
    )
    chosen = None if settings.mol2cap_retriever == "auto" else settings.mol2cap_retriever
    gin_line = (
        f"GIN attribute-masking loss per epoch: {np.round(gin_losses, 3)}\n" if gin_losses else ""
    )
    res.artefacts.update(
        retrievers=Retrievers(bm25, molecule, list(gin_losses), chosen),
        timings=pd.Series(timings).to_frame("seconds"),
        bm25_qps=qps,
        summary=f"{gin_line}BM25: {qps:,.0f} queries/s over a pool of {len(pool)} captions",
    )
    return res


# --------------------------------------------------------------------------- 4. retrieval only


def retrieval_baselines(settings: Settings, data: ChebiData, retrievers: Retrievers) -> Results:
    """Retrieval quality, then retrieval only, the baseline every LM must beat.

    Validation (pool only): each of ``n_retriever_val`` pool molecules retrieves from the rest of
    the pool (never an entry of the same molecule) and copies its top-1 neighbour's output; the
    molecule retriever with the best mean per-caption ROUGE-L is chosen for the mol2cap contexts
    when the settings say ``auto`` (sets ``retrievers.mol2cap``); claim rows: each retriever
    against random pool entries. Test: each retriever copies its nearest pool molecule's caption
    (mol2cap), BM25 the best-matching caption's SMILES (cap2mol), on the retrieval-evaluation
    pairs, with the mean top-1 score. Artefacts: ``validation`` (retriever -> caption metrics,
    ``chosen``), ``table`` (test), ``chosen``, ``neighbours`` (one LM test molecule's top-k per
    molecule retriever, for the figure), ``summary``."""
    from molkit.methods.icma.claims import retriever_claims

    res, table, validation, val_scores = Results(), [], {}, {}
    queries = data.pool.iloc[data.val_idx].reset_index(drop=True)
    exclude = [data.exclusions[i] for i in data.val_idx]
    truth = references("mol2cap", queries)
    for name, retriever in retrievers.molecule.items():
        preds = retrieval_only(
            "mol2cap", search("mol2cap", retriever, queries, 1, exclude), data.pool
        )
        validation[name] = evaluate_direction("mol2cap", preds, truth)
        val_scores[name] = per_item_scores("mol2cap", preds, truth)
        validation[name]["rougeL_per_item"] = float(val_scores[name].mean())
    learnt = {n: v["rougeL_per_item"] for n, v in validation.items() if n != "random"}
    chosen = retrievers.mol2cap or max(learnt, key=learnt.get)
    retrievers.mol2cap = chosen
    validation = pd.DataFrame(validation).T
    validation["chosen"] = validation.index == chosen
    scale = f"{len(queries)} pool molecules as queries"
    res.claims = retriever_claims(val_scores, seed=settings.seed, scale=scale)
    for name, retriever in {**retrievers.molecule, "bm25": retrievers.bm25}.items():
        direction = "cap2mol" if name == "bm25" else "mol2cap"
        nb = search(direction, retriever, data.test_retrieval, 1)
        preds = retrieval_only(direction, nb, data.pool)
        metrics = evaluate_direction(direction, preds, references(direction, data.test_retrieval))
        metrics["top1_score"] = float(np.mean(nb.scores[:, 0]))
        _add_metric_rows(
            res, settings, direction, f"retrieval only ({name})", metrics, data.retrieval_split
        )
        table.append({"direction": direction, "retriever": name, **metrics})
    for name, row in validation.iterrows():
        res.add_row(
            "chebi20-mol2cap", f"retrieval only ({name})", "rougeL_per_item",
            row["rougeL_per_item"], seed=settings.seed, split=f"pool validation ({len(queries)})",
        )  # fmt: skip
    query = data.test_lm.iloc[[0]]
    neighbours = {}
    for name, retriever in retrievers.molecule.items():
        nb = search("mol2cap", retriever, query, settings.k)
        neighbours[name] = [
            (data.pool["smiles_raw"][j], data.pool["text"][j], float(score))
            for j, score in zip(nb.indices[0], nb.scores[0], strict=True)
        ]
    best_line = ", ".join(f"{n} {v:.3f}" for n, v in validation["rougeL_per_item"].items())
    res.artefacts.update(
        validation=validation,
        table=pd.DataFrame(table).set_index(["direction", "retriever"]),
        chosen=chosen,
        neighbours={
            "smiles": query["smiles_raw"].iloc[0],
            "text": query["text"].iloc[0],
            "neighbours": neighbours,
        },  # fmt: skip
        summary=(
            f"mol2cap retrieval on {len(queries)} pool molecules (mean per-caption ROUGE-L of the "
            f"top-1 neighbour's caption): {best_line}; contexts from: {chosen}"
            + (" (chosen on validation)" if settings.mol2cap_retriever == "auto" else " (set)")
        ),
    )
    return res


# --------------------------------------------------------------------------- 5. re-ranking


def rerank_contexts(settings: Settings, data: ChebiData, retrievers: Retrievers) -> Results:
    """Context examples per direction, in prompt order: ``train`` (top ``random_walk_candidates``
    neighbours of each training query, never an entry of its own molecule, random walk from
    ``np.random.default_rng(settings.seed)``, then reversal), ``test`` (top-``k``, reversed) and,
    on the ablation subset, the ``test_time_ablations``: ``no reversal`` (ranked order, only for
    k > 1), ``k = 0`` (no context: ``None``), ``<name> contexts`` (mol2cap contexts from another
    molecule retriever). Artefacts: ``contexts`` (direction -> name -> (n, k) pool indices or
    None), ``off_top`` (share of training prompts whose context the walk changed), ``summary``."""
    k, m = settings.k, max(settings.k, settings.random_walk_candidates)
    train_queries = data.train_queries
    train_exclude = [data.exclusions[i] for i in data.train_idx]
    walk_rng = np.random.default_rng(settings.seed)
    contexts, off_top = {}, {}
    for direction in DIRECTIONS:
        retriever = retrievers.for_direction(direction)
        train_nb = search(direction, retriever, train_queries, m, train_exclude)
        pairs = zip(train_nb.indices.tolist(), train_exclude, strict=True)
        if any(set(row) & set(ex.tolist()) for row, ex in pairs):
            raise RuntimeError(f"{direction}: a training query retrieved its own molecule")
        test_nb = search(direction, retriever, data.test_lm, m)
        sub = Neighbours(test_nb.indices[data.ablation_idx], test_nb.scores[data.ablation_idx])
        contexts[direction] = {
            "train": rerank(train_nb, k, reverse=True, walk_p=settings.random_walk_p, rng=walk_rng),
            "test": rerank(test_nb, k, reverse=True),
        }
        for ablation in settings.test_time_ablations:
            other = ablation.removesuffix("_contexts")
            if ablation == "no_reversal" and k > 1:  # one example has nothing to reverse
                contexts[direction]["no reversal"] = rerank(sub, k, reverse=False)
            elif ablation == "k0":
                contexts[direction]["k = 0"] = None
            elif direction == "mol2cap" and other in retrievers.molecule:
                alt = search(direction, retrievers.molecule[other], data.test_ablation, k)
                contexts[direction][f"{other} contexts"] = rerank(alt, k, reverse=True)
        walked = zip(
            contexts[direction]["train"].tolist(), train_nb.indices[:, :k].tolist(), strict=True
        )
        off_top[direction] = float(np.mean([set(c) != set(t) for c, t in walked]))
    summary = "\n".join(
        f"{d}: random walk gave {share:.0%} of the training prompts a context other than "
        f"the top-{k}"
        for d, share in off_top.items()
    )
    return Results(artefacts={"contexts": contexts, "off_top": off_top, "summary": summary})


# --------------------------------------------------------------------------- 6. prompts


@dataclass
class PromptSet:
    """One direction's prompts: ICMA and direct training prompts for the same queries, their
    ``answers``, the ICMA ``test`` prompts, the ``ablations`` (name -> prompts for the ablation
    subset), the direct test prompts, and the outputs of each ICMA test prompt's context examples
    (for the failure modes)."""

    icma_train: list[str]
    direct_train: list[str]
    answers: list[str]
    test: list[str]
    ablations: dict[str, list[str]]
    direct_test: list[str]
    test_context_outputs: list[list[str]]


def lm_memory(
    settings: Settings,
    lm_path: str,
    seq_len: int,
    device=None,
    free_bytes: int | None = None,
    local_files_only: bool = False,
) -> str:
    """The memory line printed before fine-tuning (`molkit.models.lm.memory.lm_memory_line`): the LM
    as `fine_tune_and_generate` trains it (LoRA r 32 on every linear layer with ``lora``, else
    full fine-tuning), ``batch_size`` examples of ``seq_len`` tokens (the longest training
    example: a batch pads to its longest), ``lm_dtype`` / ``lm_quantization``. Raises
    `molkit.models.lm.memory.InsufficientMemoryError` naming the settings to change when it does not
    fit ``device`` (``free_bytes``: instead of its free memory); a line saying so when the
    estimate is unavailable (``local_files_only``: never ask the Hugging Face hub)."""
    from molkit.models.lm.memory import lm_memory_line

    hint = "lm_dtype='bf16' with lora=True, batch_size (grad_accum keeps the batch) or cutoff"
    return lm_memory_line(
        lm_path, settings.lm_dtype, settings.lm_quantization, hint, device, free_bytes,
        local_files_only,
        lora_r=32 if settings.lora else None, lora_targets="all-linear",
        batch_size=settings.batch_size, seq_len=int(seq_len),
    )  # fmt: skip


def build_prompt_sets(
    settings: Settings, data: ChebiData, contexts: dict, workdir: str | os.PathLike
) -> Results:
    """Resolve the LM (`molkit.models.lm.resolve_lm`: the smoke LM is a tiny random Llama
    with a 1,024-token BPE vocabulary trained on the pool's captions and SMILES, saved under
    ``workdir``) and build each direction's prompts with its tokenizer. A training prompt gets the
    cut-off minus its answer's tokens, a test prompt the cut-off minus ``max_new_tokens``.
    Artefacts: ``lm_path``, ``prompts`` (direction -> `PromptSet`), ``fit`` (share of prompts that
    kept all k examples, training and test: 1.0 when the cut-off is large enough), ``lengths``
    (set -> prompt + answer tokens, for the figure), ``summary``, ``example`` (one ICMA training
    prompt, answer after ``||``), ``memory`` (`lm_memory` for the longest training example;
    raises `molkit.models.lm.memory.InsufficientMemoryError` before any training when the setting
    does not fit)."""
    from molkit.models.lm import load_lm, resolve_lm

    pool, train_queries = data.pool, data.train_queries
    corpus = pool["text"].tolist() + pool["smiles_raw"].tolist()
    lm_path = resolve_lm(settings.lm_model, corpus, workdir, vocab_size=1024)
    _, tokenizer = load_lm(lm_path, device="cpu")

    def n_tokens(texts):
        return np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])

    prompts, fit, lengths, lines = {}, {}, {}, []
    for direction in DIRECTIONS:
        ctx = contexts[direction]
        answers = [" " + a for a in references(direction, train_queries)]
        answer_tokens = n_tokens(answers)
        budget = settings.cutoff - answer_tokens - 1
        icma_train, answers, train_kept = build_prompts(
            direction, train_queries, pool, ctx["train"], tokenizer, budget
        )
        direct_train = build_prompts(direction, train_queries, pool, None, tokenizer, budget)[0]
        test_budget = settings.cutoff - settings.max_new_tokens(direction)
        test, _, test_kept = build_prompts(
            direction, data.test_lm, pool, ctx["test"], tokenizer, test_budget
        )
        ablations = {
            name: build_prompts(direction, data.test_ablation, pool, c, tokenizer, test_budget)[0]
            for name, c in ctx.items()
            if name not in ("train", "test")
        }
        direct_test = build_prompts(direction, data.test_lm, pool, None, tokenizer, test_budget)[0]
        outputs = references(direction, pool)
        test_context = [[outputs[j] for j in row] for row in ctx["test"]]
        prompts[direction] = PromptSet(
            icma_train, direct_train, answers, test, ablations, direct_test, test_context
        )
        truth_tokens = n_tokens([" " + a for a in references(direction, data.test_lm)])
        lengths[f"{direction} ICMA train"] = n_tokens(icma_train) + answer_tokens + 1
        lengths[f"{direction} ICMA test"] = n_tokens(test) + truth_tokens + 1
        lengths[f"{direction} direct train"] = n_tokens(direct_train) + answer_tokens + 1
        fit[direction] = {
            "train": float(np.mean(train_kept == settings.k)),
            "test": float(np.mean(test_kept == settings.k)),
        }
        lines.append(
            f"{direction}: share of prompts with all {settings.k} context examples within the "
            f"cut-off {settings.cutoff}: {fit[direction]['train']:.2f} of training prompts, "
            f"{fit[direction]['test']:.2f} of test prompts; longest ICMA training example "
            f"{lengths[f'{direction} ICMA train'].max()} tokens, mean "
            f"{lengths[f'{direction} ICMA train'].mean():.0f} (direct: "
            f"{lengths[f'{direction} direct train'].mean():.0f})"
        )
    example = prompts["mol2cap"].icma_train[0] + " ||" + prompts["mol2cap"].answers[0]
    longest = max(int(v.max()) for k, v in lengths.items() if k.endswith("train") and len(v))
    memory = lm_memory(settings, lm_path, longest)
    return Results(
        artefacts={
            "lm_path": lm_path,
            "prompts": prompts,
            "fit": fit,
            "lengths": lengths,
            "summary": "\n".join(lines),
            "example": example,
            "memory": memory,
        }
    )


# --------------------------------------------------------------------------- 7. fine-tuning


def fine_tune(settings: Settings, prompts: dict[str, PromptSet], lm_path: str) -> Results:
    """Per direction, a fresh copy of the LM fine-tuned on the ICMA prompts and another on the
    direct prompts of the same queries (same seed, same settings; trained weights cached, so a
    re-run replays them); both generate greedily for the same test molecules, the ICMA model also
    for the test-time ablations; with ``no_tuning_control``, the pre-trained LM answers the same
    ICMA test prompts (in-context prompting). Rows: training and generation throughput. Artefacts:
    ``outputs`` (direction -> method -> predictions), ``ablation_outputs`` (direction -> ablation
    -> predictions on the ablation subset), ``run_stats``, ``generation``."""
    from molkit.models.lm import TrainConfig

    train = TrainConfig(
        epochs=settings.epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        grad_accum=settings.grad_accum,
        seed=settings.seed,
    )
    common = {
        "train": train,
        "cutoff": settings.cutoff,
        "gen_batch_size": settings.gen_batch_size,
        "lora": settings.lora,
        "lm_dtype": settings.lm_dtype,
        "lm_quantization": settings.lm_quantization,
    }
    res, outputs, ablation_outputs, stats = Results(), {}, {}, []
    for direction in DIRECTIONS:
        p = prompts[direction]
        max_new = settings.max_new_tokens(direction)
        runs = {}
        runs[ICMA], ablated = fine_tune_and_generate(
            lm_path, p.icma_train, p.answers, p.test, max_new_tokens=max_new,
            extra_test_prompts=p.ablations, desc=f"ICMA {direction}", **common,
        )  # fmt: skip
        runs[DIRECT], _ = fine_tune_and_generate(
            lm_path, p.direct_train, p.answers, p.direct_test, max_new_tokens=max_new,
            desc=f"direct {direction}", **common,
        )  # fmt: skip
        if settings.no_tuning_control:
            runs[NO_TUNING], _ = fine_tune_and_generate(
                lm_path, None, None, p.test, max_new_tokens=max_new,
                desc=f"no tuning {direction}", **common,
            )  # fmt: skip
        outputs[direction] = {method: run.predictions for method, run in runs.items()}
        ablation_outputs[direction] = {f"ICMA, test-time {n}": o for n, o in ablated.items()}
        split = f"test subset ({len(p.test)})"
        for method, run in runs.items():
            report = run.train
            stats.append(
                {
                    "direction": direction,
                    "method": method,
                    "train examples": len(p.answers) if report else 0,
                    "train tokens": report.tokens if report else 0,
                    "train s": report.seconds if report else 0.0,
                    "train tokens/s": report.tokens_per_second if report else float("nan"),
                    "final loss": report.losses[-1] if report else float("nan"),
                    "replayed": bool(report and report.replayed),
                    "generation s": run.generation_seconds,
                    "generated tokens/s": run.generation_tokens_per_second,
                }
            )
            dataset = f"chebi20-{direction}"
            if report is not None:  # a replayed run reports the throughput of the run that trained
                res.add_row(
                    dataset,
                    method,
                    "train_tokens_per_second",
                    report.tokens_per_second,
                    seed=settings.seed,
                    split="train",
                )
            res.add_row(
                dataset, method, "generation_tokens_per_second", run.generation_tokens_per_second,
                seed=settings.seed, split=split,
            )  # fmt: skip
    generation = (
        f"greedy generation, batch {settings.gen_batch_size}, at most "
        f"{settings.max_new_tokens_mol2cap} (mol2cap) / {settings.max_new_tokens_cap2mol} "
        "(cap2mol) new tokens, stopping at the end of the line"
    )
    res.artefacts.update(
        outputs=outputs,
        ablation_outputs=ablation_outputs,
        run_stats=pd.DataFrame(stats),
        generation=generation,
    )
    return res


# --------------------------------------------------------------------------- 8. evaluation

#: The summary table's columns per direction (the paper's headline metrics; cap2mol FTS both over
#: valid molecules, MolT5's convention, and with an invalid molecule as 0).
HEADLINE = {
    "mol2cap": ["bleu2", "bleu4", "rougeL", "meteor"],
    "cap2mol": ["exact_match", "morgan_fts", "morgan_fts_all", "validity"],
}


def evaluate(
    settings: Settings,
    data: ChebiData,
    retrievers: Retrievers,
    outputs: dict[str, dict[str, list[str]]],
    ablation_outputs: dict[str, dict[str, list[str]]] | None = None,
    prompts: dict[str, PromptSet] | None = None,
) -> Results:
    """Every candidate on the same LM test molecules: the LM ``outputs`` (ICMA, in-context
    prompting without tuning, direct fine-tuning), retrieval only with the direction's retriever,
    MolT5-base's published outputs (rows); the test-time ablations with ICMA on their subset
    (rows). Claims (`molkit.methods.icma.claims.paper_claims`), each a paired bootstrap over the
    test molecules of the per-item score (`per_item_scores`). Failure modes
    (`molkit.methods.icma.method.failure_modes`) per LM row when ``prompts`` are given. Artefacts:
    ``tables`` (direction -> methods x metrics), ``ablation_tables``, ``predictions`` (direction ->
    frame, truth first), ``scores``, ``failures`` (direction -> method x mode shares),
    ``paper_comparison``, ``summary``, ``examples`` (direction -> a few test items with the truth,
    the ICMA prediction, its closest context output and its failure modes), ``findings``."""
    res = Results()
    tables, ablation_tables, predictions, scores, ab_scores = {}, {}, {}, {}, {}
    comparison, failures, examples = {}, {}, {}
    for direction in DIRECTIONS:
        truth = references(direction, data.test_lm)
        retriever = retrievers.for_direction(direction)
        nn = retrieval_only(direction, search(direction, retriever, data.test_lm, 1), data.pool)
        name = "bm25" if direction == "cap2mol" else retrievers.mol2cap
        candidates = {
            **outputs[direction],
            f"retrieval only ({name})": nn,
            MOLT5: molt5_predictions(direction, data.test_lm),
        }
        rows = {}
        for method, preds in candidates.items():
            rows[method] = evaluate_direction(direction, preds, truth)
            _add_metric_rows(res, settings, direction, method, rows[method], data.lm_split)
        tables[direction] = pd.DataFrame(rows).T
        predictions[direction] = pd.DataFrame({"truth": truth, **candidates})
        scores[direction] = {m: per_item_scores(direction, p, truth) for m, p in candidates.items()}
        sub = data.ablation_idx
        sub_truth = [truth[i] for i in sub]
        sub_candidates = {
            ICMA: [outputs[direction][ICMA][i] for i in sub],
            **(ablation_outputs or {}).get(direction, {}),
        }
        ab_rows = {}
        for method, preds in sub_candidates.items():
            ab_rows[method] = evaluate_direction(direction, preds, sub_truth)
            if method != ICMA:
                _add_metric_rows(res, settings, direction, method, ab_rows[method],
                                 data.ablation_split)  # fmt: skip
        ablation_tables[direction] = pd.DataFrame(ab_rows).T
        ab_scores[direction] = {
            m: per_item_scores(direction, p, sub_truth) for m, p in sub_candidates.items()
        }
        comparison[direction] = _paper_comparison(settings, data, tables[direction], direction)
        if prompts is not None:
            context = prompts[direction].test_context_outputs
            modes = {
                m: failure_modes(direction, outputs[direction][m], context)
                for m in outputs[direction]
            }
            failures[direction] = pd.DataFrame({m: f.mean() for m, f in modes.items()}).T
            icma_modes = modes[ICMA]
            examples[direction] = pd.DataFrame(
                {
                    "input": references(
                        "cap2mol" if direction == "mol2cap" else "mol2cap", data.test_lm
                    ),  # fmt: skip
                    "truth": truth,
                    ICMA: outputs[direction][ICMA],
                    "last (most similar) context output": [c[-1] for c in context],
                    "ICMA score": scores[direction][ICMA],
                }
            ).join(icma_modes)
    scale = f"{len(data.train_idx)} training prompts per direction, LM {settings.lm_model}"
    res.claims = paper_claims(scores, ab_scores, seed=settings.seed, scale=scale)
    summary = pd.concat(
        {d: tables[d][[c for c in cols if c in tables[d]]] for d, cols in HEADLINE.items()}, axis=1
    )
    res.artefacts.update(
        tables=tables,
        ablation_tables=ablation_tables,
        predictions=predictions,
        scores=scores,
        ablation_scores=ab_scores,
        failures=failures,
        paper_comparison=comparison,
        summary=summary,
        examples=examples,
        findings=findings(res.claims),
    )
    return res


def findings(claims: list) -> str:
    """One line per claim row: the verdict in words, the mean difference and its interval, the
    number of test items. The notebook's Discussion prints this instead of typing any verdict."""
    words = {"holds": "HOLDS", "contradicted": "is CONTRADICTED", "undecided": "is UNDECIDED"}
    return "\n".join(
        f"- {c.claim}: {words.get(c.verdict, c.verdict)} ({c.ours:+.3f} "
        f"[{c.low:+.3f}, {c.high:+.3f}], n = {c.n})"
        for c in claims
    )


def _paper_comparison(
    settings: Settings, data: ChebiData, table: pd.DataFrame, direction: str
) -> pd.DataFrame:
    """The published rows for a direction above ours (same metric columns)."""
    paper = paper_table(direction)
    label = f" — ours, {settings.lm_model}, {len(data.train_idx)} train, {len(data.test_lm)} test"
    ours = table[[c for c in paper.columns if c in table]].rename(
        index=lambda method: f"{method}{label}"
    )
    return pd.concat([paper, ours])
