"""Notebook 01's settings and one function per Practical section.

Sections: `load_data` (datasets and ground truth) · `ngram_texts` (group n-grams as text the LM
reads) · `benchmark` (IB fine-tuning, reduction, explainable model and calibration per dataset, with
the baselines on the same splits) · `explanation_scores` · `throughput` · `calibration_gain`. Each
takes the `Settings` (and what an earlier section returned) and returns `Results`; none writes the
record. The claims are paired bootstraps over the same test molecules, pooled over datasets and
seeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from molkit.data.explain import (
    EXPLAIN_DATASETS,
    GROUND_TRUTH_TYPES,
    group_type_enrichment,
    load_explain_dataset,
)
from molkit.eval.metrics import mean_pm_std
from molkit.methods.experiment import (
    UNDECIDED,
    Claim,
    Results,
    paired_claim,
    verdict_from_interval,
)
from molkit.methods.experiment import Settings as BaseSettings
from molkit.methods.molex.benchmark import (
    EXPLAINED_METHODS,
    READING_METRICS,
    DatasetRun,
    dataset_splits,
    measure_throughput,
    run_dataset,
    throughput_summary,
)
from molkit.methods.molex.method import classification_scores
from molkit.methods.molex.ngrams import atom_scores_from_ngrams, build_ngram_table
from molkit.models.lm import SMOKE_LM

__all__ = [
    "ABLATION_METHODS",
    "EXPLAIN_METHODS",
    "MAIN_METHODS",
    "PAPER",
    "PAPER_CALIBRATION_GAIN",
    "Settings",
    "benchmark",
    "calibration_gain",
    "enrichment_summary",
    "explanation_scores",
    "findings",
    "llm_classifier",
    "load_data",
    "ngram_texts",
    "paper_comparison",
    "targets_met",
    "throughput",
    "walkthrough",
]

PAPER = "MoleX (arXiv 2410.08829)"
MAIN_METHODS = (
    "MoleX",
    "MoleX w/o calibration",
    "Fine-tuned LM",
    "Morgan FP + LR",
    "Morgan FP + RF",
    "GIN",
)
EXPLAIN_METHODS = EXPLAINED_METHODS
ABLATION_METHODS = (
    "MoleX",
    "MoleX w/o calibration",
    "MoleX (PCA)",
    "MoleX (pooled h)",
    "MoleX (beta=0)",
    "MoleX (no fine-tuning)",
)
#: Accuracy of MoleX on MUTAG in the paper (the dashed marker of the accuracy figure).
PAPER_MUTAG_ACCURACY = 0.916
#: The paper's average calibration gains in points: accuracy and explanation AUC (the paper gives
#: one explanation figure; both |importance| readings are compared with it).
PAPER_CALIBRATION_GAIN = {"accuracy": 7.0, "token_auc_abs": 8.8, "explanation_auc_abs": 8.8}


@dataclass(frozen=True)
class Settings(BaseSettings):
    """MoleX's settings; the field defaults are the ``default`` profile.

    Data and protocol: ``datasets`` (names in `molkit.data.explain.EXPLAIN_DATASETS`),
    ``max_molecules`` (a stratified subset, None: all), ``cv_folds`` (stratified folds of MUTAG /
    PTC: the TU-dataset convention is 10), ``liver_folds`` (folds of Liver), ``valid_fraction``
    (of the whole, carved out of every training fold for early stopping), ``seed`` (shuffles the
    folds; split k also seeds fine-tuning with ``seed + k``).
    The LM: ``lm_model`` (registry name, folder or hub id of a BERT-style SMILES model), ``n_max``
    (longest group n-gram), ``pooling``, ``max_length``. IB fine-tuning: ``n_trainable_layers``
    (top layers trained), ``beta`` (KL weight), ``bottleneck_dim`` (the width of the mu features
    MoleX sums), ``lr`` / ``head_lr``, ``batch_size``, ``finetune_epochs``,
    ``finetune_patience``. The linear part: ``n_components``, ``sparse_alpha`` (relative soft
    threshold), ``logreg_c``; calibration: ``complement_components``, ``calib_rounds``,
    ``calib_lr``, ``calib_ridge``, ``calib_patience``. ``ablation_datasets``: where the one-factor
    variants (PCA, pooled h, beta = 0, no fine-tuning) run. Baselines: ``morgan_radius``,
    ``morgan_bits``, ``rf_trees``, ``gin_layers``, ``gin_hidden``, ``gin_epochs``. The instruction
    LLM as a classifier: ``llm_model``, ``llm_molecules`` (molecules per dataset scored zero-shot,
    stratified; None: all), ``llm_probe_datasets`` (every molecule scored, and a logistic probe on
    its hidden states fit on each fold), ``llm_lora_datasets`` (LoRA-tuned on each fold),
    ``llm_lora_epochs``, ``llm_batch_size``. Throughput: ``speed_dataset``, ``speed_molecules``,
    ``speed_repeats``. ``n_examples``: molecules drawn per dataset. ``n_boot``: bootstrap
    resamples of each claim.
    """

    datasets: tuple[str, ...] = EXPLAIN_DATASETS
    max_molecules: int | None = None
    cv_folds: int = 10
    liver_folds: int = 3
    valid_fraction: float = 0.1
    seed: int = 0
    lm_model: str = "rxnfp-bert"
    n_max: int = 3
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 256
    n_trainable_layers: int = 2
    beta: float = 1e-2
    bottleneck_dim: int = 64
    lr: float = 3e-4
    head_lr: float = 1e-3
    batch_size: int = 32
    finetune_epochs: int = 6
    finetune_patience: int = 2
    n_components: int = 16
    sparse_alpha: float = 0.3
    logreg_c: float = 1.0
    complement_components: int = 32
    calib_rounds: int = 200
    calib_lr: float = 0.3
    calib_ridge: float = 1.0
    calib_patience: int = 20
    ablation_datasets: tuple[str, ...] = EXPLAIN_DATASETS
    morgan_radius: int = 2
    morgan_bits: int = 2048
    rf_trees: int = 200
    gin_layers: int = 3
    gin_hidden: int = 64
    gin_epochs: int = 30
    llm_model: str = "smollm2-135m-instruct"
    llm_molecules: int | None = 48
    llm_probe_datasets: tuple[str, ...] = ("mutag",)
    llm_lora_datasets: tuple[str, ...] = ()
    llm_lora_epochs: int = 2
    llm_batch_size: int = 32
    speed_dataset: str = "liver"
    speed_molecules: int = 256
    speed_repeats: int = 2
    n_examples: int = 4
    n_boot: int = 2000
    PROFILES = {
        "smoke": {
            "datasets": ("mutag",),
            "max_molecules": 80,
            "cv_folds": 2,
            "liver_folds": 2,
            "n_trainable_layers": 1,
            "lr": 1e-4,
            "finetune_epochs": 1,
            "finetune_patience": 1,
            "n_components": 8,
            "complement_components": 8,
            "calib_rounds": 30,
            "ablation_datasets": ("mutag",),
            "rf_trees": 50,
            "gin_layers": 2,
            "gin_hidden": 32,
            "gin_epochs": 3,
            "llm_model": SMOKE_LM,
            "llm_molecules": 16,
            "llm_probe_datasets": ("mutag",),
            "llm_lora_datasets": ("mutag",),
            "llm_lora_epochs": 1,
            "speed_dataset": "mutag",
            "speed_molecules": 64,
            "speed_repeats": 1,
            "n_examples": 2,
        },
        "default": {},
        "full": {
            "liver_folds": 10,
            "lr": 1e-4,
            "n_trainable_layers": 12,
            "finetune_epochs": 20,
            "finetune_patience": 4,
            "rf_trees": 500,
            "gin_layers": 5,
            "gin_hidden": 300,
            "gin_epochs": 100,
            "llm_molecules": None,
            "llm_probe_datasets": EXPLAIN_DATASETS,
            "llm_lora_datasets": EXPLAIN_DATASETS,
            "speed_molecules": 1024,
            "speed_repeats": 3,
            "n_examples": 6,
        },
    }


# --------------------------------------------------------------------------- 1. data


def load_data(settings: Settings) -> Results:
    """The explanation datasets of ``settings.datasets`` (`load_explain_dataset`, subset seeded
    by ``settings.seed``). Artefacts: ``frames`` (name -> DataFrame), ``overview`` (molecules,
    classes, rate of the explained class, majority-class rate, molecules with a ground truth,
    duplicates dropped, folds, test molecules per fold and the accuracy points one of them is
    worth) and ``enrichment`` (per MUTAG / PTC file and Group-SELFIES type: share of positives and
    negatives annotating it, `group_type_enrichment`)."""
    frames = {
        name: load_explain_dataset(name, settings.max_molecules, seed=settings.seed)
        for name in settings.datasets
    }
    rows = []
    for name, df in frames.items():
        splits = dataset_splits(settings, df)
        n_test = min(len(sp["test"]) for sp in splits)
        labels = df["label"]
        rows.append(
            {
                "dataset": name,
                "molecules": len(df),
                "classes": df.attrs["n_classes"],
                "positive rate": round(float((labels == df.attrs["explain_class"]).mean()), 3),
                "majority-class rate": round(float(labels.value_counts(normalize=True).max()), 3),
                "with ground truth": int(df["truth"].notna().sum()),
                "duplicates dropped": df.attrs["n_duplicates_dropped"],
                "folds": len(splits),
                "test molecules per fold": n_test,
                "accuracy points per test molecule": round(100 / n_test, 2),
            }
        )
    tu = [n for n in settings.datasets if n in GROUND_TRUTH_TYPES]
    enrichment = (
        pd.concat([group_type_enrichment(n) for n in tu], ignore_index=True) if tu else None
    )
    return Results(
        artefacts={"frames": frames, "overview": pd.DataFrame(rows), "enrichment": enrichment}
    )


# --------------------------------------------------------------------------- 2. n-gram texts


def ngram_texts(settings: Settings, data: Results) -> Results:
    """How the first dataset's group n-grams read as text. Artefacts: ``example`` (the n-grams of
    its first molecule: group names, SMILES fragment, atoms), ``unk_token_rate`` (share of unknown
    tokens when the n-grams are written as SMILES fragments or as group names), ``vocab_size``
    of the LM's tokenizer. Rows: the two unknown-token rates."""
    from molkit.models.encoders import load_tokenizer
    from molkit.models.smiles_tokenizer import unk_rate

    name = settings.datasets[0]
    first = data.artefacts["frames"][name]
    one = build_ngram_table([first["smiles"].iloc[0]], n_max=settings.n_max, progress=False)
    example = pd.DataFrame(
        [
            {"group n-gram": " + ".join(one.names[t]), "text for the LM": one.texts[t], "atoms": a}
            for t, a in one.occurrences[0]
        ]
    ).head(12)
    tokenizer = load_tokenizer(settings.lm_model)
    table = build_ngram_table(first["smiles"].tolist(), n_max=settings.n_max, progress=False)
    rates = {
        "SMILES fragments": unk_rate(tokenizer, table.texts),
        "group names": unk_rate(tokenizer, [" ".join(n) for n in table.names]),
    }
    res = Results(
        artefacts={"example": example, "unk_token_rate": rates, "vocab_size": len(tokenizer)}
    )
    for kind, rate in rates.items():
        res.add_row(name, f"n-gram text: {kind}", "unk_token_rate", rate, seed=settings.seed)
    return res


# --------------------------------------------------------------------------- 3. the benchmark

#: (method, baseline, claim, paper's figure): MoleX against every baseline on test accuracy.
ACCURACY_CLAIMS = (
    (
        "Fine-tuned LM",
        "Training prior",
        "the fine-tuned LM is more accurate than the training class prior (sanity check)",
        "not reported",
    ),
    (
        "MoleX",
        "Fine-tuned LM",
        "MoleX is more accurate than the fine-tuned LM it is built from",
        "comparable to the LLM (parity: undecided is consistent with it, contradicted not)",
    ),
    ("MoleX", "Morgan FP + LR", "MoleX is more accurate than Morgan FP + LR", "outperforms"),
    ("MoleX", "Morgan FP + RF", "MoleX is more accurate than Morgan FP + RF", "outperforms"),
    ("MoleX", "GIN", "MoleX is more accurate than a GIN trained from scratch", "outperforms"),
)
#: One-factor ablations: (variant, the factor MoleX has and the variant lacks, paper's figure).
ABLATION_CLAIMS = (
    ("MoleX (beta=0)", "the information bottleneck (beta > 0 against beta = 0)", "helps"),
    ("MoleX (no fine-tuning)", "fine-tuning the LM before embedding the n-grams", "helps"),
    ("MoleX (PCA)", "the sparse reduction (against plain PCA)", "helps"),
    ("MoleX (pooled h)", "n-gram features at the bottleneck mean (against the pooled h)", "-"),
)


def benchmark(settings: Settings, data: Results, progress: bool = False) -> Results:
    """MoleX, its one-factor variants and the baselines on every dataset (`run_dataset`), with
    the chemical LM loaded once (`molkit.models.prefix.load_chemical_lm`). Rows: every dataset's
    test metrics per fold. Artefacts: ``runs`` (name -> `DatasetRun`), ``seconds`` (wall time per
    dataset), ``chemical_lm`` (model, tokenizer), ``accuracy_table`` (mean ± std over folds),
    ``ablation_table`` (accuracy and token |importance| AUC), ``ablation_intervals`` (per
    dataset: MoleX minus each variant, pooled test accuracy with its paired interval),
    ``finetune`` (every fold's fine-tuning history), ``parameters`` (per method). Claims: the
    LM against the training prior, MoleX against every baseline and every one-factor variant
    (test accuracy, molecules pooled over datasets and folds), MoleX's MUTAG accuracy against the
    paper's."""
    from molkit.models.prefix import load_chemical_lm

    chemical_lm = load_chemical_lm(settings.lm_model)
    res, runs, seconds = Results(), {}, {}
    for name in settings.datasets:
        start = time.perf_counter()
        runs[name] = run_dataset(
            settings, data.artefacts["frames"][name], chemical_lm, progress=progress
        )
        seconds[name] = time.perf_counter() - start
        res.add_rows(runs[name].rows.to_dict("records"))
    frame = res.frame()
    scores = frame[frame["metric"].isin(["accuracy", "roc_auc"])]
    ablation = frame[frame["metric"].isin(["accuracy", "token_auc_abs"])]
    params = frame[frame["metric"] == "n_parameters"].groupby("method")["value"].first()
    finetune = pd.concat(
        [h.assign(dataset=n, fold=k) for n, r in runs.items() for k, h in r.finetune.items()],
        ignore_index=True,
    )
    res.artefacts.update(
        runs=runs,
        seconds=seconds,
        chemical_lm=chemical_lm,
        accuracy_table=mean_pm_std(
            scores[scores["method"].isin(MAIN_METHODS)],
            index="method",
            columns=("dataset", "metric"),
        ),
        ablation_table=mean_pm_std(
            ablation[ablation["method"].isin(ABLATION_METHODS)],
            index="method",
            columns=("metric", "dataset"),
        ),
        ablation_intervals=_per_dataset_intervals(settings, runs),
        finetune=finetune,
        parameters=params,
    )
    for method, baseline, claim, figure in ACCURACY_CLAIMS:
        res.claims.append(_accuracy_claim(settings, runs, method, baseline, claim, figure))
    for variant, factor, figure in ABLATION_CLAIMS:
        with_variant = {n: r for n, r in runs.items() if (0, variant) in r.predictions}
        if with_variant:
            res.claims.append(
                _accuracy_claim(
                    settings,
                    with_variant,
                    "MoleX",
                    variant,
                    f"{factor} makes MoleX more accurate",
                    figure,
                )
            )
    if "mutag" in runs:
        _, y, proba = runs["mutag"].pooled("MoleX")
        correct = (proba.argmax(1) == y).astype(float)
        res.claims.append(
            _claim(
                settings,
                "MoleX is as accurate on MUTAG as the paper reports",
                f"{PAPER_MUTAG_ACCURACY:.1%}",
                correct,
                correct,
                np.full(len(correct), PAPER_MUTAG_ACCURACY),
                _mean_value,
                "accuracy minus the paper's",
                f"{len(correct)} MUTAG molecules, each tested once in {settings.cv_folds}-fold "
                "cross-validation; undecided is consistent with the paper's figure, contradicted "
                "is below it",
            )
        )
    return res


def _per_dataset_intervals(settings: Settings, runs: Mapping[str, DatasetRun]) -> pd.DataFrame:
    """MoleX minus each one-factor variant and each baseline, per dataset: pooled test accuracy
    over its folds, with the 95 % paired-bootstrap interval over its molecules."""
    from molkit.eval.metrics import paired_bootstrap

    rows = []
    others = [v for v, _, _ in ABLATION_CLAIMS] + ["MoleX w/o calibration"]
    others += [b for m, b, _, _ in ACCURACY_CLAIMS if m == "MoleX"]
    for name, run in runs.items():
        _, y, ours = run.pooled("MoleX")
        for other in others:
            if (0, other) not in run.predictions:
                continue
            _, _, base = run.pooled(other)
            boot = paired_bootstrap(
                y, ours.argmax(1), base.argmax(1), _accuracy, n_boot=settings.n_boot, seed=0
            )
            rows.append(
                {
                    "dataset": name,
                    "MoleX minus": other,
                    "accuracy difference": boot["diff"],
                    "low": boot["low"],
                    "high": boot["high"],
                    "verdict": verdict_from_interval(boot["low"], boot["high"]),
                    "n": len(y),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 3b. step by step


def walkthrough(settings: Settings, bench: Results, dataset: str | None = None) -> Results:
    """MoleX on one dataset (default the first), step by step, read from the benchmark's first
    fold (nothing is refit). Artefacts: ``dataset``; ``molecule`` (the first test molecule with a
    ground truth, else the first); ``tokens`` (its group tokens: name, atoms, contribution = sum
    of its atoms' scores, ground truth); ``ngrams`` (its n-grams: groups, text, contribution
    calibrated and not); ``sizes`` (n-gram texts, feature width, components, complement width);
    ``loadings`` (components x features of the sparse reduction); ``weights`` (the logistic
    weight of each component toward the explained class); ``logit`` (intercept, sum of n-gram
    contributions and the model's logit for the molecule: the sum is exact); ``calibration`` (the
    fold's calibration history); ``atom_scores`` and ``truth`` (for drawing)."""
    from molkit.eval.explain import token_truth

    name = dataset or settings.datasets[0]
    run: DatasetRun = bench.artefacts["runs"][name]
    m = run.models
    table, mx, centred, df, te = m["table"], m["molex"], m["centred"], m["df"], m["test"]
    target = df.attrs["explain_class"]
    with_truth = [i for i in te if df["truth"].iloc[i] is not None]
    i = int(with_truth[0] if with_truth else te[0])
    contrib = mx.ngram_contributions(centred, target)
    contrib_uncal = mx.ngram_contributions(centred, target, calibrated=False)
    atoms = atom_scores_from_ngrams(table, contrib, [i])[0]
    truth = df["truth"].iloc[i]
    token_atoms = [a for _, a in table.tokens[i]]
    gt = token_truth(truth, token_atoms)
    tokens = pd.DataFrame(
        {
            "token": [n for n, _ in table.tokens[i]],
            "atoms": token_atoms,
            "contribution": [float(atoms[list(a)].sum()) for a in token_atoms],
            "ground truth": [None] * len(token_atoms) if gt is None else gt.astype(bool),
        }
    )
    ngrams = pd.DataFrame(
        [
            {
                "groups": " + ".join(table.names[t]),
                "text": table.texts[t],
                "atoms": a,
                "contribution": float(contrib[t]),
                "w/o calibration": float(contrib_uncal[t]),
            }
            for t, a in table.occurrences[i]
        ]
    )
    _, c = mx.weights()
    multi = mx.n_classes > 2  # contributions are toward the target logit minus the mean logit
    col = target if multi else 0
    coef = mx.coef[:, col] - (mx.coef.mean(1) if multi else 0)
    intercept = float(c[col] - (c.mean() if multi else 0))
    logits = mx.decision_function(m["features"][[i]])[0]
    model_logit = float(logits[col] - (logits.mean() if multi else 0))
    total = float(contrib[[t for t, _ in table.occurrences[i]]].sum())
    sizes = {
        "n-gram texts (dataset)": len(table.texts),
        "feature width (bottleneck mean)": centred.shape[1],
        "components (sparse reduction)": mx.reduction.n_components,
        "zero loadings": round(mx.reduction.sparsity, 3),
        "complement components (calibration)": 0
        if mx.complement is None
        else mx.complement.n_components,
        "calibration rounds kept": mx.calib_rounds,
    }
    return Results(
        artefacts={
            "dataset": name,
            "molecule": df["smiles"].iloc[i],
            "label": int(df["label"].iloc[i]),
            "tokens": tokens,
            "ngrams": ngrams,
            "sizes": pd.Series(sizes, name=name),
            "loadings": mx.reduction.loadings,
            "weights": coef,
            "logit": pd.Series(
                {
                    "intercept": intercept,
                    "sum of n-gram contributions": total,
                    "intercept + sum": intercept + total,
                    "model logit": model_logit,
                },
                name="logit toward the explained class",
            ),
            "calibration": run.calibration[0],
            "atom_scores": atoms,
            "truth": truth,
        }
    )


# --------------------------------------------------------------------------- 4. explanations


def explanation_scores(settings: Settings, bench: Results) -> Results:
    """Explanation AUC of MoleX, MoleX w/o calibration, the Morgan FP + LR attribution and random
    attribution on the test molecules with a ground truth, pooled over folds, per atom and per
    group token, signed and |importance|. Artefacts: ``table`` (AUC and number of molecules
    scored, per dataset and reading), ``scores`` (the pooled long frame). Claims: MoleX's
    token-level |importance| AUC against the Morgan FP + LR attribution and against random
    attribution (per molecule, pooled over datasets)."""
    runs: Mapping[str, DatasetRun] = bench.artefacts["runs"]
    rows = []
    for name, run in runs.items():
        for method in EXPLAIN_METHODS:
            for reading, (metric, _) in READING_METRICS.items():
                _, values = run.pooled_explanations(method, reading)
                ok = np.isfinite(values)
                rows.append(
                    {
                        "dataset": name,
                        "method": method,
                        "reading": reading,
                        "metric": metric,
                        "auc": float(values[ok].mean()) if ok.any() else float("nan"),
                        "n_explained": int(ok.sum()),
                    }
                )
    scores = pd.DataFrame(rows)
    scores["cell"] = [
        f"{a:.3f} (n={n})" if n else "-"
        for a, n in zip(scores["auc"], scores["n_explained"], strict=True)
    ]
    table = scores.pivot_table(
        index="method", columns=["reading", "dataset"], values="cell", aggfunc="first", sort=False
    )
    res = Results(artefacts={"table": table, "scores": scores})
    for baseline, claim in (
        (
            "Morgan FP + LR",
            "MoleX's explanations find the ground truth better than Morgan FP + LR's",
        ),
        (
            "Random attribution",
            "MoleX's explanations find the ground truth better than random ones",
        ),
    ):
        res.claims.append(
            _explanation_claim(settings, runs, "MoleX", baseline, claim, "not reported")
        )
    return res


def _explanation_claim(
    settings: Settings,
    runs: Mapping[str, DatasetRun],
    method: str,
    baseline: str,
    claim: str,
    paper_figure: str,
    reading: str = "token_abs",
) -> Claim:
    """Mean per-molecule explanation AUC of ``method`` minus ``baseline`` (``reading``), over the
    test molecules where both are defined, pooled over ``runs`` and folds."""
    ours = np.concatenate([r.pooled_explanations(method, reading)[1] for r in runs.values()])
    base = np.concatenate([r.pooled_explanations(baseline, reading)[1] for r in runs.values()])
    keep = np.isfinite(ours) & np.isfinite(base)
    detail = (
        f"{_pooled_detail(settings, runs)}; {reading.replace('_abs', ' |importance|')} reading"
        " (group tokens ranked by the magnitude of their contribution, as Lamole ranks tokens)"
        if reading == "token_abs"
        else f"{_pooled_detail(settings, runs)}; {reading} reading"
    )
    return _claim(
        settings,
        claim,
        paper_figure,
        np.zeros(int(keep.sum())),
        ours[keep],
        base[keep],
        _mean_value,
        f"explanation AUC ({reading})",
        f"{detail}; molecules with a defined AUC",
    )


# --------------------------------------------------------------------------- 4b. the LLM


#: The instruction LLM's rows: zero-shot label-word likelihood, a logistic probe on its hidden
#: state fit per fold, LoRA tuning per fold.
LLM_METHODS = ("SmolLM2 (zero-shot)", "SmolLM2 (probe)", "SmolLM2 (LoRA)")


def _llm_subset(settings: Settings, df: pd.DataFrame) -> np.ndarray:
    """The molecules the LLM scores zero-shot: all of a probe / LoRA dataset, else a seeded
    stratified subset of ``settings.llm_molecules`` (sorted row indices)."""
    from sklearn.model_selection import train_test_split

    name, n = df.attrs["name"], settings.llm_molecules
    every = name in settings.llm_probe_datasets or name in settings.llm_lora_datasets
    if every or n is None or n >= len(df):
        return np.arange(len(df))
    keep, _ = train_test_split(
        np.arange(len(df)), train_size=n, stratify=df["label"], random_state=settings.seed
    )
    return np.sort(keep)


def llm_classifier(settings: Settings, data: Results, bench: Results) -> Results:
    """The instruction LLM (``settings.llm_model``) as a classifier (`molkit.methods.molex.llm`):
    zero-shot by the log-likelihood of each class's label word on `_llm_subset` of every dataset;
    on ``llm_probe_datasets`` a logistic probe on its last hidden state fit on each fold's
    training part (the benchmark's folds); on ``llm_lora_datasets`` LoRA tuning on each fold's
    training part (`fine_tune_label_classifier`, replayed from the trained-weights cache).

    Rows: accuracy, roc_auc, n_molecules, molecules_per_s (zero-shot scoring), n_parameters.
    Artefacts: ``table`` (per dataset and row: accuracy of the LLM, of the training prior and of
    MoleX on the same molecules, ROC-AUC, molecules, molecules/s), ``rate`` (zero-shot molecules/s
    over all scored molecules), ``findings``. Claims: each LLM row against the training prior on
    the same molecules (the gate), and MoleX against each LLM row, pooled over datasets."""
    import tempfile

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from molkit.methods.molex import llm
    from molkit.models.lm import TrainConfig, load_lm, resolve_lm

    runs: Mapping[str, DatasetRun] = bench.artefacts["runs"]
    frames = data.artefacts["frames"]
    corpus = [s for df in frames.values() for s in df["smiles"]]
    corpus += [llm.task_prompt(n).question for n in frames]
    workdir = Path(tempfile.gettempdir()) / "molkit-molex-llm"
    lm_path = resolve_lm(settings.llm_model, corpus, workdir)
    model, tokenizer = load_lm(lm_path, device="cpu")
    n_params = sum(p.numel() for p in model.parameters())
    res = Results()
    # per dataset and method: (molecule indices, labels, LLM probabilities)
    scored: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    seconds, n_scored = 0.0, 0
    for name, df in frames.items():
        y = df["label"].to_numpy()
        subset = _llm_subset(settings, df)
        smiles = df["smiles"].to_numpy()[subset].tolist()
        zs = llm.zero_shot_scores(model, tokenizer, smiles, name, settings.llm_batch_size)
        seconds, n_scored = seconds + zs.seconds, n_scored + len(subset)
        scored[name, LLM_METHODS[0]] = (subset, y[subset], zs.proba)
        splits = dataset_splits(settings, df)  # the benchmark's folds
        if name in settings.llm_probe_datasets:
            proba = np.zeros((len(df), df.attrs["n_classes"]))
            for split in splits:
                probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
                probe.fit(zs.hidden[split["train"]], y[split["train"]])
                proba[split["test"]] = probe.predict_proba(zs.hidden[split["test"]])
            scored[name, LLM_METHODS[1]] = (np.arange(len(df)), y, proba)
        if name in settings.llm_lora_datasets:
            proba = np.zeros((len(df), df.attrs["n_classes"]))
            config = TrainConfig(
                epochs=settings.llm_lora_epochs, lr=2e-4, batch_size=8, seed=settings.seed
            )
            for k, split in enumerate(splits):
                tr, te = split["train"], split["test"]
                lora = llm.fine_tune_label_classifier(
                    lm_path,
                    name,
                    df["smiles"].to_numpy()[tr].tolist(),
                    y[tr],
                    df["smiles"].to_numpy()[te].tolist(),
                    config=config,
                    key={"fold": k, "folds": len(splits), "cv_seed": settings.seed},
                    batch_size=settings.llm_batch_size,
                )
                proba[te] = lora.scores.proba
            scored[name, LLM_METHODS[2]] = (np.arange(len(df)), y, proba)
    rate = n_scored / seconds if seconds > 0 else float("nan")
    table = []
    for (name, method), (idx, y, proba) in scored.items():
        prior, molex_proba = (
            _on_molecules(runs[name], "Training prior", idx),
            _on_molecules(runs[name], "MoleX", idx),
        )
        metrics = classification_scores(y, proba)
        note = f"{len(idx)} molecules" + (
            ", fit on each fold's training part" if method != LLM_METHODS[0] else ", no training"
        )
        for metric, value in {
            **metrics,
            "n_molecules": len(idx),
            "n_parameters": n_params,
            **({"molecules_per_s": rate} if method == LLM_METHODS[0] else {}),
        }.items():
            res.add_row(name, method, metric, value, seed=settings.seed, note=note)
        table.append(
            {
                "dataset": name,
                "method": method,
                "molecules": len(idx),
                "accuracy": metrics["accuracy"],
                "training prior, same molecules": _accuracy(y, prior.argmax(1)),
                "MoleX, same molecules": _accuracy(y, molex_proba.argmax(1)),
                "roc_auc": metrics["roc_auc"],
            }
        )
    res.artefacts.update(table=pd.DataFrame(table).round(3), rate=rate, parameters=n_params)
    findings = []
    for method in LLM_METHODS:
        parts = {n: v for (n, m), v in scored.items() if m == method}
        if not parts:
            continue
        y = np.concatenate([v[1] for v in parts.values()])
        ours = np.concatenate([v[2].argmax(1) for v in parts.values()])
        prior = np.concatenate(
            [_on_molecules(runs[n], "Training prior", v[0]).argmax(1) for n, v in parts.items()]
        )
        mx = np.concatenate(
            [_on_molecules(runs[n], "MoleX", v[0]).argmax(1) for n, v in parts.items()]
        )
        detail = f"{len(y)} molecules of {', '.join(parts)}; {method} vs the fold's training prior"
        gate = _claim(
            settings,
            f"{method} is more accurate than the training class prior (sanity check)",
            "not reported",
            y,
            ours,
            prior,
            _accuracy,
            "accuracy",
            detail,
        )
        res.claims.append(gate)
        res.claims.append(
            _claim(
                settings,
                f"MoleX is more accurate than {method}",
                "MoleX outperforms LLM classifiers",
                y,
                mx,
                ours,
                _accuracy,
                "accuracy",
                f"{len(y)} molecules of {', '.join(parts)}, MoleX from the same molecules' folds"
                + (
                    ""
                    if gate.verdict == "holds"
                    else f"; {method} fails its gate ({gate.verdict}"
                    " against the training prior), so this compares MoleX with a trivial predictor"
                ),
            )
        )
        findings.append(
            f"{method}: accuracy {_accuracy(y, ours):.3f} on {len(y)} molecules against "
            f"{_accuracy(y, prior):.3f} for the training prior and {_accuracy(y, mx):.3f} for "
            f"MoleX on the same molecules; gate {gate.verdict}."
        )
    res.artefacts["findings"] = findings
    return res


def _on_molecules(run: DatasetRun, method: str, idx: np.ndarray) -> np.ndarray:
    """``method``'s cross-validated test probabilities of the molecules ``idx`` (each molecule's
    own fold)."""
    where, _, proba = run.pooled(method)
    order = np.argsort(where)
    pos = order[np.searchsorted(where[order], idx)]
    if not np.array_equal(where[pos], idx):
        raise ValueError(f"{method!r} has no test prediction for some of the molecules asked")
    return proba[pos]


# --------------------------------------------------------------------------- 5. throughput


def throughput(settings: Settings, bench: Results, llm: Results | None = None) -> Results:
    """CPU inference speed of MoleX, the fine-tuned LM classifier and (from ``llm``) the
    instruction LLM's zero-shot scorer, on the test molecules of ``settings.speed_dataset`` (else
    the first dataset), first fold (`measure_throughput`). Rows: seconds per molecule of each
    step, molecules/s and speed-ups. Artefacts: ``dataset``, ``steps`` (the step table),
    ``summary`` (`throughput_summary` + parameters), ``table`` (per pipeline: molecules/s,
    stored parameters and MoleX's speed-up over it), ``findings``."""
    runs = bench.artefacts["runs"]
    name = settings.speed_dataset if settings.speed_dataset in runs else settings.datasets[0]
    steps = measure_throughput(
        runs[name],
        bench.artefacts["chemical_lm"],
        n_molecules=settings.speed_molecules,
        repeats=settings.speed_repeats,
        max_length=settings.max_length,
    )
    summary = throughput_summary(steps)
    frame = bench.frame()
    params = frame[(frame["metric"] == "n_parameters") & (frame["dataset"] == name)]
    params = params.groupby("method")["value"].first()
    lm_params = float(params.get("Fine-tuned LM", np.nan))
    molex_params = float(params.get("MoleX", np.nan))
    summary.update(lm_parameters=lm_params, molex_parameters=molex_params)
    warm = summary["molex_warm_mol_per_s"]
    rows = [
        ("MoleX, known n-grams (end to end)", warm, molex_params),
        ("MoleX, new n-grams (end to end, cold)", summary["molex_cold_mol_per_s"], np.nan),
        ("MoleX linear map only (features given)", summary["molex_model_mol_per_s"], np.nan),
        ("fine-tuned chemical LM (end to end)", summary["lm_end_to_end_mol_per_s"], lm_params),
    ]
    if llm is not None and np.isfinite(llm.artefacts.get("rate", np.nan)):
        rate = float(llm.artefacts["rate"])
        summary.update(llm_zero_shot_mol_per_s=rate, speedup_vs_llm_warm=warm / rate)
        rows.append(("SmolLM2 zero-shot (end to end)", rate, float(llm.artefacts["parameters"])))
    table = pd.DataFrame(rows, columns=["pipeline", "molecules/s", "stored parameters"])
    table["MoleX (known n-grams) speed-up over it"] = warm / table["molecules/s"]
    findings = [
        f"Speed on {name}: MoleX end to end on known n-grams {warm:,.0f} molecules/s, "
        f"{summary['speedup_end_to_end_warm']:.1f}x the fine-tuned chemical LM "
        f"({summary['lm_end_to_end_mol_per_s']:,.0f}/s) and "
        f"{summary['speedup_end_to_end_cold']:.2f}x with every n-gram new; the linear map alone "
        f"is {summary['speedup_model']:,.0f}x the LM's forward pass."
    ]
    if "speedup_vs_llm_warm" in summary:
        findings.append(
            f"Against the SmolLM2 zero-shot scorer ({summary['llm_zero_shot_mol_per_s']:.1f}/s), "
            f"MoleX on known n-grams is {summary['speedup_vs_llm_warm']:,.0f}x faster."
        )
    findings.append(
        f"Stored parameters: MoleX {molex_params:,.0f} (one contribution per n-gram text and "
        f"class, and the intercept) against {lm_params:,.0f} for the fine-tuned LM."
    )
    res = Results(
        artefacts={
            "dataset": name,
            "steps": steps,
            "summary": summary,
            "table": table,
            "findings": findings,
        }
    )
    for pipeline, step, seconds in zip(
        steps["pipeline"], steps["step"], steps["seconds_per_molecule"], strict=True
    ):
        res.add_row(name, pipeline, f"seconds_per_molecule: {step}", seconds, seed=settings.seed)
    for metric, value in summary.items():
        res.add_row(name, "throughput", metric, value, seed=settings.seed)
    return res


# --------------------------------------------------------------------------- 6. calibration


def calibration_gain(settings: Settings, bench: Results) -> Results:
    """MoleX minus MoleX without calibration (same folds, same features). Rows: per dataset and
    over all, the gain in points of pooled accuracy and of every explanation AUC reading.
    Artefacts: ``gain`` (dataset, metric, gain in points), ``rounds`` (calibration rounds kept per
    fold), ``histories`` (dataset -> fold -> history). Claims: calibration makes MoleX more
    accurate; calibration raises the token-level explanation AUC (all datasets, and PTC-FR, the
    paper's example) on the same molecules."""
    runs: Mapping[str, DatasetRun] = bench.artefacts["runs"]
    results = bench.frame()
    rows = []
    for name, run in runs.items():
        _, y, cal = run.pooled("MoleX")
        _, _, uncal = run.pooled("MoleX w/o calibration")
        rows.append(
            {
                "dataset": name,
                "metric": "accuracy",
                "gain": 100 * (_accuracy(y, cal.argmax(1)) - _accuracy(y, uncal.argmax(1))),
            }
        )
        for reading, (metric, _) in READING_METRICS.items():
            a = run.pooled_explanations("MoleX", reading)[1]
            b = run.pooled_explanations("MoleX w/o calibration", reading)[1]
            ok = np.isfinite(a) & np.isfinite(b)
            gain = 100 * float(np.mean(a[ok] - b[ok])) if ok.any() else float("nan")
            rows.append({"dataset": name, "metric": metric, "gain": gain})
    gain = pd.DataFrame(rows)
    rounds = results[(results["method"] == "MoleX") & (results["metric"] == "calibration_rounds")]
    res = Results(
        artefacts={
            "gain": gain,
            "rounds": rounds.groupby("dataset")["value"].describe()[["mean", "min", "max"]],
            "histories": {name: run.calibration for name, run in runs.items()},
        }
    )
    for metric, part in gain.groupby("metric", sort=False):
        res.add_row(
            "all",
            "calibration gain",
            f"{metric}_points",
            float(part["gain"].mean()),
            seed=settings.seed,
            note="mean over datasets of the pooled gain",
        )
    detail = (
        f"{_pooled_detail(settings, runs)}; calibration fit on training residuals, stopped on "
        "the validation part (the official code uses test labels)"
    )
    res.claims.append(
        _accuracy_claim(
            settings,
            runs,
            "MoleX",
            "MoleX w/o calibration",
            "residual calibration makes MoleX more accurate than the uncalibrated linear model",
            f"+{PAPER_CALIBRATION_GAIN['accuracy']:.1f} accuracy points on average, up to +12.7 %",
            detail,
        )
    )
    res.claims.append(
        _explanation_claim(
            settings,
            runs,
            "MoleX",
            "MoleX w/o calibration",
            "residual calibration raises MoleX's explanation AUC",
            f"+{PAPER_CALIBRATION_GAIN['token_auc_abs']:.1f} points on average",
        )
    )
    if "ptc_fr" in runs:
        res.claims.append(
            _explanation_claim(
                settings,
                {"ptc_fr": runs["ptc_fr"]},
                "MoleX",
                "MoleX w/o calibration",
                "residual calibration raises MoleX's explanation AUC on PTC-FR",
                "0.666 -> 0.793",
            )
        )
    return res


# --------------------------------------------------------------------------- results


def _pooled_mean(runs: Mapping[str, DatasetRun], name: str, method: str, what: str) -> float:
    """Pooled test accuracy (``what="accuracy"``) or mean explanation AUC (a reading) of
    ``method`` on dataset ``name``; NaN where this run lacks it."""
    run = runs.get(name)
    if run is None:
        return float("nan")
    if what == "accuracy":
        _, y, proba = run.pooled(method)
        return _accuracy(y, proba.argmax(1))
    values = run.pooled_explanations(method, what)[1]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def paper_comparison(
    runs: Mapping[str, DatasetRun], calibration: pd.DataFrame, speed: Mapping[str, float]
) -> pd.DataFrame:
    """The paper's headline numbers next to this run's (NaN where this run lacks the dataset).
    ``runs``: the benchmark's; ``calibration``: `calibration_gain`'s ``gain``; ``speed``: the
    `throughput_summary`."""
    gain = calibration.groupby("metric")["gain"].mean()
    m = _pooled_mean
    entries = [
        ("MUTAG accuracy, MoleX", PAPER_MUTAG_ACCURACY, m(runs, "mutag", "MoleX", "accuracy")),
        (
            "calibration gain, accuracy (points, mean)",
            PAPER_CALIBRATION_GAIN["accuracy"],
            gain.get("accuracy", np.nan),
        ),
        (
            "calibration gain, explanation AUC per token |importance| (points, mean)",
            PAPER_CALIBRATION_GAIN["token_auc_abs"],
            gain.get("token_auc_abs", np.nan),
        ),
        (
            "calibration gain, explanation AUC per atom |importance| (points, mean)",
            PAPER_CALIBRATION_GAIN["explanation_auc_abs"],
            gain.get("explanation_auc_abs", np.nan),
        ),
        (
            "PTC-FR explanation AUC per token |importance|, w/o calibration",
            0.666,
            m(runs, "ptc_fr", "MoleX w/o calibration", "token_abs"),
        ),
        (
            "PTC-FR explanation AUC per token |importance|, MoleX",
            0.793,
            m(runs, "ptc_fr", "MoleX", "token_abs"),
        ),
        ("speed-up over the LM, model only (x)", 300.0, speed["speedup_model"]),
        (
            "speed-up over the LM, end to end, known n-grams (x)",
            300.0,
            speed["speedup_end_to_end_warm"],
        ),
        (
            "parameters saved vs the LM (known n-grams)",
            100_000.0,
            speed.get("lm_parameters", np.nan) - speed.get("molex_parameters", np.nan),
        ),
    ]
    return pd.DataFrame(entries, columns=["quantity", "paper", "this run"])


def targets_met(
    settings: Settings, runs: Mapping[str, DatasetRun], speed: Mapping[str, float], elapsed: float
) -> pd.Series:
    """This notebook's targets, each True or False: MoleX >= 100x faster than the LM (model step;
    end to end on known n-grams), MoleX's pooled accuracy within 2 points of the fine-tuned LM on
    MUTAG and Liver, MoleX's token |importance| explanation AUC above random and fingerprint
    attribution per dataset, and the run time (``elapsed`` seconds; default <= 15 min, smoke <= 2
    min)."""
    targets = {
        "MoleX >= 100x faster than the LM (model step)": speed["speedup_model"] >= 100,
        "MoleX >= 100x faster than the LM (end to end, known n-grams)": (
            speed["speedup_end_to_end_warm"] >= 100
        ),
    }
    for name in [d for d in ("mutag", "liver") if d in runs]:
        gap = _pooled_mean(runs, name, "MoleX", "accuracy") - _pooled_mean(
            runs, name, "Fine-tuned LM", "accuracy"
        )
        label = (
            f"{name}: MoleX accuracy within 2 points of the fine-tuned LM (gap {100 * gap:+.1f})"
        )
        targets[label] = gap >= -0.02
    for name in runs:
        m, r, f = (
            _pooled_mean(runs, name, x, "token_abs")
            for x in ("MoleX", "Random attribution", "Morgan FP + LR")
        )
        targets[f"{name}: token |importance| AUC {m:.3f} > random {r:.3f} and > Morgan {f:.3f}"] = (
            m > r and m > f
        )
    limit = 15 * 60 if settings.profile != "smoke" else 120
    label = f"notebook ran in {elapsed / 60:.1f} min (target: default <= 15, smoke <= 2)"
    targets[label] = elapsed <= limit
    return pd.Series(targets, name="met")


# --------------------------------------------------------------------------- claims


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def _mean_value(y: np.ndarray, values: np.ndarray) -> float:
    return float(np.mean(values))


def _pooled_detail(settings: Settings, runs: Mapping[str, DatasetRun]) -> str:
    n = sum(len(np.concatenate(list(r.tests.values()))) for r in runs.values())
    return (
        f"{n} test molecules pooled over {len(runs)} dataset(s) ({', '.join(runs)}), each tested "
        f"once by cross-validation ({settings.cv_folds} folds, Liver {settings.liver_folds})"
    )


def _claim(
    settings: Settings,
    claim: str,
    paper_figure: str,
    y: np.ndarray,
    ours: np.ndarray,
    baseline: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    metric_name: str,
    detail: str,
) -> Claim:
    """`paired_claim`, or an undecided claim without interval when fewer than 2 items exist."""
    if len(y) < 2:
        nan = math.nan
        detail = f"{detail}; fewer than 2 test items"
        return Claim(
            PAPER, claim, paper_figure, metric_name, nan, nan, nan, UNDECIDED, len(y), detail
        )
    return paired_claim(
        PAPER,
        claim,
        paper_figure,
        y,
        ours,
        baseline,
        metric,
        metric_name,
        n_boot=settings.n_boot,
        seed=0,
        detail=detail,
    )


def _accuracy_claim(
    settings: Settings,
    runs: Mapping[str, DatasetRun],
    method: str,
    baseline: str,
    claim: str,
    paper_figure: str,
    detail: str | None = None,
) -> Claim:
    """Test accuracy of ``method`` minus ``baseline`` on the same test molecules (argmax of the
    stored probabilities), pooled over datasets and folds."""
    y = np.concatenate([r.pooled(method)[1] for r in runs.values()])
    ours = np.concatenate([r.pooled(method)[2].argmax(1) for r in runs.values()])
    base = np.concatenate([r.pooled(baseline)[2].argmax(1) for r in runs.values()])
    detail = detail if detail is not None else _pooled_detail(settings, runs)
    return _claim(settings, claim, paper_figure, y, ours, base, _accuracy, "accuracy", detail)


# --------------------------------------------------------------------------- discussion


def enrichment_summary(enrichment: pd.DataFrame) -> str:
    """One sentence per MUTAG / PTC file on whether its scored Group-SELFIES types are more
    common among positives than negatives (`group_type_enrichment` rows)."""
    parts = []
    for name, part in enrichment.groupby("dataset", sort=False):
        scored = part[part["ground truth"]]
        ratios = scored["ratio"].replace(np.inf, np.nan).dropna()
        parts.append(
            f"{name}: {int((scored['ratio'] > 1).sum())} of the {len(scored)} scored types are "
            f"more common among positives (ratios {ratios.min():.2f} to {ratios.max():.2f})"
        )
    return "; ".join(parts) + "."


def findings(
    data: Results,
    bench: Results,
    expl: Results,
    llm: Results,
    speed: Results,
    calib: Results,
) -> list[str]:
    """The Discussion's sentences, each computed from this run's results: accuracy against the
    majority-class rate and the baselines per dataset, explanation AUCs with their molecule counts,
    the one-factor variants whose per-dataset interval excludes zero, calibration, the LLM rows
    and the speed ratios."""
    runs: Mapping[str, DatasetRun] = bench.artefacts["runs"]
    overview = data.artefacts["overview"].set_index("dataset")
    out = []
    for name in runs:
        acc = {
            m: _pooled_mean(runs, name, m, "accuracy")
            for m in MAIN_METHODS
            if (0, m) in runs[name].predictions
        }
        best = max((m for m in acc if not m.startswith("MoleX")), key=acc.get)
        majority = float(overview.loc[name, "majority-class rate"])
        out.append(
            f"{name}: MoleX {acc['MoleX']:.3f} pooled test accuracy (majority-class rate "
            f"{majority:.3f}; {'above' if acc['MoleX'] > majority else 'not above'} it), "
            f"fine-tuned LM {acc['Fine-tuned LM']:.3f}, best baseline {best} {acc[best]:.3f}."
        )
    scores = expl.artefacts["scores"]
    tok = scores[scores["reading"] == "token_abs"].set_index(["dataset", "method"])
    for name in runs:
        m, f, r = (tok.loc[(name, x)] for x in ("MoleX", "Morgan FP + LR", "Random attribution"))
        out.append(
            f"{name}: token |importance| explanation AUC MoleX {m['auc']:.3f}, Morgan FP + LR "
            f"{f['auc']:.3f}, random {r['auc']:.3f} (n = {int(m['n_explained'])} molecules)."
        )
    intervals = bench.artefacts["ablation_intervals"]
    for other, part in intervals.groupby("MoleX minus", sort=False):
        verdicts = part["verdict"].value_counts()
        out.append(
            f"MoleX minus {other}, per dataset: better on {verdicts.get('holds', 0)}, worse on "
            f"{verdicts.get('contradicted', 0)}, undecided on {verdicts.get('undecided', 0)} of "
            f"{len(part)} datasets (95 % paired intervals over each dataset's molecules)."
        )
    gain = calib.artefacts["gain"]
    acc_gain = gain[gain["metric"] == "accuracy"]
    rounds = calib.artefacts["rounds"]
    out.append(
        f"Calibration: {acc_gain['gain'].mean():+.1f} accuracy points on average (per dataset "
        f"{acc_gain['gain'].min():+.1f} to {acc_gain['gain'].max():+.1f}); validation kept on "
        f"average {rounds['mean'].mean():.0f} rounds per fold."
    )
    out += llm.artefacts.get("findings", [])
    out += speed.artefacts.get("findings", [])
    return out
