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
from typing import Literal

import numpy as np
import pandas as pd

from molkit.methods.experiment import PROFILE_NAMES, Results
from molkit.methods.experiment import Settings as BaseSettings
from molkit.methods.icma.claims import paper_claims
from molkit.methods.icma.method import (
    DIRECTIONS,
    BM25Retriever,
    FingerprintRetriever,
    GraphRetriever,
    build_prompts,
    evaluate_direction,
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
from molkit.models.lm_training import SMOKE_LM

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
    "build_prompt_sets",
    "fine_tune",
    "evaluate",
]

MolRetriever = Literal["morgan", "rdkit", "gin"]
#: Test-time ablations of the trained ICMA model: contexts in ranked order (no sequence reversal),
#: or mol2cap contexts from another molecule retriever (when it is among ``mol_retrievers``).
Ablation = Literal["no_reversal", "morgan_contexts", "rdkit_contexts", "gin_contexts"]


@dataclass(frozen=True)
class Settings(BaseSettings):
    """ICMA's settings; the defaults are the ``default`` profile, sized for a shared 2-core AVX2 CPU
    without bf16, where full fine-tuning of SmolLM2-135M measured ~15-25 tokens/s (both
    directions, ICMA and direct fine-tuning at the same number of training examples); on a CPU with
    bf16/AMX (~195 tokens/s) raise ``n_train`` tenfold.

    ``n_train``: training prompts per direction (None: the whole pool); ``n_test``: LM test
    molecules; ``n_retrieval_eval``: test pairs for the retrieval-only and MolT5 evaluation (None:
    all); ``k``: context examples; ``cutoff``: tokens per training example (prompt + answer);
    ``random_walk_candidates``: the ranked list the random walk walks down (at least ``k``)."""

    seed: int = 0
    dataset: Literal["chebi20", "chebi20-full"] = "chebi20"
    lm_model: str = "smollm2-135m-instruct"
    n_train: int | None = 24
    n_test: int | None = 16
    n_retrieval_eval: int | None = None
    k: int = 1
    cutoff: int = 384
    max_new_tokens_mol2cap: int = 128
    max_new_tokens_cap2mol: int = 96
    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 1
    lora: bool = False
    gen_batch_size: int = 8
    mol2cap_retriever: MolRetriever = "morgan"
    mol_retrievers: tuple[MolRetriever, ...] = ("morgan", "rdkit", "gin")
    random_walk_p: float = 0.3
    random_walk_candidates: int = 4
    gin_layers: int = 3
    gin_hidden: int = 64
    gin_epochs: int = 2
    test_time_ablations: tuple[Ablation, ...] = ()

    PROFILES = {
        "smoke": {
            "lm_model": SMOKE_LM,
            "n_train": 8,
            "n_test": 4,
            "n_retrieval_eval": 200,
            "k": 2,
            "cutoff": 256,
            "max_new_tokens_mol2cap": 16,
            "max_new_tokens_cap2mol": 16,
            "lr": 1e-3,
            "batch_size": 4,
            "gen_batch_size": 4,
            "mol2cap_retriever": "gin",
            "mol_retrievers": ("morgan", "gin"),
            "gin_layers": 2,
            "gin_hidden": 32,
            "gin_epochs": 1,
            "test_time_ablations": ("no_reversal",),
        },
        "default": {},
        "full": {
            "dataset": "chebi20-full",
            "lm_model": "facebook/galactica-125m",
            "n_train": None,
            "n_test": None,
            "k": 2,
            "cutoff": 1024,
            "max_new_tokens_mol2cap": 256,
            "max_new_tokens_cap2mol": 256,
            "lr": 2e-5,
            "batch_size": 8,
            "grad_accum": 4,
            "lora": True,
            "gen_batch_size": 32,
            "mol2cap_retriever": "gin",
            "random_walk_candidates": 6,
            "gin_layers": 5,
            "gin_hidden": 300,
            "gin_epochs": 50,
            "test_time_ablations": ("no_reversal", "morgan_contexts", "rdkit_contexts"),
        },
    }

    def _checked(self) -> Settings:
        """The base class's type checks, then: the mol2cap retriever is one that gets built, and
        ``k`` >= 1."""
        super()._checked()
        if self.mol2cap_retriever not in self.mol_retrievers:
            raise ValueError(
                f"mol2cap_retriever {self.mol2cap_retriever!r} is not among mol_retrievers "
                f"{self.mol_retrievers}: add it there"
            )
        if self.k < 1:
            raise ValueError(f"k must be at least 1, not {self.k}")
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
    ``test_retrieval`` (the retrieval-only and MolT5 evaluation pairs)."""

    pool: pd.DataFrame
    test: pd.DataFrame
    train_idx: np.ndarray
    test_lm: pd.DataFrame
    test_retrieval: pd.DataFrame
    note: str

    @property
    def train_queries(self) -> pd.DataFrame:
        return self.pool.iloc[self.train_idx].reset_index(drop=True)

    @property
    def retrieval_split(self) -> str:
        return f"test ({len(self.test_retrieval)})"

    @property
    def lm_split(self) -> str:
        return f"test subset ({len(self.test_lm)})"


def load_data(settings: Settings) -> Results:
    """ChEBI-20's pool and test split (`load_chebi20`) and three seeded subsamples, drawn in this
    order from ``np.random.default_rng(settings.seed)``: training queries (``n_train`` of the pool),
    LM test molecules (``n_test``), retrieval-evaluation pairs (``n_retrieval_eval``). Artefacts:
    ``data`` (`ChebiData`), ``summary`` (text)."""
    from molkit.data import subsample
    from molkit.eval.text import meteor_available

    pool, test, note = load_chebi20(settings.dataset)
    rng = np.random.default_rng(settings.seed)
    train_idx = subsample(len(pool), settings.n_train, rng=rng)
    lm_idx = subsample(len(test), settings.n_test, rng=rng)
    retrieval_idx = subsample(len(test), settings.n_retrieval_eval, rng=rng)
    data = ChebiData(
        pool=pool,
        test=test,
        train_idx=train_idx,
        test_lm=test.iloc[lm_idx].reset_index(drop=True),
        test_retrieval=test.iloc[retrieval_idx].reset_index(drop=True),
        note=note,
    )
    meteor = "available (WordNet found)" if meteor_available() else "UNAVAILABLE (no WordNet): NaN"
    summary = (
        f"{note}\nLM training prompts per direction: {len(train_idx)}; LM test molecules: "
        f"{len(lm_idx)} (seeded); retrieval / MolT5 evaluation: {len(retrieval_idx)} test pairs\n"
        f"METEOR: {meteor}"
    )
    return Results(artefacts={"data": data, "summary": summary})


# --------------------------------------------------------------------------- 2. metric check


def check_metrics(settings: Settings, data: ChebiData) -> Results:
    """MolT5-base's published outputs scored by our metric code on the retrieval-evaluation pairs
    (rows, both directions); artefact ``check``: our mol2cap numbers beside the MolT5 paper's."""
    res = Results()
    scores = {}
    for direction in DIRECTIONS:
        preds = molt5_predictions(direction, data.test_retrieval)
        scores[direction] = evaluate_direction(
            direction, preds, references(direction, data.test_retrieval)
        )
        _add_metric_rows(
            res,
            settings,
            direction,
            "MolT5-base (published outputs)",
            scores[direction],
            data.retrieval_split,
        )
    paper = paper_table("mol2cap").loc["MolT5-base (MolT5 paper)"]
    check = pd.DataFrame({"ours": scores["mol2cap"], "MolT5 paper": paper})
    check["difference"] = check["ours"] - check["MolT5 paper"]
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
    """BM25 over the pool's captions and the molecule retrievers by name; the GIN's
    attribute-masking losses per epoch (empty without a GIN)."""

    bm25: BM25Retriever
    molecule: dict[str, FingerprintRetriever | GraphRetriever]
    gin_losses: list[float]

    def for_direction(self, direction: str, mol2cap_retriever: str):
        """The retriever of a direction: BM25 for cap2mol, ``mol2cap_retriever`` for mol2cap."""
        return self.bm25 if direction == "cap2mol" else self.molecule[mol2cap_retriever]


def build_retrievers(settings: Settings, data: ChebiData) -> Results:
    """BM25 over the pool's captions and each of ``mol_retrievers`` over its molecules (the GIN
    pre-trained on the pool's graphs by attribute masking), then BM25's throughput with the
    retrieval-evaluation captions as queries (a row). Artefacts: ``retrievers``, ``timings``
    (seconds per index), ``bm25_qps``, ``summary``."""
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
    res.artefacts.update(
        retrievers=Retrievers(bm25, molecule, list(gin_losses)),
        timings=pd.Series(timings).to_frame("seconds"),
        bm25_qps=qps,
        summary=(
            f"GIN attribute-masking loss per epoch: {np.round(gin_losses, 3)}\n"
            f"BM25: {qps:,.0f} queries/s over a pool of {len(pool)} captions"
        ),
    )
    return res


# --------------------------------------------------------------------------- 4. retrieval only


def retrieval_baselines(settings: Settings, data: ChebiData, retrievers: Retrievers) -> Results:
    """Retrieval only, the baseline every LM must beat: each molecule retriever copies its nearest
    pool molecule's caption (mol2cap), BM25 copies the best-matching caption's SMILES (cap2mol), on
    the retrieval-evaluation pairs; with the mean top-1 score. Artefact ``table``."""
    res, table = Results(), []
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
    res.artefacts["table"] = pd.DataFrame(table).set_index(["direction", "retriever"])
    return res


# --------------------------------------------------------------------------- 5. re-ranking


def rerank_contexts(settings: Settings, data: ChebiData, retrievers: Retrievers) -> Results:
    """Context examples per direction, in prompt order: ``train`` (top ``random_walk_candidates``
    neighbours of each training query, never its own molecule, random walk from
    ``np.random.default_rng(settings.seed)``, then reversal), ``test`` (top-``k``, reversed) and the
    ``test_time_ablations`` (``test, no reversal``: ranked order, only for k > 1; ``test, <name>
    contexts``: mol2cap contexts from another molecule retriever). Artefacts: ``contexts``
    (direction -> name -> (n, k) pool indices), ``off_top`` (share of training prompts whose
    context the walk changed), ``summary``."""
    k, m = settings.k, max(settings.k, settings.random_walk_candidates)
    exclusions = same_molecule_exclusions(data.pool["smiles"].tolist())
    train_queries = data.train_queries
    train_exclude = [exclusions[i] for i in data.train_idx]
    walk_rng = np.random.default_rng(settings.seed)
    contexts, off_top = {}, {}
    for direction in DIRECTIONS:
        retriever = retrievers.for_direction(direction, settings.mol2cap_retriever)
        train_nb = search(direction, retriever, train_queries, m, train_exclude)
        pairs = zip(train_nb.indices.tolist(), train_exclude, strict=True)
        if any(set(row) & set(ex.tolist()) for row, ex in pairs):
            raise RuntimeError(f"{direction}: a training query retrieved its own molecule")
        test_nb = search(direction, retriever, data.test_lm, m)
        contexts[direction] = {
            "train": rerank(train_nb, k, reverse=True, walk_p=settings.random_walk_p, rng=walk_rng),
            "test": rerank(test_nb, k, reverse=True),
        }
        for ablation in settings.test_time_ablations:
            other = ablation.removesuffix("_contexts")
            if ablation == "no_reversal" and k > 1:  # one example has nothing to reverse
                contexts[direction]["test, no reversal"] = rerank(test_nb, k, reverse=False)
            elif direction == "mol2cap" and other in retrievers.molecule:
                alt = search(direction, retrievers.molecule[other], data.test_lm, k)
                contexts[direction][f"test, {other} contexts"] = rerank(alt, k, reverse=True)
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
    ``answers``, ICMA test prompts by context name (``test`` and the ablations), direct test
    prompts."""

    icma_train: list[str]
    direct_train: list[str]
    answers: list[str]
    test: dict[str, list[str]]
    direct_test: list[str]


def build_prompt_sets(
    settings: Settings, data: ChebiData, contexts: dict, workdir: str | os.PathLike
) -> Results:
    """Resolve the LM (`molkit.models.lm_training.resolve_lm`: the smoke LM is a tiny random Llama
    with a 1,024-token BPE vocabulary trained on the pool's captions and SMILES, saved under
    ``workdir``) and build each direction's prompts with its tokenizer. A training prompt gets the
    cut-off minus its answer's tokens; every test prompt gets the median training budget. Artefacts:
    ``lm_path``, ``prompts`` (direction -> `PromptSet`), ``kept`` (mean context examples kept,
    training and test), ``summary``, ``example`` (one ICMA training prompt, answer after ``||``)."""
    from molkit.models.lm_training import load_lm, resolve_lm

    pool, train_queries = data.pool, data.train_queries
    corpus = pool["text"].tolist() + pool["smiles_raw"].tolist()
    lm_path = resolve_lm(settings.lm_model, corpus, workdir, vocab_size=1024)
    _, tokenizer = load_lm(lm_path, device="cpu")
    prompts, kept, lines = {}, {}, []
    for direction in DIRECTIONS:
        ctx = contexts[direction]
        answers = [" " + a for a in references(direction, train_queries)]
        budget = [
            settings.cutoff - len(tokenizer(a, add_special_tokens=False)["input_ids"]) - 1
            for a in answers
        ]
        icma_train, answers, train_kept = build_prompts(
            direction, train_queries, pool, ctx["train"], tokenizer, budget
        )
        direct_train = build_prompts(direction, train_queries, pool, None, tokenizer, budget)[0]
        test_budget = int(np.median(budget))  # test prompts get the typical training budget
        test = {
            name: build_prompts(direction, data.test_lm, pool, c, tokenizer, test_budget)[0]
            for name, c in ctx.items()
            if name.startswith("test")
        }
        test_kept = build_prompts(
            direction, data.test_lm, pool, ctx["test"], tokenizer, test_budget
        )[2]
        direct_test = build_prompts(direction, data.test_lm, pool, None, tokenizer, test_budget)[0]
        prompts[direction] = PromptSet(icma_train, direct_train, answers, test, direct_test)
        kept[direction] = {"train": float(train_kept.mean()), "test": float(test_kept.mean())}
        lines.append(
            f"{direction}: context examples that fit the cut-off {settings.cutoff}: mean "
            f"{train_kept.mean():.2f} of {settings.k} in training prompts, {test_kept.mean():.2f} "
            f"in test prompts (prompt budget {test_budget} tokens)"
        )
    example = prompts["mol2cap"].icma_train[0] + " ||" + prompts["mol2cap"].answers[0]
    return Results(
        artefacts={
            "lm_path": lm_path,
            "prompts": prompts,
            "kept": kept,
            "summary": "\n".join(lines),
            "example": example,
        }
    )


# --------------------------------------------------------------------------- 7. fine-tuning


def fine_tune(settings: Settings, prompts: dict[str, PromptSet], lm_path: str) -> Results:
    """Per direction, a fresh copy of the LM fine-tuned on the ICMA prompts and another on the
    direct prompts of the same queries (same seed, same settings); both generate greedily for the
    same test molecules, the ICMA model also for the test-time ablations. Rows: training and
    generation throughput. Artefacts: ``outputs`` (direction -> method -> predictions),
    ``run_stats``."""
    from molkit.models.lm_training import TrainConfig

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
    }
    res, outputs, stats = Results(), {}, []
    for direction in DIRECTIONS:
        p = prompts[direction]
        max_new = settings.max_new_tokens(direction)
        ablations = {
            name.removeprefix("test, "): texts for name, texts in p.test.items() if name != "test"
        }
        icma_run, icma_ablations = fine_tune_and_generate(
            lm_path,
            p.icma_train,
            p.answers,
            p.test["test"],
            max_new_tokens=max_new,
            extra_test_prompts=ablations,
            desc=f"ICMA {direction}",
            **common,
        )
        direct_run, _ = fine_tune_and_generate(
            lm_path,
            p.direct_train,
            p.answers,
            p.direct_test,
            max_new_tokens=max_new,
            desc=f"direct {direction}",
            **common,
        )
        outputs[direction] = {
            "ICMA": icma_run.predictions,
            "direct fine-tuning": direct_run.predictions,
            **{f"ICMA, test-time {name}": preds for name, preds in icma_ablations.items()},
        }
        split = f"test subset ({len(p.direct_test)})"
        for method, run in (("ICMA", icma_run), ("direct fine-tuning", direct_run)):
            stats.append(
                {
                    "direction": direction,
                    "method": method,
                    "train tokens": run.train.tokens,
                    "train s": run.train.seconds,
                    "train tokens/s": run.train.tokens_per_second,
                    "final loss": run.train.losses[-1],
                    "generation s": run.generation_seconds,
                    "generated tokens/s": run.generation_tokens_per_second,
                }
            )
            dataset = f"chebi20-{direction}"
            res.add_row(
                dataset,
                method,
                "train_tokens_per_second",
                run.train.tokens_per_second,
                seed=settings.seed,
                split="train",
            )
            res.add_row(
                dataset,
                method,
                "generation_tokens_per_second",
                run.generation_tokens_per_second,
                seed=settings.seed,
                split=split,
            )
    res.artefacts.update(outputs=outputs, run_stats=pd.DataFrame(stats))
    return res


# --------------------------------------------------------------------------- 8. evaluation

#: The summary table's columns per direction (the paper's headline metrics).
HEADLINE = {
    "mol2cap": ["bleu2", "bleu4", "rougeL", "meteor"],
    "cap2mol": ["exact_match", "morgan_fts", "validity"],
}


def evaluate(
    settings: Settings,
    data: ChebiData,
    retrievers: Retrievers,
    outputs: dict[str, dict[str, list[str]]],
) -> Results:
    """Every candidate on the same LM test molecules: the fine-tuned models' ``outputs``, retrieval
    only with the direction's retriever, MolT5-base's published outputs (rows). Claims, each a
    paired bootstrap over the test molecules of the per-item score (`per_item_scores`): ICMA beats
    retrieval only (its trivial baseline, judged first), ICMA beats direct fine-tuning, and, where
    the ablation ran, sequence reversal beats the ranked order at test time. Artefacts: ``tables``
    (direction -> methods x metrics), ``predictions`` (direction -> frame, truth first),
    ``scores`` (direction -> method -> per-item scores), ``paper_comparison``, ``summary``,
    ``gain``, ``examples``."""
    res = Results()
    tables, predictions, scores, comparison = {}, {}, {}, {}
    for direction in DIRECTIONS:
        truth = references(direction, data.test_lm)
        retriever = retrievers.for_direction(direction, settings.mol2cap_retriever)
        nn = retrieval_only(direction, search(direction, retriever, data.test_lm, 1), data.pool)
        name = "bm25" if direction == "cap2mol" else settings.mol2cap_retriever
        candidates = {
            **outputs[direction],
            f"retrieval only ({name})": nn,
            "MolT5-base (published outputs)": molt5_predictions(direction, data.test_lm),
        }
        rows = {}
        for method, preds in candidates.items():
            rows[method] = evaluate_direction(direction, preds, truth)
            _add_metric_rows(res, settings, direction, method, rows[method], data.lm_split)
        tables[direction] = pd.DataFrame(rows).T
        predictions[direction] = pd.DataFrame({"truth": truth, **candidates})
        scores[direction] = {m: per_item_scores(direction, p, truth) for m, p in candidates.items()}
        comparison[direction] = _paper_comparison(settings, data, tables[direction], direction)
    scale = f"{len(data.train_idx)} training prompts per direction, LM {settings.lm_model}"
    res.claims = paper_claims(scores, seed=settings.seed, scale=scale)
    summary = pd.concat({d: tables[d][cols] for d, cols in HEADLINE.items()}, axis=1)
    gain = {
        "BLEU-2 (mol2cap)": _difference(tables["mol2cap"], "bleu2"),
        "Morgan FTS (cap2mol)": _difference(tables["cap2mol"], "morgan_fts"),
    }
    examples = pd.DataFrame(
        {
            "SMILES": data.test_lm["smiles_raw"],
            "ground truth": data.test_lm["text"],
            "ICMA": outputs["mol2cap"]["ICMA"],
            "direct": outputs["mol2cap"]["direct fine-tuning"],
        }
    ).head(3)
    res.artefacts.update(
        tables=tables,
        predictions=predictions,
        scores=scores,
        paper_comparison=comparison,
        summary=summary,
        gain=gain,
        examples=examples,
    )
    return res


def _difference(table: pd.DataFrame, metric: str) -> float:
    return float(table.loc["ICMA", metric] - table.loc["direct fine-tuning", metric])


def _paper_comparison(
    settings: Settings, data: ChebiData, table: pd.DataFrame, direction: str
) -> pd.DataFrame:
    """The published rows for a direction above ours (same metric columns)."""
    paper = paper_table(direction)
    label = f" — ours, {settings.lm_model}, {len(data.train_idx)} train, {len(data.test_lm)} test"
    ours = table[paper.columns].rename(index=lambda method: f"{method}{label}")
    return pd.concat([paper, ours])
