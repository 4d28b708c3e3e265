"""The 04_moltc notebook's experiments: typed `Settings` per profile and one function per
Practical section, each returning `molkit.methods.experiment.Results` (rows, artefacts, claims).

Sections, in the notebook's order (each takes the settings and what earlier sections returned):

1. `ddi_upstream`: ChCh-Miner, its upstream split and what each part shares with training.
2. `upstream_baselines`: the no-chemistry prior and Morgan + gradient boosting on that split.
3. `drug_cold`: de-duplicated pairs, seeded drug-cold splits, every baseline (pair GIN included).
4. `both_unseen`: the stricter split where no test pair shares a drug with training.
5. `regression_baselines`: the regression pair sets, random and grouped splits.
6. `pair_pretraining`: the frozen GIN, the LM subsets and MolTC's pair pre-training.
7. `ddi_lm`: MolTC and the SMILES-only LM on drug-cold DDI (claims vs the prior, vs SMILES only).
8. `freesolv_lm`: every LM variant on FreeSolv (claims vs the training mean, graph tokens, CoT).

`results_table` and `findings` read the joined results for the Results and Discussion sections.
The functions are pure: they never write the record (the notebook calls `molkit.record_results`).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.data.pairs import (
    check_cold_split,
    deduplicate_pairs,
    drug_cold_split,
    make_pair_split,
    split_overlap,
)
from molkit.data.splits import Split, subsample
from molkit.eval.metrics import mean_pm_std, regression_metrics, roc_auc_fast, task_metrics
from molkit.methods.baselines import DrugPrior, fit_gradient_boosting, training_mean
from molkit.methods.experiment import Claim, Results, paired_claim
from molkit.methods.experiment import Settings as BaseSettings
from molkit.methods.moltc.lm import PairLMSession
from molkit.methods.moltc.method import (
    DDI_ANSWERS,
    LM_VARIANTS,
    TASKS,
    PairTask,
    pretrain_graph_encoder,
    pretrain_target,
    swap_consistency,
    task_answers,
    task_prompts,
)
from molkit.methods.moltc.pair_gin import fit_pair_gin, pair_fingerprints, pair_graphs

__all__ = [
    "PAPER",
    "Settings",
    "both_unseen",
    "ddi_lm",
    "ddi_upstream",
    "drug_cold",
    "findings",
    "freesolv_lm",
    "load_pairs",
    "pair_pretraining",
    "regression_baselines",
    "results_table",
    "run_baselines",
    "upstream_baselines",
]

PAPER = "MolTC (arXiv 2402.03781)"
DDI = "chchminer"
FREESOLV = "freesolv-pairs"
PRIOR = "per-drug prior (no chemistry)"
MEAN = "training mean"
GBM = "Morgan + gradient boosting"
PAIR_GIN = "pair GIN"
SMILES_ONLY = "SMILES only (same LM, no graph tokens)"
#: The LM variants fine-tuned on DDI (the first is scored with the molecules swapped too).
DDI_VARIANTS = ("MolTC", SMILES_ONLY)
#: The FreeSolv variants also scored with the molecules swapped.
SWAPPED_ON_FREESOLV = ("MolTC", SMILES_ONLY)
#: What `split_overlap` columns the upstream-split section records.
OVERLAP_METRICS = (
    "pairs", "repeated_conflicting", "pairs_in_train", "opposite_label_in_train", "new_molecule",
    "positive_rate",
)  # fmt: skip
#: Sets at least this large get the pair GIN nowhere and the other baselines on one seed only.
LARGE_SET = 10000
#: Sets smaller than this get gradient boosting and the pair GIN on every seed.
SMALL_SET = 1000
#: MolTC's FreeSolv RMSE as a third-party summary of the paper's tables gives it (unverified).
PUBLISHED_FREESOLV_RMSE = 0.684


@dataclass(frozen=True)
class Settings(BaseSettings):
    """The notebook's sizes. Defaults are the ``default`` profile; ``PROFILES`` holds the values
    that differ. ``seed`` is the notebook's seed (the LM section and the single-seed baselines use
    its split); ``seeds`` the seeds of the baseline splits."""

    seed: int = 0
    ddi_rows: int | None = None  # seeded subsample of ChCh-Miner rows; None: all rows
    reg_rows: int | None = None  # seeded subsample of each regression set
    regression_sets: tuple[str, ...] = (
        "freesolv-pairs", "combisolu", "chromophore-abs", "chromophore-emi", "chromophore-life",
    )  # fmt: skip
    n_bits: int = 1024  # per molecule (2 x n_bits features)
    gbm_iter: int = 200  # early stopping on the validation part usually ends sooner
    gbm_lr: float = 0.2
    gin_hidden: int = 64  # the pair-GIN baseline (the LM's GIN is 5 x lm_gin_hidden)
    gin_layers: int = 3
    gin_epochs: int = 2
    gin_min_steps: int = 150  # small sets get more epochs (FreeSolv: ~16 batches of 32 an epoch)
    seeds: tuple[int, ...] = (0, 1, 2)
    lm_model: str = "smollm2-135m-instruct"  # registry name, folder or HF id; or SMOKE_LM
    lm_gin_hidden: int = 300
    lm_gin_epochs: int = 1
    projector_layers: int = 2
    projector_hidden: int = 384  # minilm-l6's width, so its layers can initialise the projector
    projector_heads: int = 12
    lm_pretrain_pairs: int = 256
    lm_train_pairs: int | None = 256  # ~64 optimiser steps per variant; None: the training part
    lm_test_pairs: int | None = 64
    smiles_chars: int = 24
    max_new_tokens: int = 34  # the longest FreeSolv CoT target is 29 tokens + EOS
    num_beams: int = 1  # 5: the official decoding
    lm_lr: float = 1e-3
    lm_batch_size: int = 4

    PROFILES = {
        "smoke": {
            "ddi_rows": 1200, "reg_rows": 300, "regression_sets": ("freesolv-pairs", "combisolu"),
            "n_bits": 128, "gbm_iter": 20, "gin_hidden": 16, "gin_layers": 2, "gin_epochs": 1,
            "gin_min_steps": 0, "seeds": (0,), "lm_model": "tiny-random-llama",
            "lm_gin_hidden": 32, "projector_layers": 1, "lm_pretrain_pairs": 4,
            "lm_train_pairs": 8, "lm_test_pairs": 4, "smiles_chars": 16, "max_new_tokens": 8,
            "lm_lr": 5e-4,
        },
        "default": {},
        "full": {
            "n_bits": 2048, "gbm_iter": 1000, "gbm_lr": 0.1, "gin_hidden": 300, "gin_layers": 5,
            "gin_epochs": 100, "gin_min_steps": 2000, "lm_model": "facebook/galactica-1.3b",
            "lm_gin_epochs": 20, "projector_layers": 6, "lm_pretrain_pairs": 20000,
            "lm_train_pairs": None, "lm_test_pairs": None, "smiles_chars": 256,
            "max_new_tokens": 40, "num_beams": 5, "lm_lr": 1e-4, "lm_batch_size": 16,
        },
    }  # fmt: skip


# ============================================================== data and baselines


def load_pairs(name: str, rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A registered pair dataset (``molkit.data.load_dataset``) without rows whose target is
    missing, optionally a seeded subsample of ``rows`` rows (`molkit.data.subsample`). Rows with
    invalid SMILES are dropped by the loader, which reports them in ``df.attrs['invalid']``."""
    from molkit.data import load_dataset

    task = TASKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_dataset(name)
    df = df[np.isfinite(df[task.target].to_numpy(dtype=float))].reset_index(drop=True)
    return df.iloc[subsample(len(df), rows, seed)].reset_index(drop=True)


def run_baselines(
    df: pd.DataFrame,
    split: Split,
    task: PairTask,
    settings: Settings,
    seed: int = 0,
    gin: bool = True,
    graphs: Sequence | None = None,
    gbm: bool = True,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every baseline on one split: the no-chemistry per-drug prior (classification,
    `molkit.methods.baselines.DrugPrior`) or the training mean (regression), with ``gbm`` Morgan
    bits of both molecules + gradient boosting (``task.extra`` context columns appended), and with
    ``gin`` the pair GIN (symmetric head for DDI, role-aware otherwise; pass ``graphs =
    pair_graphs(...)`` of ``df`` to reuse them across splits). Returns tidy rows (method, metric,
    value; ``seconds`` of wall time included) and the test predictions per method."""
    y = df[task.target].to_numpy(dtype=float)
    tr, va, te = split["train"], split["valid"], split["test"]
    a, b = df["smiles_1"].tolist(), df["smiles_2"].tolist()
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if task.kind == "classification":
        prior = DrugPrior().fit([(a[i], b[i]) for i in tr], y[tr])
        preds[PRIOR] = prior.predict_proba([(a[i], b[i]) for i in te])[:, 1]
    else:
        mean = training_mean("regression").fit(np.zeros((len(tr), 1)), y[tr])
        preds[MEAN] = mean.predict(np.zeros((len(te), 1)))
    seconds[next(iter(preds))] = time.perf_counter() - start
    if gbm:
        start = time.perf_counter()
        extra = df[list(task.extra)].to_numpy(dtype=float) if task.extra else None
        x = pair_fingerprints(a, b, n_bits=settings.n_bits, extra=extra)
        model = fit_gradient_boosting(
            x[tr], y[tr], x[va], y[va], task.kind, settings.gbm_iter, settings.gbm_lr, seed
        )
        if task.kind == "classification":
            preds[GBM] = model.predict_proba(x[te])[:, 1]
        else:
            preds[GBM] = model.predict(x[te])
        seconds[GBM] = time.perf_counter() - start
    if gin:
        start = time.perf_counter()
        graphs = pair_graphs(a, b) if graphs is None else graphs
        if len(graphs) != len(df):
            raise ValueError(
                f"{len(graphs)} pair graphs for {len(df)} rows; pass "
                "graphs=pair_graphs(df.smiles_1, df.smiles_2)"
            )
        fitted = fit_pair_gin(
            [graphs[i] for i in tr], y[tr], [graphs[i] for i in va], y[va], task.kind,
            combine="symmetric" if task.kind == "classification" else "concat",
            hidden=settings.gin_hidden, num_layers=settings.gin_layers,
            epochs=settings.gin_epochs, batch_size=int(np.clip(len(tr) // 16, 32, 256)),
            patience=3, seed=seed, progress=progress, min_steps=settings.gin_min_steps,
        )  # fmt: skip
        preds[PAIR_GIN] = fitted.predict([graphs[i] for i in te])
        seconds[PAIR_GIN] = time.perf_counter() - start
    rows = [
        {"method": m, "metric": k, "value": v}
        for m, p in preds.items()
        for k, v in {**task_metrics(task.kind, y[te], p), "seconds": seconds[m]}.items()
    ]
    return pd.DataFrame(rows), preds


def _add_baselines(res: Results, rows: pd.DataFrame, dataset: str, split: str, seed: int) -> None:
    """The test metrics first, then the wall times (as the record has always listed them)."""
    for note, part in (
        ("test part", rows[rows.metric != "seconds"]),
        ("baseline wall time (s)", rows[rows.metric == "seconds"]),
    ):
        for r in part.itertuples():
            res.add_row(dataset, r.method, r.metric, r.value, seed=seed, split=split, note=note)


def _pivot(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.pivot_table(index="method", columns="metric", values="value", sort=False)


def _require_seed(settings: Settings) -> None:
    if settings.seed not in settings.seeds:
        raise ValueError(
            f"seed {settings.seed} is not among seeds {settings.seeds}: the single-seed baselines "
            "and the LM section use the split of `seed`"
        )


def ddi_upstream(settings: Settings) -> Results:
    """§1: ChCh-Miner (``ddi_rows`` seeded rows), its upstream split and, per part, what it shares
    with training (`molkit.data.pairs.split_overlap`). Artefacts: ``ddi``, ``split``,
    ``overlap``."""
    ddi = load_pairs(DDI, rows=settings.ddi_rows, seed=settings.seed)
    split = make_pair_split(ddi, "upstream")
    overlap = split_overlap(ddi, split)
    res = Results(artefacts={"ddi": ddi, "split": split, "overlap": overlap})
    for row in overlap.itertuples():
        for metric in OVERLAP_METRICS:
            value = getattr(row, metric)
            res.add_row(DDI, "data", f"{row.part}: {metric}", value, settings.seed, "upstream")
    return res


def upstream_baselines(settings: Settings, data: Results) -> Results:
    """§2: the per-drug prior and Morgan + gradient boosting on the upstream split of §1.
    Artefacts: ``table`` (method x metric)."""
    ddi, split = data.artefacts["ddi"], data.artefacts["split"]
    rows, preds = run_baselines(ddi, split, TASKS[DDI], settings, seed=settings.seed, gin=False)
    res = Results(artefacts={"table": _pivot(rows), "preds": preds})
    _add_baselines(res, rows, DDI, "upstream", settings.seed)
    return res


def drug_cold(settings: Settings, data: Results) -> Results:
    """§3: unordered pairs de-duplicated (conflicting labels dropped), one seeded drug-cold split
    per seed (checked cold), the prior on every seed, gradient boosting and the pair GIN on
    ``seed``'s. Artefacts: ``ddi_unique``, ``dedup``, ``splits``, ``preds`` (``seed``'s test
    part), ``y_test``, ``overlap``."""
    _require_seed(settings)
    seed = settings.seed
    ddi_unique, report = deduplicate_pairs(data.artefacts["ddi"])
    res = Results()
    for key, value in report.items():
        res.add_row(DDI, "data", f"dedup: {key}", value, seed, "drug_cold")
    graphs = pair_graphs(ddi_unique.smiles_1, ddi_unique.smiles_2)
    splits, preds = {}, {}
    for s in settings.seeds:
        splits[s] = drug_cold_split(ddi_unique, (0.8, 0.1, 0.1), seed=s)
        check_cold_split(ddi_unique, splits[s])
        rows, p = run_baselines(
            ddi_unique, splits[s], TASKS[DDI], settings, seed=s, gin=s == seed,
            graphs=graphs if s == seed else None, gbm=s == seed,
        )  # fmt: skip
        _add_baselines(res, rows, DDI, "drug_cold", s)
        if s == seed:
            preds = p
    y_test = ddi_unique[TASKS[DDI].target].to_numpy()[splits[seed]["test"]]
    res.artefacts.update(
        ddi_unique=ddi_unique, dedup=report, splits=splits, preds=preds, y_test=y_test,
        overlap=split_overlap(ddi_unique, splits[seed]),
    )  # fmt: skip
    return res


def both_unseen(settings: Settings, cold: Results) -> Results:
    """§4: per seed, the split that keeps a pair only when both drugs fall in one part (checked:
    no test drug in training); the prior on every seed, gradient boosting on ``seed``'s.
    Artefacts: ``splits``, ``overlap``."""
    _require_seed(settings)
    ddi_unique = cold.artefacts["ddi_unique"]
    res, splits = Results(), {}
    for s in settings.seeds:
        splits[s] = make_pair_split(ddi_unique, "drug_cold_both", seed=s)
        check_cold_split(ddi_unique, splits[s], unseen="both")
        rows, _ = run_baselines(
            ddi_unique, splits[s], TASKS[DDI], settings, seed=s, gin=False, gbm=s == settings.seed
        )
        _add_baselines(res, rows, DDI, "drug_cold_both", s)
    res.artefacts.update(splits=splits, overlap=split_overlap(ddi_unique, splits[settings.seed]))
    return res


def regression_baselines(settings: Settings) -> Results:
    """§5: each of ``regression_sets`` (``reg_rows`` seeded rows) on random and grouped splits:
    the training mean on every seed; gradient boosting and the pair GIN on ``seed``'s split, and
    on every seed for sets under `SMALL_SET` pairs; sets of `LARGE_SET` pairs or more on one seed
    and without the pair GIN. Artefacts: ``data``, ``splits`` ((name, how, seed) -> split),
    ``preds`` ((name, how) -> ``seed``'s test predictions), ``y_test`` (the same parts' labels),
    ``table``."""
    _require_seed(settings)
    seed = settings.seed
    res = Results()
    data, splits, preds, y_test = {}, {}, {}, {}
    for name in settings.regression_sets:
        task = TASKS[name]
        data[name] = df = load_pairs(name, rows=settings.reg_rows, seed=seed)
        graphs = pair_graphs(df.smiles_1, df.smiles_2) if len(df) < LARGE_SET else None
        seeds = settings.seeds if len(df) < LARGE_SET else settings.seeds[:1]
        for how in ("random", "grouped"):
            for s in seeds:
                split = splits[name, how, s] = make_pair_split(df, how, seed=s)
                heavy = s == seed or len(df) < SMALL_SET
                rows, p = run_baselines(
                    df, split, task, settings, seed=s,
                    gin=heavy and graphs is not None, graphs=graphs if heavy else None, gbm=heavy,
                )  # fmt: skip
                _add_baselines(res, rows, name, how, s)
                if s == seed:
                    preds[name, how] = p
                    y_test[name, how] = df[task.target].to_numpy(dtype=float)[split["test"]]
    frame = res.frame()
    shown = frame[frame.metric.isin(["rmse", "mae"])]
    table = mean_pm_std(shown, index="method", columns=("dataset", "split", "metric"))
    res.artefacts.update(data=data, splits=splits, preds=preds, y_test=y_test, table=table)
    return res


# ============================================================== MolTC in a language model


def _budget(df: pd.DataFrame, idx: np.ndarray, n: int | None, seed: int) -> pd.DataFrame:
    """The rows ``idx`` of ``df``, or a seeded sample of ``n`` of them (sorted)."""
    idx = np.asarray(idx)
    if n is not None and n < len(idx):
        idx = np.sort(idx[subsample(len(idx), n, seed)])
    return df.iloc[idx].reset_index(drop=True)


def pair_pretraining(
    settings: Settings, cold: Results, regression: Results, workdir: str | None = None
) -> Results:
    """§6: the GIN behind the graph tokens (attribute masking on the training molecules of the
    drug-cold DDI split and the grouped FreeSolv split of ``seed``, then frozen), the LM subsets
    (``lm_train_pairs`` / ``lm_test_pairs`` seeded pairs of those splits, the same for every
    variant), the LM (`molkit.models.lm_training.resolve_lm`: the smoke LM is a tiny random Llama
    with a tokenizer trained on these prompts, saved under ``workdir``, default a new temporary
    folder), and MolTC's pair pre-training on ``lm_pretrain_pairs`` random pairs.
    Artefacts: ``session`` (`PairLMSession`, used by §7 and §8), ``lm_sets`` (dataset ->
    (train, test)), ``report``, ``example_target``."""
    from molkit.models.lm_training import resolve_lm

    seed = settings.seed
    if FREESOLV not in regression.artefacts["data"]:
        raise ValueError(f"the LM section fine-tunes on {FREESOLV}: keep it in regression_sets")
    ddi_unique, ddi_split = cold.artefacts["ddi_unique"], cold.artefacts["splits"][seed]
    fs = regression.artefacts["data"][FREESOLV]
    fs_split = regression.artefacts["splits"][FREESOLV, "grouped", seed]
    train_molecules = sorted(
        set(ddi_unique.smiles_1.iloc[ddi_split["train"]])
        | set(ddi_unique.smiles_2.iloc[ddi_split["train"]])
        | set(fs.smiles_1.iloc[fs_split["train"]])
    )
    gin = pretrain_graph_encoder(
        train_molecules, hidden=settings.lm_gin_hidden, epochs=settings.lm_gin_epochs, seed=seed
    )
    n_train, n_test = settings.lm_train_pairs, settings.lm_test_pairs
    lm_sets = {
        name: (_budget(df, split["train"], n_train, seed), _budget(df, split["test"], n_test, seed))
        for name, df, split in ((DDI, ddi_unique, ddi_split), (FREESOLV, fs, fs_split))
    }
    corpus = []
    for key, (train, _) in lm_sets.items():
        task = TASKS[key]
        corpus += task_prompts(task, train, 8, settings.smiles_chars) + task_answers(task, train)
    workdir = workdir or tempfile.mkdtemp(prefix="moltc_lm_")
    lm_path = resolve_lm(
        settings.lm_model, corpus + list(DDI_ANSWERS), workdir, vocab_size=384, hidden=64,
        layers=2, heads=4,
    )  # fmt: skip
    session = PairLMSession(lm_path, gin, settings, seed=seed)
    pool = lm_sets[DDI][0].smiles_1.tolist() + lm_sets[FREESOLV][0].smiles_1.tolist()
    pre = session.pretrain(pool, pool, settings.lm_pretrain_pairs)
    res = Results(
        artefacts={
            "session": session, "lm_sets": lm_sets, "report": pre,
            "example_target": pretrain_target(pool[0], pool[1]),
        }
    )  # fmt: skip
    note = f"{settings.lm_pretrain_pairs} random pairs, {pre.tokens} tokens"  # no wall time: a key
    res.add_row("pretraining", "MolTC pair pre-training", "train tokens/s", pre.tokens_per_second,
                seed, note=note)  # fmt: skip
    return res


def _lm_runs(settings: Settings, pretraining: Results, dataset: str, names: Sequence[str],
             swapped: Sequence[str]) -> Results:  # fmt: skip
    """Fine-tune and score each variant of ``names`` on ``dataset``'s LM subsets; rows: the
    metrics, train tokens/s, inference pairs/s, the swap consistency (variants in ``swapped``) and
    the unparsed answers (regression). Artefacts: ``runs`` (name -> `PairLMSession.run` output),
    ``table`` (variant x metric)."""
    session = pretraining.artefacts["session"]
    train, test = pretraining.artefacts["lm_sets"][dataset]
    task = TASKS[dataset]
    split = "drug_cold" if task.kind == "classification" else "grouped"
    note = f"LM fine-tuned on {len(train)} pairs (1 epoch), scored on {len(test)} test pairs"
    res, runs, table = Results(), {}, {}
    for name in names:
        swap = name in swapped
        out = runs[name] = session.run(name, LM_VARIANTS[name], task, train, test, swap=swap)
        extra = {
            "train tokens/s": out["report"].tokens_per_second,
            "inference pairs/s": out["pairs_per_s"],
        }
        if swap:  # the molecules trade places (and roles) in the prompt
            extra.update(swap_consistency(task.kind, out["y_pred"], out["y_pred_swapped"]))
        if task.kind == "regression":
            extra["unparsed answers"] = out["n_unparsed"]
        table[name] = {**out["metrics"], **extra}
        for metric, value in table[name].items():
            res.add_row(dataset, name, metric, value, settings.seed, split, note)
    res.artefacts.update(runs=runs, table=pd.DataFrame(table).T)
    return res


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return regression_metrics(y, p)["rmse"]


def _compare(claim: str, paper_figure: str, y: np.ndarray, method: tuple[str, np.ndarray],
             baseline: tuple[str, np.ndarray], metric: str, seed: int) -> Claim:  # fmt: skip
    """`paired_claim` that ``method`` beats ``baseline`` on the same items (ROC-AUC: higher is
    better; RMSE: lower), the two scores in the detail."""
    score = roc_auc_fast if metric == "roc_auc" else _rmse
    a, b = score(y, method[1]), score(y, baseline[1])
    detail = f"{method[0]} {a:.3f} vs {baseline[0]} {b:.3f}"
    return paired_claim(
        PAPER, claim, paper_figure, y, method[1], baseline[1], score, metric,
        higher_is_better=metric == "roc_auc", seed=seed, detail=detail,
    )  # fmt: skip


def _claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    frame = Results(claims=list(claims)).claims_frame()
    return frame[["claim", "metric", "ours", "low", "high", "verdict", "n", "detail"]]


def ddi_lm(settings: Settings, pretraining: Results, cold: Results) -> Results:
    """§7: MolTC (graph tokens, pre-trained, role-separated projectors; also scored with the drugs
    swapped) and the same LM on SMILES only, fine-tuned on the drug-cold DDI subset. Claims, on
    the same LM test pairs (ROC-AUC): MolTC beats the no-chemistry prior (fitted on the whole
    training part) first, then the SMILES-only LM. Artefacts: ``runs``, ``table``,
    ``prior_pred``, ``vs_prior`` (every LM row against the prior)."""
    res = _lm_runs(settings, pretraining, DDI, DDI_VARIANTS, swapped=DDI_VARIANTS[:1])
    ddi_unique, train_idx = (
        cold.artefacts["ddi_unique"],
        cold.artefacts["splits"][settings.seed]["train"],
    )
    train = ddi_unique.iloc[train_idx]
    prior = DrugPrior().fit(list(zip(train.smiles_1, train.smiles_2, strict=True)), train.label)
    test = pretraining.artefacts["lm_sets"][DDI][1]
    prior_pred = prior.predict_proba(list(zip(test.smiles_1, test.smiles_2, strict=True)))[:, 1]
    runs, seed = res.artefacts["runs"], settings.seed
    y = runs["MolTC"]["y_true"]
    vs_prior = [
        _compare(f"{name} beats the no-chemistry prior (drug-cold DDI)",
                 "implied: MolTC beats every baseline (Table 1; no number in the summary)", y,
                 (name, runs[name]["y_pred"]), ("prior", prior_pred), "roc_auc", seed)
        for name in DDI_VARIANTS
    ]  # fmt: skip
    res.claims = [
        vs_prior[0],
        _compare("MolTC beats the same LM reading SMILES only (drug-cold DDI)",
                 "MolTC beats LLM baselines on SMILES (Table 1; no number in the summary)", y,
                 ("MolTC", runs["MolTC"]["y_pred"]), ("SMILES only", runs[SMILES_ONLY]["y_pred"]),
                 "roc_auc", seed),
    ]  # fmt: skip
    res.artefacts.update(
        prior_pred=prior_pred, vs_prior=_claims_table(vs_prior),
        lm_prior_roc_auc=roc_auc_fast(y, prior_pred),
    )  # fmt: skip
    return res


def freesolv_lm(settings: Settings, pretraining: Results) -> Results:
    """§8: every `LM_VARIANTS` entry fine-tuned on the grouped FreeSolv subset (MolTC and SMILES
    only also scored with solute and water swapped). Claims, on the same LM test pairs (RMSE,
    lower is better): MolTC beats the training mean of the LM training pairs first; graph tokens
    beat SMILES only (both without pre-training: one factor changes); the chain of thought beats
    a value-only target. Artefacts: ``runs``, ``table``, ``mean_pred``, ``vs_training_mean``
    (every variant), ``ablations`` (pre-training, role-separated projectors, MiniLM-initialised
    Q-Former), ``cot_examples``."""
    res = _lm_runs(settings, pretraining, FREESOLV, list(LM_VARIANTS), SWAPPED_ON_FREESOLV)
    runs, seed = res.artefacts["runs"], settings.seed
    train, test = pretraining.artefacts["lm_sets"][FREESOLV]
    y_train = train[TASKS[FREESOLV].target].to_numpy(dtype=float)
    mean_pred = training_mean("regression").fit(np.zeros((len(train), 1)), y_train)
    mean_pred = mean_pred.predict(np.zeros((len(test), 1)))
    y = runs["MolTC"]["y_true"]

    def pred(name: str) -> tuple[str, np.ndarray]:
        return name, runs[name]["y_pred"]

    summary = "not reported (the summary gives no FreeSolv number)"
    implied = "implied: MolTC beats every baseline (Table 2; no number in the summary)"
    vs_mean = [
        _compare(f"{name} beats the training mean (FreeSolv)", implied, y, pred(name),
                 (MEAN, mean_pred), "rmse", seed)
        for name in LM_VARIANTS
    ]  # fmt: skip
    ablations = [
        _compare("pair pre-training helps (FreeSolv)", summary, y, pred("MolTC"),
                 pred("MolTC, no pre-training"), "rmse", seed),
        _compare("role-separated projectors beat one shared projector (FreeSolv)", summary, y,
                 pred("MolTC"), pred("MolTC, shared projector"), "rmse", seed),
        _compare("a MiniLM-initialised Q-Former beats a random one (FreeSolv, no pre-training)",
                 summary, y, pred("MolTC, no pre-training"),
                 pred("MolTC, no pre-training, random Q-Former"), "rmse", seed),
    ]  # fmt: skip
    res.claims = [
        vs_mean[0],
        _compare("graph tokens beat SMILES only (FreeSolv, neither pre-trained)",
                 "graph tokens fix SMILES-only LMs' data use (Fig. 1; no number in the summary)",
                 y, pred("MolTC, no pre-training"), pred(SMILES_ONLY), "rmse", seed),
        _compare("the chain of thought (range, then value) beats a value-only target (FreeSolv)",
                 "CoT guides quantitative tasks (no number in the summary)", y, pred("MolTC"),
                 pred("MolTC, no CoT"), "rmse", seed),
    ]  # fmt: skip
    examples = test.head(6)
    out = runs["MolTC"]
    shown = zip(examples.smiles_1, out["y_true"], out["texts"], strict=False)  # the first six
    cot = pd.DataFrame(
        [(s[:28], f"{v:.2f}", t[:90]) for s, v, t in shown],
        columns=["solute", "measured", "generated"],
    )
    res.artefacts.update(
        mean_pred=mean_pred, vs_training_mean=_claims_table(vs_mean),
        ablations=_claims_table(ablations), cot_examples=cot,
        lm_mean_rmse=_rmse(y, mean_pred), lm_distinct_answers=len(set(out["y_pred"])),
        lm_test_pairs=len(y),
    )  # fmt: skip
    return res


# ============================================================== results and discussion

HEADLINE_METRICS = ("roc_auc", "accuracy", "f1", "mae", "rmse")


def results_table(res: Results) -> pd.DataFrame:
    """Every method and split: 'mean ± std' over seeds (one value where one seed ran) of the
    headline metrics; the data rows left out."""
    frame = res.frame()
    frame = frame[(frame.method != "data") & frame.metric.isin(HEADLINE_METRICS)]
    return mean_pm_std(frame, index="method", columns=("dataset", "split", "metric"))


def findings(res: Results, settings: Settings) -> list[str]:
    """The Discussion's statements, computed from the joined results of every section (``res``,
    the sum of their `Results`): one sentence each."""
    frame = res.frame()

    def mean_of(dataset: str, method: str, metric: str, split: str | None = None) -> float:
        r = frame[(frame.dataset == dataset) & (frame.method == method) & (frame.metric == metric)]
        r = r if split is None else r[r.split == split]
        return float(r.value.mean()) if len(r) else float("nan")

    def auc(method: str, split: str) -> float:
        return mean_of(DDI, method, "roc_auc", split)

    lines = [
        f"Upstream DDI split: train is {mean_of(DDI, 'data', 'train: positive_rate'):.0%} "
        f"positive, test {mean_of(DDI, 'data', 'test: positive_rate'):.0%}; "
        f"{mean_of(DDI, 'data', 'test: opposite_label_in_train'):.0f} test pairs occur in train "
        "with the opposite label.",
        f"Upstream DDI split: the no-chemistry prior reaches ROC-AUC {auc(PRIOR, 'upstream'):.3f}, "
        f"Morgan + GBM {auc(GBM, 'upstream'):.3f}.",
        f"Drug-cold split: prior {auc(PRIOR, 'drug_cold'):.3f}, Morgan + GBM "
        f"{auc(GBM, 'drug_cold'):.3f}, pair GIN {auc(PAIR_GIN, 'drug_cold'):.3f}.",
        f"Both drugs unseen: prior {auc(PRIOR, 'drug_cold_both'):.3f}, Morgan + GBM "
        f"{auc(GBM, 'drug_cold_both'):.3f}.",
    ]
    lm_auc = {name: mean_of(DDI, name, "roc_auc") for name in DDI_VARIANTS}
    if "lm_prior_roc_auc" in res.artefacts:
        lines.append(
            f"LM on the drug-cold subset: MolTC {lm_auc['MolTC']:.3f}, SMILES only "
            f"{lm_auc[SMILES_ONLY]:.3f} (prior on the same subset: "
            f"{res.artefacts['lm_prior_roc_auc']:.3f})."
        )
    for name in settings.regression_sets:
        gbm = {how: mean_of(name, GBM, "mae", how) for how in ("random", "grouped")}
        lines.append(
            f"{name}: Morgan + GBM MAE random {gbm['random']:.3g} vs grouped {gbm['grouped']:.3g} "
            f"(training mean, grouped: {mean_of(name, MEAN, 'mae', 'grouped'):.3g})."
        )
    fs_rows = frame[(frame.dataset == FREESOLV) & (frame.split == "grouped")]
    unparsed = fs_rows[fs_rows.metric == "unparsed answers"]
    if len(unparsed):
        counts = zip(unparsed.method, unparsed.value, strict=True)
        lines.append("Unparsed FreeSolv answers: " + ", ".join(f"{m}: {v:.0f}" for m, v in counts))
    swap = fs_rows[fs_rows.metric == "swap_mean_abs_change"]
    if len(swap):
        changes = zip(swap.method, swap.value, strict=True)
        lines.append(
            "Swap (FreeSolv, solute <-> water), mean |change| of the prediction: "
            + ", ".join(f"{m}: {v:.2f}" for m, v in changes)
        )
    agreement = mean_of(DDI, "MolTC", "swap_label_agreement")
    if np.isfinite(agreement):
        lines.append(
            f"DDI under swap (MolTC): label agreement {agreement:.2f}, mean |change| of "
            f"P(interact) {mean_of(DDI, 'MolTC', 'swap_mean_abs_change'):.3f}."
        )
    if "lm_mean_rmse" in res.artefacts:
        lines.append(
            f"For scale: the training mean on the same {res.artefacts['lm_test_pairs']} FreeSolv "
            f"test pairs has RMSE {res.artefacts['lm_mean_rmse']:.2f}; distinct MolTC answers: "
            f"{res.artefacts['lm_distinct_answers']}."
        )
    baselines = [mean_of(FREESOLV, m, "rmse", "grouped") for m in (GBM, PAIR_GIN)]
    best = min((v for v in baselines if np.isfinite(v)), default=float("nan"))
    lines.append(
        f"Published anchor (third-party summary, unverified): MolTC FreeSolv RMSE "
        f"{PUBLISHED_FREESOLV_RMSE}. Best baseline here (grouped split): {best:.2f}."
    )
    return lines
