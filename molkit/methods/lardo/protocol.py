"""The protocols MolGraph-LarDo is measured under: which molecules each model trains, stops and
is scored on, and one training unit of every encoder (`train_unit`).

Two fine-tuning protocols, side by side:

- ``official``: the deterministic scaffold split the official fine-tuning uses (`official_split`,
  MolCLR's: `OFFICIAL_SPLIT`), with several training seeds on it (the official code repeats
  fine-tuning three times: `OFFICIAL_REPEATS`). Here each seed also re-initialises the GIN before
  pre-training, so the seeds carry the pre-training's variance as well.
- ``balanced``: molkit's balanced scaffold splits (chemprop's ``scaffold_balanced``), one seed
  each, which is also the training seed of every model on it.

Everything chosen by measurement stops on a validation part: pre-training on a held-out share of
its own pairs, fine-tuning on the split's validation part. The test part's labels are sealed
(`molkit.data.seal`): only the final scoring opens them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from molkit.data import SealedLabels, seal
from molkit.methods.lardo.clip import build_predictor, pretrain_clip
from molkit.methods.lardo.method import official_substitution
from molkit.methods.lardo.settings import ABLATION_ENCODERS, MAIN_ENCODERS, Settings

#: Where the official split comes from (file and lines of the code it is built by).
OFFICIAL_SPLIT = (
    "yuyangw/MolCLR@3d3bc19 dataset/dataset_test.py lines 46-89 (generate_scaffolds, "
    "scaffold_split): Bemis-Murcko scaffold sets sorted by (size, first index), largest first, "
    "filled into train, valid and test in that order (80/10/10)"
)
#: How often the official code fine-tunes on that split.
OFFICIAL_REPEATS = (
    "zhangtia16/MolGraph-LarDo@cd83d71 finetune_repeat3.py line 377: fine-tuning repeated three "
    "times on the one split"
)
PROTOCOLS = {
    "official": "deterministic scaffold split (MolCLR's, the official protocol)",
    "balanced": "balanced scaffold splits (molkit's)",
}
#: The ``split`` column of the result rows of each protocol's test part.
TEST_SPLITS = {"official": "official scaffold test", "balanced": "scaffold test"}
#: The text sources the retrieval section pre-trains on: the three text variants every molecule
#: of the ablation pool has, and the LarDo text without the official substitution.
RETRIEVAL_SOURCES = ("lardo", "no_dsm", "dsm_only", "lardo_raw")


def official_split(smiles: Sequence[str]) -> dict[str, np.ndarray]:
    """The official fine-tuning split (`OFFICIAL_SPLIT`): `molkit.data.scaffold_split` with
    ``balanced=False`` builds it the same way (a test compares it with MolCLR's code). MolCLR's
    reader also drops the first data row of every file; here every row takes part."""
    from molkit.data import scaffold_split

    return scaffold_split(list(smiles), (0.8, 0.1, 0.1), balanced=False)


@dataclass(frozen=True)
class Unit:
    """One training unit: a ``protocol``'s split (``split``: the balanced split's seed; 0 for the
    official one), the training ``seed`` and the split's ``parts`` (positions)."""

    protocol: str
    split: int
    seed: int
    parts: Mapping[str, np.ndarray]

    @property
    def label(self) -> str:
        if self.protocol == "official":
            return f"official split, seed {self.seed}"
        return f"balanced split {self.split}"


def protocol_units(settings: Settings, smiles: Sequence[str]) -> list[Unit]:
    """The official split once per seed of ``official_seeds``, then each balanced split of
    ``splits`` (its seed is the training seed)."""
    from molkit.data import scaffold_split

    units = []
    if settings.official_seeds:
        parts = official_split(smiles)
        units += [Unit("official", 0, seed, parts) for seed in settings.official_seeds]
    for split in settings.splits:
        parts = scaffold_split(list(smiles), (0.8, 0.1, 0.1), balanced=True, seed=split)
        units.append(Unit("balanced", split, split, parts))
    return units


def protocol_encoders(settings: Settings, protocol: str) -> tuple[str, ...]:
    """The encoders a protocol pre-trains and fine-tunes."""
    if protocol == "official":
        return tuple(e for e in MAIN_ENCODERS if e in settings.official_encoders)
    return MAIN_ENCODERS + (ABLATION_ENCODERS if settings.ablation_pretraining else ())


def text_embeddings(encoder: Any, desc: Any, molecule_token: bool = True) -> dict[str, np.ndarray]:
    """variant -> (n_molecules, d) embeddings of ``desc``'s texts (NaN rows where it has none),
    each text first passed through `official_substitution` with ``molecule_token``; with it,
    ``"lardo_raw"``: the LarDo texts as written, on the molecules every variant described."""
    out = {}
    sources = {v: (v, molecule_token) for v in desc.texts}
    if molecule_token:
        sources["lardo_raw"] = ("lardo", False)
    shared = set(desc.described_by_all(tuple(desc.texts)).tolist())
    for source, (variant, substitute) in sources.items():
        texts = desc.texts[variant]
        described = desc.described(variant)
        if source == "lardo_raw":
            described = np.array([i for i in described if i in shared], dtype=int)
        chosen = [
            official_substitution(texts[i], desc.smiles[i]) if substitute else texts[i]
            for i in described
        ]
        emb = np.asarray(encoder.embed(chosen, batch_size=64, progress=False))
        full = np.full((len(texts), emb.shape[1] if emb.ndim == 2 else 0), np.nan, np.float32)
        full[described] = emb
        out[source] = full
    return out


# ---------------------------------------------------------------------------- one training unit


@dataclass
class UnitPredictions:
    """One unit's test predictions: ``y`` (sealed test labels, (n, n_tasks)) and ``preds``: arm
    -> (n, n_tasks) (each encoder fine-tuned, ``<encoder>_frozen`` its linear probe, ``rf`` the
    Morgan forest, ``mean`` the training mean or class prior)."""

    protocol: str
    split: int
    seed: int
    y: SealedLabels
    preds: dict[str, np.ndarray]


@dataclass
class EmbeddingMap:
    """A dataset's test graphs embedded by the random GIN (``before``) and after LarDo
    pre-training (``after``) in the first unit, with their sealed first labels."""

    dataset: str
    unit: str
    before: np.ndarray
    after: np.ndarray
    labels: SealedLabels


@dataclass
class UnitOutcome:
    """What `train_unit` returns: the predictions, the pre-training and fine-tuning curves (one
    row per epoch, the unit's keys and ``best_epoch`` beside them), the pool sizes."""

    predictions: UnitPredictions
    pretrain_history: list[pd.DataFrame] = field(default_factory=list)
    finetune_history: list[pd.DataFrame] = field(default_factory=list)
    embedding_map: EmbeddingMap | None = None


def _torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _training_mean(task: str, y_train: np.ndarray, n_test: int) -> np.ndarray:
    """The trivial baseline's (n_test, n_tasks) predictions: training mean or class prior."""
    from molkit.methods.baselines import fit_predict_per_task, training_mean

    return fit_predict_per_task(
        functools.partial(training_mean, task), np.zeros((len(y_train), 1)), y_train,
        np.zeros((n_test, 1)), task,
    )  # fmt: skip


def unit_parts(settings: Settings, unit: Unit, n_molecules: int) -> dict[str, np.ndarray]:
    """The unit's parts, each cut to a prefix when ``finetune_max`` is set (at least 8)."""
    fmax = settings.finetune_max
    return {
        k: v if fmax is None else v[: max(8, fmax * len(v) // n_molecules)]
        for k, v in unit.parts.items()
    }


def train_unit(
    settings: Settings,
    unit: Unit,
    dataset: str,
    task: str,
    graphs: Sequence,
    y: np.ndarray,
    smiles: Sequence[str],
    emb: Mapping[str, np.ndarray],
    pools: Mapping[str, np.ndarray],
    watch: bool = False,
) -> UnitOutcome:
    """Every encoder of the unit's protocol (`protocol_encoders`), each from the GIN the unit's
    seed initialises: from scratch, attribute masking, or graph-text pre-training on the texts of
    ``emb`` (variant -> (n, d)) of the pool's molecules in the training part (``pools``: "pool"
    and "ablation" positions); then a linear probe on the frozen encoder and end-to-end
    fine-tuning (stopped on the validation part); plus the Morgan forest and the trivial
    baseline. Regression targets are standardised with the training part's mean and std for
    fine-tuning. ``watch``: keep the test graphs' embedding before and after LarDo pre-training."""
    from molkit.methods.baselines import fit_predict_per_task, linear_probe, morgan_model
    from molkit.models.gnn import (
        GIN,
        attribute_masking_pretrain,
        embed_graphs,
        predict_graph_model,
        train_graph_model,
    )

    parts = unit_parts(settings, unit, len(graphs))
    data = {k: ([graphs[i] for i in v], y[v]) for k, v in parts.items() if k != "test"}
    test_graphs = [graphs[i] for i in parts["test"]]
    y_test = seal(y[parts["test"]], f"{dataset} test ({unit.label})")
    if task == "classification":
        mu, sd = 0.0, 1.0
    else:
        mu, sd = np.nanmean(data["train"][1], 0), np.nanstd(data["train"][1], 0)
    y_fit = {k: (data[k][1] - mu) / sd for k in ("train", "valid")}
    on_train = {k: np.intersect1d(v, unit.parts["train"]) for k, v in pools.items()}
    keys = {"protocol": unit.protocol, "dataset": dataset, "split": unit.split, "seed": unit.seed}
    out = UnitOutcome(UnitPredictions(unit.protocol, unit.split, unit.seed, y_test, {}))
    preds = out.predictions.preds
    for method in protocol_encoders(settings, unit.protocol):
        _torch_seed(unit.seed)
        gin = GIN(num_layers=settings.num_layers, hidden=settings.hidden)
        molecules = on_train["ablation" if method in ABLATION_ENCODERS else "pool"]
        if method == "attr_masking":
            attribute_masking_pretrain(
                gin, [graphs[i] for i in molecules], epochs=settings.masking_epochs,
                batch_size=settings.batch_size, seed=unit.seed, progress=False,
            )  # fmt: skip
        elif method != "scratch":
            before = embed_graphs(gin, test_graphs) if watch and method == "lardo" else None
            variant = "lardo" if method == "lardo_ablation_pool" else method
            fitted = pretrain_clip(
                gin, [graphs[i] for i in molecules], emb[variant][molecules],
                epochs=settings.pretrain_epochs, lr=settings.pretrain_lr,
                batch_size=settings.batch_size, seed=unit.seed,
                valid_fraction=settings.pretrain_valid, patience=settings.pretrain_patience,
                progress=False,
            )  # fmt: skip
            out.pretrain_history.append(fitted.history.assign(
                **keys, method=method, best_epoch=fitted.best_epoch, pairs=len(molecules),
            ))  # fmt: skip
            if before is not None:
                out.embedding_map = EmbeddingMap(
                    dataset, unit.label, before, embed_graphs(gin, test_graphs),
                    seal(y[parts["test"], 0], f"{dataset} test ({unit.label}), first label"),
                )  # fmt: skip
        preds[f"{method}_frozen"] = fit_predict_per_task(
            functools.partial(linear_probe, task), embed_graphs(gin, data["train"][0]),
            data["train"][1], embed_graphs(gin, test_graphs), task,
        )  # fmt: skip
        model = build_predictor(gin, y.shape[1])
        history = train_graph_model(
            model, data["train"][0], y_fit["train"], data["valid"][0], y_fit["valid"],
            task=task, epochs=settings.finetune_epochs, lr=settings.head_lr,
            encoder_lr=settings.encoder_lr, batch_size=settings.batch_size,
            patience=settings.patience, seed=unit.seed, progress=False,
        )  # fmt: skip
        out.finetune_history.append(
            history.records.assign(**keys, method=method, best_epoch=history.best_epoch)
        )
        pred = predict_graph_model(model, test_graphs, task)
        preds[method] = pred if task == "classification" else pred * sd + mu
    as_array = functools.partial(np.asarray, dtype=object)
    preds["rf"] = fit_predict_per_task(
        functools.partial(morgan_model, "rf", task, seed=unit.seed, n_estimators=settings.rf_trees),
        as_array([smiles[i] for i in parts["train"]]), data["train"][1],
        as_array([smiles[i] for i in parts["test"]]), task,
    )  # fmt: skip
    preds["mean"] = _training_mean(task, data["train"][1], len(parts["test"]))
    return out


def _unit_in_worker(threads: int, filters: list, args: tuple) -> UnitOutcome:
    """`train_unit` in a worker process, on the parent's number of torch threads and warning
    filters, RDKit's log off as `molkit.setup` leaves it: a worker's stderr reaches the notebook
    (the kernel forwards its children's output), so it keeps the parent's quiet."""
    import warnings

    import torch
    from rdkit import RDLogger

    from molkit._progress import quiet_library_logs

    torch.set_num_threads(threads)
    warnings.filters[:] = filters
    RDLogger.DisableLog("rdApp.*")
    quiet_library_logs()
    return train_unit(*args)


def train_units(jobs: Sequence[tuple], workers: int = 1) -> list[UnitOutcome]:
    """`train_unit` on each job (its positional arguments), in order. ``workers`` > 1 runs them in
    that many processes side by side (joblib's loky backend), each on as many torch threads as
    this process has: these small graphs train fastest one thread per core, so a 2-core machine
    trains two units at once. Every unit seeds its own models, so the outcomes equal a serial
    run's."""
    workers = min(int(workers), len(jobs))
    if workers <= 1:
        return [train_unit(*job) for job in jobs]
    import warnings

    import torch
    from joblib import Parallel, delayed

    threads, filters = torch.get_num_threads(), list(warnings.filters)
    run = Parallel(n_jobs=workers, backend="loky")
    return list(run(delayed(_unit_in_worker)(threads, filters, job) for job in jobs))


# ------------------------------------------------------------------------ retrieval probe


@dataclass
class RetrievalUnit:
    """One seed's held-out retrieval of one dataset: per text source, ``hits`` (k -> (n,) the
    chance each held-out molecule's own text is among the k nearest), the ``candidates`` and the
    pre-training curve."""

    dataset: str
    seed: int
    candidates: int
    hits: dict[str, dict[int, np.ndarray]]
    history: list[pd.DataFrame]


def retrieval_unit(
    settings: Settings,
    dataset: str,
    graphs: Sequence,
    emb: Mapping[str, np.ndarray],
    train: np.ndarray,
    held_out: np.ndarray,
    seed: int,
    ks: Sequence[int] = (1, 5),
) -> RetrievalUnit:
    """Graph-text pre-training on the ``train`` molecules with each text source of
    `RETRIEVAL_SOURCES` (one factor: the same molecules, the same initial GIN from ``seed``, the
    same stopping rule), then graph -> text retrieval among the ``held_out`` molecules' texts of
    the same source (`molkit.methods.lardo.clip.graph_to_text_hits`)."""
    from molkit.methods.lardo.clip import graph_to_text_hits
    from molkit.models.gnn import GIN

    hits, history = {}, []
    for source in (s for s in RETRIEVAL_SOURCES if s in emb):
        _torch_seed(seed)
        gin = GIN(num_layers=settings.num_layers, hidden=settings.hidden)
        fitted = pretrain_clip(
            gin, [graphs[i] for i in train], emb[source][train], epochs=settings.pretrain_epochs,
            lr=settings.pretrain_lr, batch_size=settings.batch_size, seed=seed,
            valid_fraction=settings.pretrain_valid, patience=settings.pretrain_patience,
            progress=False,
        )  # fmt: skip
        history.append(fitted.history.assign(
            dataset=dataset, seed=seed, method=source, best_epoch=fitted.best_epoch,
            pairs=len(train),
        ))  # fmt: skip
        hits[source] = graph_to_text_hits(
            fitted.model, [graphs[i] for i in held_out], emb[source][held_out], ks
        )
    return RetrievalUnit(dataset, seed, len(held_out), hits, history)
