"""The typed records ICMA's Practical sections return (`molkit.methods.icma.experiment`): each
section's `Results` subclass carries its rows and claims for the record and, as attributes, what
the notebook shows, so no result is fished out of a dictionary by a string key."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from molkit.data import SealedLabels
from molkit.methods.experiment import Results
from molkit.methods.icma.corpus import references, same_molecule_exclusions
from molkit.methods.icma.method import Arm
from molkit.methods.icma.retrieval import (
    FingerprintRetriever,
    GraphRetriever,
    LuceneBM25Retriever,
    OkapiBM25Retriever,
    RandomRetriever,
)
from molkit.methods.icma.settings import DIRECTIONS

__all__ = [
    "ChebiData",
    "DataSection",
    "MetricCheck",
    "Retrievers",
    "RetrieverSection",
    "NeighbourExample",
    "RetrievalSection",
    "Contexts",
    "ContextSection",
    "ArmPrompts",
    "PromptSet",
    "PromptSection",
    "Tuning",
    "DirectionEvaluation",
    "Evaluation",
    "seal_references",
]


def _ordered(picks: np.ndarray | None, reverse: bool) -> np.ndarray | None:
    if picks is None:
        return None
    return picks[:, ::-1].copy() if reverse else picks.copy()


def seal_references(frame: pd.DataFrame, name: str) -> dict[str, SealedLabels]:
    from molkit.data import seal

    return {d: seal(references(d, frame), f"{name} ({d} references)") for d in DIRECTIONS}


@dataclass
class ChebiData:
    """The retrieval / training ``pool``, the ``test`` split and the seeded subsets: pool rows
    ``train_idx`` (training queries), ``lm_valid_idx`` (the LM's validation queries, disjoint from
    them), ``val_idx`` (queries that judge the retrievers), ``gin_valid_idx`` (graphs that validate
    the GIN); ``test_lm`` (LM test molecules; ``ablation_idx``: its rows for the probes) and
    ``test_retrieval`` (the retrieval-only and MolT5 pairs). ``truth`` / ``truth_retrieval``: the
    sealed references of ``test_lm`` / ``test_retrieval`` per direction (`molkit.data.seal`)."""

    pool: pd.DataFrame
    test: pd.DataFrame
    train_idx: np.ndarray
    lm_valid_idx: np.ndarray
    test_lm: pd.DataFrame
    test_retrieval: pd.DataFrame
    ablation_idx: np.ndarray
    val_idx: np.ndarray
    gin_valid_idx: np.ndarray
    truth: dict[str, SealedLabels]
    truth_retrieval: dict[str, SealedLabels]
    note: str

    @property
    def train_queries(self) -> pd.DataFrame:
        return self.pool.iloc[self.train_idx].reset_index(drop=True)

    @property
    def lm_valid_queries(self) -> pd.DataFrame:
        return self.pool.iloc[self.lm_valid_idx].reset_index(drop=True)

    @property
    def test_ablation(self) -> pd.DataFrame:
        return self.test_lm.iloc[self.ablation_idx].reset_index(drop=True)

    @cached_property
    def exclusions(self) -> list[np.ndarray]:
        """Per pool entry, the pool indices of the same molecule: what a pool query skips."""
        return same_molecule_exclusions(self.pool["key"].tolist())

    @property
    def retrieval_split(self) -> str:
        return f"test ({len(self.test_retrieval)})"

    @property
    def lm_split(self) -> str:
        return f"test subset ({len(self.test_lm)})"

    @property
    def ablation_split(self) -> str:
        return f"test ablation subset ({len(self.ablation_idx)})"


@dataclass
class DataSection(Results):
    """`load_data`: the ``data`` and a ``summary`` of the subsets."""

    data: ChebiData | None = None
    summary: str = ""


@dataclass
class MetricCheck(Results):
    """Our metrics of MolT5-base's published outputs per direction (``ours``; empty and
    ``skipped`` saying why on data other than ChEBI-20)."""

    ours: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: str = ""


@dataclass
class Retrievers:
    """BM25 over the pool's captions (``bm25``: the official Okapi variant, the cap2mol
    retriever; ``bm25_lucene``: bm25s' variant, measured beside it), the molecule retrievers by
    name (``random`` among them) and ``mol2cap``: the one the mol2cap contexts come from (set by
    `retrieval_baselines` when the settings say ``auto``)."""

    bm25: OkapiBM25Retriever
    bm25_lucene: LuceneBM25Retriever
    molecule: dict[str, FingerprintRetriever | GraphRetriever | RandomRetriever]
    mol2cap: str | None = None

    def for_direction(self, direction: str):
        """The retriever of a direction: BM25 for cap2mol, the chosen one for mol2cap."""
        if direction == "cap2mol":
            return self.bm25
        if self.mol2cap is None:
            raise RuntimeError("no mol2cap retriever chosen yet: run retrieval_baselines first")
        return self.molecule[self.mol2cap]

    def name(self, direction: str) -> str:
        return "bm25" if direction == "cap2mol" else str(self.mol2cap)


@dataclass
class RetrieverSection(Results):
    """`build_retrievers`: the ``retrievers``, the GIN's training report (``gin_report``: a
    `molkit.models.fit.FitReport`, None without a GIN), index ``timings`` and a ``summary``."""

    retrievers: Retrievers | None = None
    gin_report: object | None = None
    timings: pd.DataFrame | None = None
    summary: str = ""


@dataclass
class NeighbourExample:
    """One LM test molecule (``smiles``, ``text``) and its top-k neighbours per molecule retriever:
    name -> [(smiles, caption, score)]."""

    smiles: str
    text: str
    neighbours: dict[str, list[tuple[str, str, float]]]


@dataclass
class RetrievalSection(Results):
    """Retrieval quality on the pool's validation queries: ``validation`` (retriever -> caption
    metrics of copying the top-1 caption, ``chosen``), the per-item ROUGE-L per molecule
    retriever (``val_scores``, ``random`` among them) and per BM25 variant the per-item Morgan
    Tanimoto of the top-1 SMILES (``bm25_scores``); ``table``: retrieval only on the test pairs;
    ``chosen``: the mol2cap retriever; ``example``: one test molecule's neighbours."""

    validation: pd.DataFrame | None = None
    val_scores: dict[str, np.ndarray] = field(default_factory=dict)
    bm25_scores: dict[str, np.ndarray] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    chosen: str = ""
    n_val: int = 0
    example: NeighbourExample | None = None
    summary: str = ""


@dataclass
class Contexts:
    """One direction's context examples, pool indices in ranked order (most similar first):
    ``walked`` per training seed (the random walk's ``k`` picks among the top
    ``random_walk_candidates``), the top-k of the training (``top_train``), validation and test
    queries, and the probes' contexts on the probe subset in prompt order (None: k = 0).
    ``off_top``: the share of the first seed's training prompts whose walk left the top-k."""

    walked: dict[int, np.ndarray]
    top_train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    probes: dict[str, np.ndarray | None]
    off_top: float

    def train_for(self, arm: Arm, seed: int) -> np.ndarray | None:
        """An arm's training contexts in prompt order (None without context)."""
        if not arm.context:
            return None
        return _ordered(self.walked[seed] if arm.walk else self.top_train, arm.reversed)

    def valid_for(self, arm: Arm) -> np.ndarray | None:
        return _ordered(self.valid, arm.reversed) if arm.context else None

    def test_for(self, arm: Arm) -> np.ndarray | None:
        return _ordered(self.test, arm.reversed) if arm.context else None


@dataclass
class ContextSection(Results):
    """`rerank_contexts`: the `Contexts` per direction and a ``summary``."""

    contexts: dict[str, Contexts] = field(default_factory=dict)
    summary: str = ""


@dataclass
class ArmPrompts:
    """One arm's prompts: training prompts per training seed (none for an untuned arm),
    validation prompts, test prompts."""

    arm: Arm
    seeds: list[int]
    train: dict[int, list[str]]
    valid: list[str]
    test: list[str]


@dataclass
class PromptSet:
    """One direction's prompts: the training and validation ``answers``, each arm's prompts
    (arm key of `molkit.methods.icma.method.ARMS` -> `ArmPrompts`), the probes' prompts on the
    probe subset, and the outputs of each ICMA test prompt's context examples."""

    answers: list[str]
    valid_answers: list[str]
    arms: dict[str, ArmPrompts]
    probes: dict[str, list[str]]
    test_context_outputs: list[list[str]]


@dataclass
class PromptSection(Results):
    """`build_prompt_sets`: the resolved LM (``lm_path``), the `PromptSet` per direction, the
    share of ICMA prompts that kept all k examples (``fit``), the token lengths per prompt set
    (``lengths``), one training prompt (``example``), the ``memory`` line and a ``summary``."""

    lm_path: str = ""
    prompts: dict[str, PromptSet] = field(default_factory=dict)
    fit: dict[str, dict[str, float]] = field(default_factory=dict)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    example: str = ""
    memory: str = ""
    summary: str = ""


@dataclass
class Tuning(Results):
    """Every arm's generations: ``outputs`` (direction -> arm name -> one prediction list per
    training seed), ``seeds`` (arm name -> its training seeds), ``probe_outputs`` (direction ->
    probe name -> predictions on the probe subset, by ICMA's first seed), ``reports`` (direction
    -> arm name -> one `molkit.models.lm.TrainReport` per seed, None untuned) and ``runs`` (one
    row per run: tokens trained, the chosen step, speed)."""

    outputs: dict[str, dict[str, list[list[str]]]] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    probe_outputs: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    reports: dict[str, dict[str, list]] = field(default_factory=dict)
    runs: pd.DataFrame | None = None
    generation: str = ""

    def training_summary(self) -> str:
        """One line per training run: its steps, the kept step and its validation loss
        (`molkit.models.lm.TrainReport.summary`), the tokens it trained on."""
        return "\n".join(
            f"{direction} {arm} seed {seed}: {report.summary()}; {report.tokens:,} tokens trained"
            for direction, arms in self.reports.items()
            for arm, reports in arms.items()
            for seed, report in zip(self.seeds[arm], reports, strict=True)
            if report is not None
        )


@dataclass
class DirectionEvaluation:
    """One direction on the LM test molecules: ``table`` (method x metric; an arm with several
    training seeds: the mean over its seeds), ``scores`` (method -> per-item scores, (n_seeds, n)
    for the LM arms, (n,) for the fixed baselines), the probes beside ICMA's first seed on the
    probe subset (``probe_table``, ``probe_scores``), ``failures`` (arm x failure mode, shares,
    mean over seeds), ``predictions`` (truth first, each method's first seed), ``examples`` and the
    names of the two baselines: ``copy`` (retrieval only) and ``random`` (a random pool output)."""

    table: pd.DataFrame
    scores: dict[str, np.ndarray]
    probe_table: pd.DataFrame
    probe_scores: dict[str, np.ndarray]
    failures: pd.DataFrame
    predictions: pd.DataFrame
    examples: pd.DataFrame
    copy: str
    random: str


@dataclass
class Evaluation(Results):
    """The final scoring: one `DirectionEvaluation` per direction (``mol2cap``, ``cap2mol``, or
    ``directions`` by name), the training seeds per arm, the headline ``summary`` table, the test
    molecules (``n_test``) and the probe subset (``n_probe``)."""

    directions: dict[str, DirectionEvaluation] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    n_test: int = 0
    n_probe: int = 0

    @property
    def mol2cap(self) -> DirectionEvaluation:
        return self.directions["mol2cap"]

    @property
    def cap2mol(self) -> DirectionEvaluation:
        return self.directions["cap2mol"]
