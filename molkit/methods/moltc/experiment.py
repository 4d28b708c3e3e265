"""The 04_moltc notebook's Practical sections, one function each: the settings first, what earlier
sections returned next, a typed `Results` back (its ``rows`` for the record, attributes for what the
notebook shows). The functions are pure: they never write the record, and they make no claim
(`molkit.methods.moltc.claims` judges what they return).

1. `ddi_upstream`: ChCh-Miner, its upstream split and what each part shares with training.
2. `upstream_baselines`: the no-chemistry prior and Morgan + gradient boosting on that split.
3. `drug_cold`: de-duplicated pairs, seeded drug-cold splits, every baseline (pair GIN included).
4. `both_unseen`: the stricter split where no test pair shares a drug with training.
5. `regression_baselines`: the regression pair sets (one row per measurement), random, grouped
   and unseen-solvent splits.
6. `pair_pretraining`: the LM tasks' pairs (training, validation, sealed test), the frozen GIN,
   the LM, MolTC's pair pre-training (``full`` only).
7. `ddi_lm`: MolTC (and SMILES only) on DDI, both drugs unseen and one drug unseen.
8. `freesolv_lm`: MolTC and SMILES only on FreeSolv, ``lm_seeds`` training seeds each.
9. `role_lm`: role-separated vs shared projectors on unseen solvents, with the swap test.

Every LM run trains through the LM toolkit's trainer on a validation part, which also chooses the
regression readout; the test labels are sealed (`molkit.data.seal`) and read once, in `_score`.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from molkit.data import final_scoring
from molkit.data.pairs import (
    check_cold_split,
    deduplicate_pairs,
    drug_cold_split,
    make_pair_split,
    split_overlap,
    straddling_pairs,
)
from molkit.data.sealed import SealedLabels
from molkit.data.splits import Split
from molkit.eval.metrics import mean_pm_std, task_metrics
from molkit.methods.baselines import DrugPrior
from molkit.methods.experiment import Results
from molkit.methods.moltc.lm import LMRun, PairLMSession, lm_memory, quiet_transformers
from molkit.methods.moltc.lm_data import LMSet, lm_set, pair_split, prompt_lengths
from molkit.methods.moltc.method import (
    DDI_ANSWERS,
    EXPECTED_VALUE,
    GREEDY,
    TASKS,
    PairTask,
    lm_variants,
    pretrain_graph_encoder,
    pretrain_target,
    swap_consistency,
    task_answers,
    task_prompts,
)
from molkit.methods.moltc.pair_baselines import (
    GBM,
    LARGE_SET,
    MEAN,
    SMALL_SET,
    gbm_features,
    gbm_on_test_sets,
    load_pairs,
    load_regression_set,
    run_baselines,
    solute_only,
)
from molkit.methods.moltc.pair_gin import pair_graphs
from molkit.methods.moltc.settings import FREESOLV, SMILES_ONLY, Settings

__all__ = [
    "CHANCE", "DDI", "LM_BOTH_UNSEEN", "LM_ONE_UNSEEN", "PRIOR_ALL", "PRIOR_LM", "SECTIONS",
    "BaselineTable", "BothUnseen", "DrugCold", "LMSection", "LMStage",
    "RegressionBaselines", "UpstreamData", "both_unseen", "ddi_lm", "ddi_upstream", "drug_cold",
    "freesolv_lm", "pair_pretraining", "regression_baselines", "role_lm", "upstream_baselines",
]  # fmt: skip

DDI = "chchminer"
#: What `split_overlap` columns the upstream-split section records.
OVERLAP_METRICS = (
    "pairs", "repeated_conflicting", "pairs_in_train", "opposite_label_in_train", "new_molecule",
    "positive_rate",
)  # fmt: skip
#: Names of the LM test sets (the split column of their rows).
LM_BOTH_UNSEEN, LM_ONE_UNSEEN = "drug_cold_both (LM test pairs)", "drug_cold (LM test pairs)"
CHANCE = "chance (constant score)"
PRIOR_LM = "per-drug prior (the LM's training pairs)"
PRIOR_ALL = "per-drug prior (all training pairs)"
#: The split column of the LM runs' training rows (validation figures, steps, speed).
LM_VALIDATION = "LM validation"


def _note_rows(res: Results, rows: pd.DataFrame, dataset: str, split: str, seed: int) -> None:
    """Baseline rows: the test metrics first, then the wall times and feature counts."""
    timing = rows.metric.isin(["seconds", "features used"])
    for note, part in (("test part", rows[~timing]), ("baseline wall time (s)", rows[timing])):
        for r in part.itertuples():
            res.add_row(dataset, r.method, r.metric, r.value, seed=seed, split=split, note=note)


def _pivot(rows: pd.DataFrame) -> pd.DataFrame:
    shown = rows[~rows.metric.isin(["seconds", "features used"])]
    return shown.pivot_table(index="method", columns="metric", values="value", sort=False)


# ============================================================== §1-5: data and baselines


@dataclass
class UpstreamData(Results):
    """§1: ``ddi`` (ChCh-Miner rows), its upstream ``split``, ``overlap`` (per part, what it
    shares with training)."""

    ddi: pd.DataFrame | None = None
    split: Split | None = None
    overlap: pd.DataFrame | None = None


def ddi_upstream(settings: Settings) -> UpstreamData:
    """§1: ChCh-Miner (``ddi_rows`` seeded rows), its upstream split and, per part, what it shares
    with training (`molkit.data.pairs.split_overlap`)."""
    ddi = load_pairs(DDI, rows=settings.ddi_rows, seed=settings.seed)
    split = make_pair_split(ddi, "upstream")
    res = UpstreamData(ddi=ddi, split=split, overlap=split_overlap(ddi, split))
    for row in res.overlap.itertuples():
        for metric in OVERLAP_METRICS:
            value = getattr(row, metric)
            res.add_row(DDI, "data", f"{row.part}: {metric}", value, settings.seed, "upstream")
    return res


@dataclass
class BaselineTable(Results):
    """Baselines on one split: ``table`` (method x metric, the test part)."""

    table: pd.DataFrame | None = None


def upstream_baselines(settings: Settings, data: UpstreamData) -> BaselineTable:
    """§2: the per-drug prior and Morgan + gradient boosting on the upstream split of §1."""
    rows, _ = run_baselines(data.ddi, data.split, TASKS[DDI], settings, seed=settings.seed,
                            gin=False)  # fmt: skip
    res = BaselineTable(table=_pivot(rows))
    _note_rows(res, rows, DDI, "upstream", settings.seed)
    return res


@dataclass
class DrugCold(Results):
    """§3: ``ddi_unique`` (unordered pairs, conflicting labels dropped), ``dedup`` (counts),
    ``splits`` (seed -> drug-cold split), ``overlap`` (``seed``'s split)."""

    ddi_unique: pd.DataFrame | None = None
    dedup: dict[str, int] = field(default_factory=dict)
    splits: dict[int, Split] = field(default_factory=dict)
    overlap: pd.DataFrame | None = None


def drug_cold(settings: Settings, data: UpstreamData) -> DrugCold:
    """§3: unordered pairs de-duplicated (conflicting labels dropped), one seeded drug-cold split
    per seed (checked cold), the prior on every seed, gradient boosting and the pair GIN on
    ``seed``'s."""
    seed = settings.seed
    ddi_unique, report = deduplicate_pairs(data.ddi)
    res = DrugCold(ddi_unique=ddi_unique, dedup=report)
    for key, value in report.items():
        res.add_row(DDI, "data", f"dedup: {key}", value, seed, "drug_cold")
    graphs = pair_graphs(ddi_unique.smiles_1, ddi_unique.smiles_2)
    for s in settings.seeds:
        res.splits[s] = drug_cold_split(ddi_unique, (0.8, 0.1, 0.1), seed=s)
        check_cold_split(ddi_unique, res.splits[s])
        rows, _ = run_baselines(
            ddi_unique, res.splits[s], TASKS[DDI], settings, seed=s, gin=s == seed,
            graphs=graphs if s == seed else None, gbm=s == seed,
        )  # fmt: skip
        _note_rows(res, rows, DDI, "drug_cold", s)
    res.overlap = split_overlap(ddi_unique, res.splits[seed])
    return res


@dataclass
class BothUnseen(Results):
    """§4: ``splits`` (seed -> both-unseen split), ``overlap`` (``seed``'s split)."""

    splits: dict[int, Split] = field(default_factory=dict)
    overlap: pd.DataFrame | None = None


def both_unseen(settings: Settings, cold: DrugCold) -> BothUnseen:
    """§4: per seed, the split that keeps a pair only when both drugs fall in one part (checked: no
    test drug in training); the prior on every seed, gradient boosting on ``seed``'s."""
    res = BothUnseen()
    for s in settings.seeds:
        res.splits[s] = make_pair_split(cold.ddi_unique, "drug_cold_both", seed=s)
        check_cold_split(cold.ddi_unique, res.splits[s], unseen="both")
        rows, _ = run_baselines(cold.ddi_unique, res.splits[s], TASKS[DDI], settings, seed=s,
                                gin=False, gbm=s == settings.seed)  # fmt: skip
        _note_rows(res, rows, DDI, "drug_cold_both", s)
    res.overlap = split_overlap(cold.ddi_unique, res.splits[settings.seed])
    return res


@dataclass
class RegressionBaselines(Results):
    """§5: ``data`` / ``tasks`` (per set: its pairs, one row per measurement, and its
    `PairTask`), ``dedup`` (set x de-duplication counts), ``table`` (method x (set, split,
    metric), mean ± std over seeds), ``freesolv_gbm`` (FreeSolv's random split: gradient boosting's
    test RMSE per split seed on the pair features and on the solute's features alone, and the
    largest difference between the two models' predictions)."""

    data: dict[str, pd.DataFrame] = field(default_factory=dict)
    tasks: dict[str, PairTask] = field(default_factory=dict)
    dedup: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    freesolv_gbm: pd.DataFrame | None = None


def regression_baselines(settings: Settings) -> RegressionBaselines:
    """§5: each of ``regression_sets`` (a CSV file of pairs as well; one row per measurement, then
    ``reg_rows`` seeded rows) on random and grouped splits of every seed, and on unseen-solvent
    splits where the second molecule varies: the training mean and gradient boosting on each; the
    pair GIN on ``seed``'s split, on every seed for sets under 1,000 pairs, never for sets of
    10,000 or more. On FreeSolv's random splits gradient boosting also reads the solute alone."""
    seed = settings.seed
    res, dedup, per_seed = RegressionBaselines(), {}, []
    for name in settings.regression_sets:
        df, task, dedup[name] = load_regression_set(name, settings.reg_rows, seed)
        res.data[name], res.tasks[name] = df, task
        for key, value in dedup[name].items():
            res.add_row(name, "data", f"dedup: {key}", value, seed, "all")
        graphs = pair_graphs(df.smiles_1, df.smiles_2) if len(df) < LARGE_SET else None
        x = gbm_features(df, task, settings)
        hows = ("random", "grouped", "unseen_solvent")[: 3 if df.smiles_2.nunique() > 1 else 2]
        for how in hows:
            for s in settings.seeds:
                split = pair_split(df, how, s)
                gin = graphs is not None and (s == seed or len(df) < SMALL_SET)
                rows, preds = run_baselines(df, split, task, settings, seed=s, gin=gin,
                                            graphs=graphs if gin else None, features=x)  # fmt: skip
                _note_rows(res, rows, name, how, s)
                if name == FREESOLV and how == "random":
                    per_seed.append(solute_only(df, split, task, settings, s, preds[GBM]))
    res.dedup = pd.DataFrame(dedup).T
    if per_seed:
        res.freesolv_gbm = pd.DataFrame(per_seed)
        for r in res.freesolv_gbm.itertuples():
            note = "solute features only; max |difference| to the pair model's predictions"
            res.add_row(FREESOLV, f"{GBM} (solute only)", "rmse", r.rmse_solute, r.seed, "random",
                        note)  # fmt: skip
            res.add_row(FREESOLV, f"{GBM} (solute only)", "max |prediction difference|",
                        r.max_difference, r.seed, "random", note)  # fmt: skip
    frame = res.frame()
    shown = frame[frame.metric.isin(["rmse", "mae"]) & (frame.method != "data")]
    res.table = mean_pm_std(shown, index="method", columns=("dataset", "split", "metric"))
    return res


# ============================================================== §6: the LM tasks and the LM


def _lm_sets(settings: Settings, cold: DrugCold, both: BothUnseen,
             regression: RegressionBaselines) -> dict[str, LMSet]:  # fmt: skip
    """Per LM task its `LMSet`. DDI: the both-unseen split of ``seed``, scored on its test part
    (both drugs unseen) and on the pairs it leaves out between train and test (one drug unseen,
    `molkit.data.pairs.straddling_pairs`). FreeSolv: a grouped split whose test part holds
    ``freesolv_lm_test`` of the set. ``role_set``: its ``role_split`` split of ``seed``."""
    seed, ddi = settings.seed, cold.ddi_unique
    split = both.splits[seed]
    tests = {LM_BOTH_UNSEEN: split["test"], LM_ONE_UNSEEN: straddling_pairs(ddi, split)}
    out = {DDI: lm_set(settings, TASKS[DDI], ddi, split, tests, "drug_cold_both")}
    t = settings.freesolv_lm_test
    for name, how, fractions in (
        (FREESOLV, "grouped", (0.9 - t, 0.1, t)),
        (settings.role_set, settings.role_split, (0.8, 0.1, 0.1)),
    ):
        df = regression.data[name]
        sp = pair_split(df, how, seed, fractions)
        out[name] = lm_set(settings, regression.tasks[name], df, sp,
                            {f"{how} (LM test pairs)": sp["test"]}, how)  # fmt: skip
    return out


@dataclass
class LMStage(Results):
    """§6: ``session`` (`PairLMSession`), ``sets`` (task -> `LMSet`), ``sizes`` (pairs per task
    and part), ``pretrain_report`` (None without pre-training), ``example_target`` (a pre-training
    target), ``memory`` (the memory line, checked before the LM loaded)."""

    session: PairLMSession | None = None
    sets: dict[str, LMSet] = field(default_factory=dict)
    sizes: pd.DataFrame | None = None
    pretrain_report: object = None
    example_target: str = ""
    memory: str = ""
    prompt_lengths: pd.DataFrame | None = None


def pair_pretraining(
    settings: Settings,
    cold: DrugCold,
    both: BothUnseen,
    regression: RegressionBaselines,
    workdir: str | None = None,
) -> LMStage:
    """§6: the LM tasks' data (`_lm_sets`; the same pairs for every variant), the GIN behind the
    graph tokens (attribute masking on the LM tasks' training molecules only, then frozen), the LM
    (`molkit.models.lm.resolve_lm`: in smoke a tiny random Llama with a tokenizer trained on these
    prompts, saved under ``workdir``, default a new temporary folder) and, when
    ``lm_pretrain_pairs`` > 0, MolTC's pair pre-training (with graph tokens, and without them for
    the SMILES-only arm). Before the LM loads (a named LM: before the GIN trains), `lm_memory`
    checks that it fits, raising `molkit.models.lm.memory.InsufficientMemoryError` when not."""
    from molkit.models.lm import SMOKE_LM, resolve_lm

    seed = settings.seed
    res = LMStage(sets=_lm_sets(settings, cold, both, regression))
    sizes = []
    for name, s in res.sets.items():
        parts = {
            "training part": s.full_train,
            "LM training pairs": s.train,
            "LM validation pairs": s.valid,
            **{f"test: {k}": v for k, v in s.tests.items()},
        }
        sizes += [(name, part, len(frame)) for part, frame in parts.items()]  # fmt: skip
    res.sizes = pd.DataFrame(sizes, columns=["task", "part", "pairs"]).set_index(["task", "part"])
    for (name, part), n in res.sizes.pairs.items():
        res.add_row(name, "data", f"LM pairs: {part}", n, seed, "LM")
    train_molecules = sorted(
        {m for s in res.sets.values() for m in [*s.train.smiles_1, *s.train.smiles_2]}
    )
    # a named LM is checked before the GIN trains; the smoke LM once it is written
    memory = lm_memory(settings, settings.lm_model) if settings.lm_model != SMOKE_LM else None
    gin = pretrain_graph_encoder(
        train_molecules, hidden=settings.lm_gin_hidden, epochs=settings.lm_gin_epochs, seed=seed
    )
    corpus = list(DDI_ANSWERS)  # the smoke LM's tokenizer: training and validation text only
    for s in res.sets.values():
        for frame in (s.train, s.valid):
            corpus += task_prompts(s.task, frame, 8, settings.smiles_chars)
            corpus += task_answers(s.task, frame)
    with quiet_transformers():
        lm_path = resolve_lm(
            settings.lm_model, corpus, workdir or tempfile.mkdtemp(prefix="moltc_lm_"),
            vocab_size=384, hidden=64, layers=2, heads=4,
        )  # fmt: skip
    res.memory = memory or lm_memory(settings, lm_path)
    res.session = PairLMSession(lm_path, gin, settings, seed=seed)
    res.prompt_lengths = prompt_lengths(res.session.tokenizer, res.sets)
    for name, row in res.prompt_lengths.iterrows():
        for metric, value in row.items():
            res.add_row(name, "data", metric, value, seed, "LM", "MolTC prompts (8 graph tokens "
                        "a molecule), the LM training pairs")  # fmt: skip
    pool = sorted({m for s in res.sets.values() for m in s.train.smiles_1})
    if settings.lm_pretrain_pairs:
        res.pretrain_report = res.session.pretrain(pool, pool, settings.lm_pretrain_pairs)
        if SMILES_ONLY in (*settings.lm_variants, *settings.ddi_variants):
            res.session.pretrain(pool, pool, settings.lm_pretrain_pairs, graph_tokens=False)
        note = f"{settings.lm_pretrain_pairs} random pairs, {res.pretrain_report.tokens} tokens"
        res.add_row("pretraining", "MolTC pair pre-training", "train tokens/s",
                    res.pretrain_report.tokens_per_second, seed, note=note)  # fmt: skip
    res.example_target = pretrain_target(pool[0], pool[min(1, len(pool) - 1)])
    return res


# ============================================================== §7-9: MolTC in a language model


@dataclass
class LMSection(Results):
    """One LM task: ``runs`` (variant -> one `LMRun` per training seed), ``set_labels`` (test set
    -> how the text names it), ``trivial`` (test set -> (name, predictions) of the trivial
    baseline), ``context`` (test set -> {name: predictions} of the other baselines on the same
    pairs), ``tables`` (test set -> method x metric; an LM variant's row is its mean over seeds),
    ``training`` (variant x seed: the kept step, the readout chosen on validation and the
    validation figures), ``curves`` (every validation evaluation), ``cot_examples`` (MolTC's
    greedy answers on validation pairs beside the measured values, regression), ``labels`` (the
    sealed test labels) and ``y_test`` (the same labels, filled by the final scoring for the
    claims and figures)."""

    dataset: str = ""
    task: PairTask | None = None
    runs: dict[str, list[LMRun]] = field(default_factory=dict)
    set_labels: dict[str, str] = field(default_factory=dict)
    trivial: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    context: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    labels: dict[str, SealedLabels] = field(default_factory=dict)
    y_test: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    training: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    cot_examples: pd.DataFrame | None = None

    def predictions(self, set_name: str, variant: str, swapped: bool = False) -> np.ndarray:
        """(n_seeds, n_items): a variant's chosen readout on a test set, one row per training seed
        (``swapped``: on the swap rows with the molecules swapped)."""
        runs = self.runs[variant]
        return np.stack([r.tests[set_name].swapped if swapped else r.tests[set_name].y_pred
                         for r in runs])  # fmt: skip


def _lm_section(settings: Settings, stage: LMStage, dataset: str, names: Sequence[str],
                seeds: Callable[[str], Sequence[int]], max_epochs: float, labels: dict[str, str],
                baselines: Callable[[LMSet], tuple[dict, dict]], swap: Sequence[str] = ()
                ) -> LMSection:  # fmt: skip
    """Fine-tune each variant of ``names`` with each of its training seeds (``seeds(name)``) on
    ``dataset``'s `LMSet`
    (validated; at most ``max_epochs``), predict every test set (the variants in ``swap`` also
    swapped), then score everything once (`_score`). ``baselines(lm_set)`` gives the trivial and
    context baselines' test predictions."""
    lm_set = stage.sets[dataset]
    variants = lm_variants(bool(settings.lm_pretrain_pairs))
    trivial, context = baselines(lm_set)
    res = LMSection(dataset=dataset, task=lm_set.task, set_labels=labels, trivial=trivial,
                    context=context, labels=lm_set.labels)  # fmt: skip
    for name in names:
        res.runs[name] = [
            stage.session.run(
                name, variants[name], lm_set.task, lm_set.train, lm_set.valid, lm_set.tests,
                seed=seed, max_epochs=max_epochs, swap=list(lm_set.tests) if name in swap else (),
                swap_pairs=settings.swap_pairs,
            )
            for seed in seeds(name)
        ]  # fmt: skip
    _training_rows(res, lm_set)
    _score(res, lm_set, settings.seed)
    return res


def _training_rows(res: LMSection, lm_set: LMSet) -> None:
    """What each run chose on validation: its steps, kept step, speed, readout and validation
    figures (rows of split `LM_VALIDATION`; ``training`` and ``curves`` for the notebook)."""
    regression = lm_set.task.kind == "regression"
    note = f"{len(lm_set.train)} training pairs, {len(lm_set.valid)} validation pairs"
    table, curves = [], []
    for name, runs in res.runs.items():
        for run in runs:
            rep = run.report
            best = rep.best_row or {}
            figures = {
                "optimiser steps": rep.steps, "kept step": rep.best_step or 0,
                "kept epoch": best.get("epoch", np.nan),
                "validation loss (kept)": best.get("valid_loss", np.nan),
                "validation loss (start)": rep.curve[0]["valid_loss"] if rep.curve else np.nan,
                "train tokens/s": rep.tokens_per_second,
                **{f"valid {'rmse' if regression else 'roc_auc'} ({k})": v
                   for k, v in run.valid_scores.items()},
            }  # fmt: skip
            if regression:
                figures["readout: expected value"] = float(run.readout == EXPECTED_VALUE)
                greedy = run.valid.readouts[GREEDY]  # validation reads both readouts
                figures["valid distinct answers (greedy)"] = float(len(np.unique(greedy)))
                figures["valid unparsed answers (greedy)"] = float(run.valid.n_unparsed)
            for metric, value in figures.items():
                res.add_row(res.dataset, name, metric, value, run.seed, LM_VALIDATION, note)
            table.append({"variant": name, "seed": run.seed, "readout": run.readout,
                          "training": rep.summary(), **figures})  # fmt: skip
            curves.append(rep.curve_frame().assign(variant=name, seed=run.seed))
    res.training = pd.DataFrame(table)
    res.curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if regression and "MolTC" in res.runs and res.runs["MolTC"][0].valid.texts:
        run, frame = res.runs["MolTC"][0], lm_set.valid
        y = frame[lm_set.task.target].to_numpy(dtype=float)
        shown = zip(frame.smiles_1, frame.smiles_2, y, run.valid.texts, strict=False)
        rows = [(a[:28], b[:16], f"{v:.2f}", _printable(t[:90])) for a, b, v, t in shown]
        res.cot_examples = pd.DataFrame(
            rows[:6], columns=[*lm_set.task.names, "measured", "generated (MolTC)"]
        )


def _score(res: LMSection, lm_set: LMSet, seed: int) -> None:
    """The final scoring: every test set's labels are read here, once, to score the trivial and
    context baselines and each run's chosen readout (and its swap test); rows and ``tables``
    (variant rows: mean over seeds)."""
    kind = lm_set.task.kind
    with final_scoring():
        for set_name, sealed in lm_set.labels.items():
            y = res.y_test[set_name] = sealed.read()
            note = f"{len(y)} test pairs"
            table = {}
            shown = dict([res.trivial[set_name]], **res.context.get(set_name, {}))
            for method, pred in shown.items():
                table[method] = task_metrics(kind, y, pred)
                for metric, value in table[method].items():
                    res.add_row(res.dataset, method, metric, value, seed, set_name, note)
            for name, runs in res.runs.items():
                per_seed = [_run_metrics(kind, y, run.tests[set_name]) for run in runs]
                for run, metrics in zip(runs, per_seed, strict=True):
                    for metric, value in metrics.items():
                        res.add_row(res.dataset, name, metric, value, run.seed, set_name, note)
                table[name] = {**pd.DataFrame(per_seed).mean().to_dict(), "seeds": len(runs)}
            res.tables[set_name] = pd.DataFrame(table).T


def _printable(text: str) -> str:
    """A generated answer as a table shows it: characters that cannot be printed as "?"."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _run_metrics(kind: str, y: np.ndarray, pred) -> dict[str, float]:
    """One run's test figures on one set: the chosen readout's metrics (the test pairs are read
    with that readout only; the greedy answer's RMSE, distinct and unparsed answers are validation
    figures, `_training_rows`), the swap test, the speed."""
    out = task_metrics(kind, y, pred.y_pred)
    if pred.swap_rows is not None:  # the molecules trade places (and roles) in the prompt
        rows = pred.swap_rows
        out.update(swap_consistency(kind, pred.y_pred[rows], pred.swapped))
        out["swap pairs"] = float(len(rows))
    out["inference pairs/s"] = pred.pairs_per_s
    return out


def ddi_lm(settings: Settings, stage: LMStage) -> LMSection:
    """§7: ``ddi_variants`` fine-tuned on the DDI training pairs of the both-unseen split
    (``ddi_lm_seeds`` training seeds each), scored on both test sets (MolTC also with the drugs
    swapped where ``ddi_swap``). Trivial baselines: chance (a constant score) where both drugs are
    unseen, the per-drug prior fitted on the LM's own training pairs where one drug was seen; the
    prior fitted on every training pair and gradient boosting on the same pairs beside them."""

    def baselines(lm_set: LMSet):
        def prior(frame: pd.DataFrame):
            pairs = list(zip(frame.smiles_1, frame.smiles_2, strict=True))
            return DrugPrior().fit(pairs, frame[lm_set.task.target])

        priors = {PRIOR_LM: prior(lm_set.train), PRIOR_ALL: prior(lm_set.full_train)}
        gbm = gbm_on_test_sets(
            settings, lm_set.task, lm_set.full_train, lm_set.full_valid, lm_set.tests
        )
        trivial, context = {}, {}
        for name, test in lm_set.tests.items():
            pairs = list(zip(test.smiles_1, test.smiles_2, strict=True))
            p = {k: m.predict_proba(pairs)[:, 1] for k, m in priors.items()}
            if name == LM_BOTH_UNSEEN:
                trivial[name] = (CHANCE, np.full(len(test), 0.5))
                context[name] = {**p, GBM: gbm[name]}
            else:
                trivial[name] = (PRIOR_LM, p[PRIOR_LM])
                context[name] = {PRIOR_ALL: p[PRIOR_ALL], GBM: gbm[name]}
        return trivial, context

    labels = {LM_BOTH_UNSEEN: "both drugs unseen", LM_ONE_UNSEEN: "one drug unseen"}
    return _lm_section(settings, stage, DDI, settings.ddi_variants,
                       functools.partial(settings.seeds_of, "ddi"), settings.ddi_max_epochs,
                       labels,
                       baselines, swap=("MolTC",) if settings.ddi_swap else ())  # fmt: skip


def _regression_baselines(settings: Settings):
    def baselines(lm_set: LMSet):
        mean = float(lm_set.train[lm_set.task.target].to_numpy(dtype=float).mean())  # the LM's
        gbm = gbm_on_test_sets(
            settings, lm_set.task, lm_set.full_train, lm_set.full_valid, lm_set.tests
        )
        trivial = {k: (MEAN, np.full(len(t), mean)) for k, t in lm_set.tests.items()}
        return trivial, {k: {GBM: gbm[k]} for k in lm_set.tests}

    return baselines


def freesolv_lm(settings: Settings, stage: LMStage) -> LMSection:
    """§8: ``lm_variants`` fine-tuned on FreeSolv's LM training part, MolTC with ``lm_seeds``
    training seeds and the other arms with ``control_lm_seeds`` (at most ``freesolv_max_epochs``),
    scored on its test part (unseen solutes). Trivial
    baseline: the mean of the LM's training targets; gradient boosting on the same pairs beside it.
    Water is always the solvent, so no swap test here (see §9)."""
    lm_set = stage.sets[FREESOLV]
    labels = {k: k.replace(" (LM test pairs)", " split") for k in lm_set.tests}
    return _lm_section(settings, stage, FREESOLV, settings.lm_variants,
                       functools.partial(settings.seeds_of, "freesolv"),
                       settings.freesolv_max_epochs, labels,
                       _regression_baselines(settings))  # fmt: skip


def role_lm(settings: Settings, stage: LMStage) -> LMSection:
    """§9: ``role_variants`` (MolTC's role-separated projectors vs one shared projector) on
    ``role_set`` split by ``role_split`` (default: unseen solvents, so the second molecule must be
    read), ``role_lm_seeds`` training seeds each (at most ``role_max_epochs``), each also scored
    with solute and solvent swapped on ``swap_pairs`` test pairs: a model that reads the roles
    answers differently, and worse, when they trade places."""
    lm_set = stage.sets[settings.role_set]
    labels = {k: k.replace(" (LM test pairs)", " split").replace("_", " ") for k in lm_set.tests}
    names = settings.role_variants
    return _lm_section(settings, stage, settings.role_set, names,
                       functools.partial(settings.seeds_of, "role"),
                       settings.role_max_epochs, labels, _regression_baselines(settings),
                       swap=names)  # fmt: skip


#: The Practical sections in the notebook's order (each takes the settings first).
SECTIONS: tuple[Callable[..., Results], ...] = (
    ddi_upstream, upstream_baselines, drug_cold, both_unseen, regression_baselines,
    pair_pretraining, ddi_lm, freesolv_lm, role_lm,
)  # fmt: skip
