"""Notebook 01's Practical sections, one function each: settings first, a typed `Results` back.

`load_data` · `ngram_texts` · `tune` (the LM stage and the GIN chosen on each dataset's tuning
part) · `cross_validate` (MoleX, its variants and the baselines, fold by fold) · `walkthrough` ·
`explanation_scores` · `llm_classifier` · `throughput` · `calibration_gain`. None writes the
record; the claims are built from what they return (`molkit.methods.molex.claims`). Test labels
are read only inside `molkit.data.final_scoring`, by the functions that score final predictions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from molkit.data.sealed import final_scoring
from molkit.eval.metrics import mean_pm_std, paired_bootstrap
from molkit.methods.experiment import verdict_from_interval
from molkit.methods.molex.crossval import (
    ABLATION_VARIANTS,
    EXPLAINED_METHODS,
    PRIOR,
    READING_METRICS,
    accuracy,
    pooled_classes,
    run_dataset,
)
from molkit.methods.molex.llm_arms import score_llm
from molkit.methods.molex.ngrams import atom_scores_from_ngrams, build_ngram_table
from molkit.methods.molex.protocol import (
    PrefixCache,
    dataset_splits,
    select_gin,
    select_lm,
    truth_enrichment,
)
from molkit.methods.molex.records import (
    CalibrationSection,
    CVSection,
    DataSection,
    DatasetInputs,
    ExplanationSection,
    LLMSection,
    SpeedSection,
    TextSection,
    TuningSection,
    Walkthrough,
)
from molkit.methods.molex.settings import Settings, is_csv_dataset

__all__ = [
    "MAIN_METHODS",
    "ABLATION_METHODS",
    "CVSection",
    "CalibrationSection",
    "DataSection",
    "DatasetInputs",
    "ExplanationSection",
    "LLMSection",
    "SpeedSection",
    "TextSection",
    "TuningSection",
    "Walkthrough",
    "calibration_gain",
    "cross_validate",
    "explanation_scores",
    "llm_classifier",
    "load_data",
    "ngram_texts",
    "throughput",
    "tune",
    "walkthrough",
]

MAIN_METHODS = (
    "MoleX",
    "MoleX w/o calibration",
    "Fine-tuned LM",
    "Morgan FP + LR",
    "Morgan FP + RF",
    "GIN",
)
ABLATION_METHODS = ("MoleX", "MoleX w/o calibration", *ABLATION_VARIANTS)


# --------------------------------------------------------------------------- 1. data


def _csv_frame(path: str, max_molecules: int | None, seed: int) -> pd.DataFrame:
    """A CSV of the user's in the explanation datasets' shape (no ground truth). The rows the file
    check dropped are counted in the overview (duplicates, and every other reason as unusable rows)
    instead of a warning on stderr; ``molkit data check`` lists them."""
    import warnings

    from sklearn.model_selection import train_test_split

    from molkit.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # counted below, shown in the overview
        raw = load_dataset(path, kind="property", task="classification")
    dropped = dict(raw.attrs.get("dropped") or {})
    duplicates = sum(n for reason, n in dropped.items() if "duplicate" in reason)
    target = raw.attrs["targets"][0]
    df = pd.DataFrame(
        {"smiles": raw["smiles_raw"].astype(str), "label": raw[target].astype(int), "truth": None}
    )
    if max_molecules is not None and len(df) > max_molecules:
        keep, _ = train_test_split(
            np.arange(len(df)), train_size=max_molecules, stratify=df["label"], random_state=seed
        )
        df = df.iloc[np.sort(keep)].reset_index(drop=True)
    classes = raw.attrs.get("classes", {}).get(target) or [str(c) for c in sorted(set(df.label))]
    df.attrs.update(
        name=path,
        n_classes=len(classes),
        explain_class=len(classes) - 1,
        n_duplicates_dropped=duplicates,
        n_unusable_dropped=sum(dropped.values()) - duplicates,
        target=target,
        classes=list(classes),
    )
    return df


def load_data(settings: Settings) -> DataSection:
    """The datasets of ``settings.datasets`` (`molkit.data.explain.load_explain_dataset`, or a CSV
    path), their protocol (`dataset_splits`), the overview, whether each ground truth is enriched
    among positives (`truth_enrichment`) and the LLM's question per dataset."""
    from molkit.data.explain import GROUND_TRUTH_TYPES, group_type_enrichment, load_explain_dataset
    from molkit.methods.molex.llm import generic_prompt, task_prompt

    out = DataSection()
    rows = []
    for name in settings.datasets:
        if is_csv_dataset(name):
            df = _csv_frame(name, settings.max_molecules, settings.seed)
            out.prompts[name] = generic_prompt(
                df.attrs["target"].replace("_", " ").lower(), df.attrs["classes"]
            )
        else:
            df = load_explain_dataset(name, settings.max_molecules, seed=settings.seed)
            out.prompts[name] = task_prompt(name)
        splits = dataset_splits(settings, df)
        out.frames[name], out.splits[name] = df, splits
        out.enrichment[name] = truth_enrichment(df)
        n_test = min(len(f["test"]) for f in splits.folds)
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
                "unusable rows dropped": df.attrs.get("n_unusable_dropped", 0),
                "tuning part": len(splits.tune),
                "folds": len(splits.folds),
                "tested": len(splits.tested),
                "test molecules per fold": n_test,
            }
        )
    out.overview = pd.DataFrame(rows)
    out.enrichment_table = pd.DataFrame(
        [
            {
                "dataset": e.dataset,
                "positives": e.positives,
                "others": e.others,
                "share of positives with the truth": e.share_positives,
                "share of others with the truth": e.share_others,
                "ratio": e.ratio,
                "one-sided Fisher p": e.p_value,
                "enriched": e.enriched,
                "note": e.note,
            }
            for e in out.enrichment.values()
        ]
    )
    tu = [n for n in settings.datasets if n in GROUND_TRUTH_TYPES]
    if tu:
        out.group_types = pd.concat([group_type_enrichment(n) for n in tu], ignore_index=True)
    for e in out.enrichment.values():
        if e.share_positives is not None:
            out.add_row(e.dataset, "ground truth", "enrichment_ratio", e.ratio, settings.seed)
    return out


# --------------------------------------------------------------------------- 2. n-gram texts


def ngram_texts(settings: Settings, data: DataSection) -> TextSection:
    """How the first dataset's group n-grams read as text to ``settings.lm_model``."""
    from molkit.models.encoders import load_tokenizer
    from molkit.models.smiles_tokenizer import unk_rate

    name = settings.datasets[0]
    smiles = data.frames[name]["smiles"].tolist()
    one = build_ngram_table(smiles[:1], n_max=settings.n_max, progress=False)
    example = pd.DataFrame(
        [
            {"group n-gram": " + ".join(one.names[t]), "text for the LM": one.texts[t], "atoms": a}
            for t, a in one.occurrences[0]
        ]
    ).head(12)
    tokenizer = load_tokenizer(settings.lm_model)
    table = build_ngram_table(smiles, n_max=settings.n_max, progress=False)
    rates = pd.Series(
        {
            "SMILES fragments": unk_rate(tokenizer, table.texts),
            "group names": unk_rate(tokenizer, [" ".join(n) for n in table.names]),
        },
        name="unknown-token rate",
    )
    res = TextSection(example=example, unk_token_rate=rates, vocab_size=len(tokenizer))
    for kind, rate in rates.items():
        res.add_row(name, f"n-gram text: {kind}", "unk_token_rate", rate, seed=settings.seed)
    return res


# --------------------------------------------------------------------------- 3. tuning


def tune(settings: Settings, data: DataSection, progress: bool = False) -> TuningSection:
    """Per dataset: group n-grams, frozen-prefix states, graphs, then the LM stage
    (`select_lm`) and the GIN (`select_gin`) chosen on the tuning part. Rows: every candidate's
    log-loss and accuracy on the tuning part (note ``chosen`` on the kept one)."""
    from molkit.chem import graphs_from_smiles
    from molkit.models.prefix import load_chemical_lm

    res = TuningSection(chemical_lm=load_chemical_lm(settings.lm_model))
    for name, df in data.frames.items():
        start = time.perf_counter()
        smiles = df["smiles"].tolist()
        table = build_ngram_table(smiles, settings.n_max, progress=progress)
        prefixes = PrefixCache(res.chemical_lm, smiles, table.texts, settings.max_length, progress)
        graphs = graphs_from_smiles(smiles, progress=False)
        res.inputs[name] = DatasetInputs(table, prefixes, graphs)
        splits = data.splits[name]
        res.lm[name] = select_lm(settings, df, splits, prefixes, progress)
        res.gin[name] = select_gin(settings, df, splits, graphs)
        res.seconds[name] = time.perf_counter() - start
        res.add_row(name, "tuning part", "section_seconds", res.seconds[name], settings.seed)
        for c in res.lm[name].candidates:
            note = "chosen" if c.config == res.lm[name].chosen else ""
            for metric, value in (
                ("tuning_log_loss", c.tune_log_loss),
                ("tuning_accuracy", c.tune_accuracy),
            ):
                res.add_row(
                    name, f"LM stage: {c.config}", metric, value, settings.seed, "tune", note
                )
        for row in res.gin[name].table.to_dict("records"):
            method = f"GIN: {row['depth']} layers x {row['width']}, {row['pooling']} pooling"
            for metric in ("tuning log-loss", "tuning accuracy"):
                res.add_row(
                    name,
                    method,
                    metric.replace(" ", "_").replace("-", "_"),
                    row[metric],
                    settings.seed,
                    "tune",
                    "chosen" if row["chosen"] else "",
                )
    return res


# --------------------------------------------------------------------------- 4. cross-validation


def _interval_row(settings: Settings, runs, method: str, baseline: str) -> dict[str, Any]:
    """Pooled test accuracy of ``method`` minus ``baseline`` over ``runs`` with its two-level
    paired interval (molecules and training seeds). Call inside `final_scoring`."""
    y, a = pooled_classes(runs, method)
    _, b = pooled_classes(runs, baseline)
    boot = paired_bootstrap(y, a, b, accuracy, n_boot=settings.n_boot, seed=0)
    return {
        "accuracy": boot["a"],
        "baseline accuracy": boot["b"],
        "difference": boot["diff"],
        "low": boot["low"],
        "high": boot["high"],
        "verdict": verdict_from_interval(boot["low"], boot["high"]),
        "n": len(y),
        "seeds": f"{boot['seeds_a']} / {boot['seeds_b']}",
    }


def cross_validate(
    settings: Settings, data: DataSection, tuning: TuningSection, progress: bool = False
) -> CVSection:
    """`run_dataset` on every dataset with the configurations its tuning part chose, and the
    tables the notebook shows (`CVSection`)."""
    res = CVSection()
    for name, df in data.frames.items():
        inputs = tuning.inputs[name]
        run = run_dataset(
            settings,
            df,
            data.splits[name],
            inputs.table,
            inputs.prefixes,
            tuning.lm[name],
            tuning.gin[name],
            inputs.graphs,
            progress,
        )
        res.runs[name], res.seconds[name] = run, run.seconds
        res.add_rows(run.rows.to_dict("records"))
        res.add_row(name, "cross-validation", "section_seconds", run.seconds, settings.seed)
    frame = res.frame()
    scores = frame[frame["metric"].isin(["accuracy", "roc_auc"])]
    res.accuracy_table = mean_pm_std(
        scores[scores["method"].isin(MAIN_METHODS)], index="method", columns=("dataset", "metric")
    )
    ablation = frame[frame["metric"].isin(["accuracy", "token_auc_abs"])]
    res.ablation_table = mean_pm_std(
        ablation[ablation["method"].isin(ABLATION_METHODS)],
        index="method",
        columns=("metric", "dataset"),
    )
    res.parameters = frame[frame["metric"] == "n_parameters"].groupby("method")["value"].first()
    res.finetune = pd.concat(
        [r.finetune.assign(dataset=n) for n, r in res.runs.items()], ignore_index=True
    )
    res.choices = pd.concat(
        [r.choices.assign(dataset=n) for n, r in res.runs.items()], ignore_index=True
    )
    gains, intervals = [], []
    others = [
        *ABLATION_VARIANTS,
        "MoleX w/o calibration",
        "Fine-tuned LM",
        "Morgan FP + LR",
        "Morgan FP + RF",
        "GIN",
    ]
    with final_scoring():
        for name, run in res.runs.items():
            one = {name: run}
            gains.append({"dataset": name, **_interval_row(settings, one, "Fine-tuned LM", PRIOR)})
            for other in others:
                if run.has(other):
                    row = _interval_row(settings, one, "MoleX", other)
                    intervals.append({"dataset": name, "MoleX minus": other, **row})
    res.lm_gain = pd.DataFrame(gains).rename(
        columns={"accuracy": "LM accuracy", "baseline accuracy": "prior accuracy"}
    )
    res.ablation_intervals = pd.DataFrame(intervals)
    return res


# --------------------------------------------------------------------------- 5. step by step


def walkthrough(settings: Settings, cv: CVSection, dataset: str | None = None) -> Walkthrough:
    """MoleX on one dataset (default the first), read from its first fold (nothing is refit):
    the first test molecule with a ground truth, else the first."""
    from molkit.eval.explain import token_truth

    name = dataset or settings.datasets[0]
    run = cv.runs[name]
    f = run.first
    table, mx, df = f.table, f.molex, f.df
    target = df.attrs["explain_class"]
    with_truth = [i for i in f.test if df["truth"].iloc[i] is not None]
    i = int(with_truth[0] if with_truth else f.test[0])
    contrib = mx.ngram_contributions(f.centred, target)
    contrib_uncal = mx.ngram_contributions(f.centred, target, calibrated=False)
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
    multi = mx.n_classes > 2  # contributions toward the target logit minus the mean logit
    col = target if multi else 0
    coef = mx.coef[:, col] - (mx.coef.mean(1) if multi else 0)
    intercept = float(c[col] - (c.mean() if multi else 0))
    logits = mx.decision_function(f.features[[i]])[0]
    total = float(contrib[[t for t, _ in table.occurrences[i]]].sum())
    comp = 0 if mx.complement is None else mx.complement.n_components
    return Walkthrough(
        dataset=name,
        molecule=df["smiles"].iloc[i],
        tokens=tokens,
        ngrams=ngrams,
        sizes=pd.Series(
            {
                "LM stage": str(f.config),
                "n-gram texts (dataset)": len(table.texts),
                "feature width (bottleneck mean)": f.centred.shape[1],
                "components (sparse reduction)": mx.reduction.n_components,
                "zero loadings": round(mx.reduction.sparsity, 3),
                "complement components (calibration)": comp,
                "calibration rounds kept": mx.calib_rounds,
                "calibration cap": mx.calib_cap,
            },
            name=name,
        ),
        loadings=mx.reduction.loadings,
        weights=coef,
        logit=pd.Series(
            {
                "intercept": intercept,
                "sum of n-gram contributions": total,
                "intercept + sum": intercept + total,
                "model logit": float(logits[col] - (logits.mean() if multi else 0)),
            },
            name="logit toward the explained class",
        ),
        calibration=run.calibration[0],
        atom_scores=atoms,
        truth=truth,
    )


# --------------------------------------------------------------------------- 6. explanations


def explanation_scores(settings: Settings, data: DataSection, cv: CVSection) -> ExplanationSection:
    """Explanation AUC of `EXPLAINED_METHODS` on the test molecules with a ground truth, per
    dataset and reading (atom / group token, signed / |importance|)."""
    rows = []
    for name, run in cv.runs.items():
        for method in EXPLAINED_METHODS:
            for reading in READING_METRICS:
                values = run.pooled_explanations(method, reading)[1]
                ok = np.isfinite(values).all(0) if values.size else np.zeros(0, bool)
                rows.append(
                    {
                        "dataset": name,
                        "method": method,
                        "reading": reading,
                        "auc": float(values[:, ok].mean()) if ok.any() else float("nan"),
                        "n_explained": int(ok.sum()),
                        "enriched": data.enrichment[name].enriched,
                    }
                )
    scores = pd.DataFrame(rows)
    cells = [
        f"{a:.3f} (n={n})" if n else "-"
        for a, n in zip(scores["auc"], scores["n_explained"], strict=True)
    ]
    table = scores.assign(cell=cells).pivot_table(
        index="method", columns=["reading", "dataset"], values="cell", aggfunc="first", sort=False
    )
    return ExplanationSection(scores=scores, table=table)


# --------------------------------------------------------------------------- 7. the LLM


def llm_classifier(settings: Settings, data: DataSection, cv: CVSection) -> LLMSection:
    """The instruction LLM (``settings.llm_model``) as a classifier on the same folds:
    zero-shot as it is and with its label prior corrected (the correction chosen on the tuning
    part), a probe on its hidden state and LoRA tuning where the settings list the dataset
    (`molkit.methods.molex.llm_arms.score_llm`)."""
    return score_llm(settings, data.frames, data.splits, data.prompts, cv.runs)


# --------------------------------------------------------------------------- 8. throughput


def throughput(
    settings: Settings, tuning: TuningSection, cv: CVSection, llm: LLMSection | None = None
) -> SpeedSection:
    """MoleX end to end on known n-grams against the fine-tuned rxnfp-BERT classifier and the
    SmolLM2 label-word classifier, on the first fold's test molecules of
    ``settings.speed_dataset`` (else the first dataset), the memo warmed on its training part."""
    from molkit.methods.molex.benchmark import speed_report
    from molkit.methods.molex.inference import NgramPredictor

    name = settings.speed_dataset if settings.speed_dataset in cv.runs else settings.datasets[0]
    f = cv.runs[name].first
    smiles = f.df["smiles"].to_numpy()
    W, c = f.molex.weights()
    report = speed_report(
        smiles[f.test][: settings.speed_molecules].tolist(),
        warm=smiles[f.train].tolist(),
        predictor=NgramPredictor.from_linear(f.table.texts, f.centred, W, c, settings.n_max),
        chemical_lm=tuning.chemical_lm,
        classifier=f.classifier,
        llm=None if llm is None else llm.lm,
        dataset=None if llm is None else llm.prompts[name],
        n_max=settings.n_max,
        repeats=settings.speed_repeats,
        max_length=settings.max_length,
    )
    params = cv.parameters
    rows = [
        ("MoleX, known n-grams (end to end)", "molex", params.get("MoleX", np.nan)),
        ("fine-tuned rxnfp-BERT classifier", "rxnfp_bert", params.get("Fine-tuned LM", np.nan)),
    ]
    if "smollm2" in report:
        rows.append(("SmolLM2 label-word classifier", "smollm2", llm.parameters))
    table = pd.DataFrame(
        [
            {
                "pipeline": label,
                "molecules/s": report[key]["mol_per_s"],
                **{f"share: {k}": v for k, v in report[key]["shares"].items()},
                "stored parameters": p,
                "MoleX speed-up over it": report[key]["seconds"] / report["molex"]["seconds"],
            }
            for label, key, p in rows
        ]
    )
    res = SpeedSection(dataset=name, report=report, table=table)
    for label, key, _ in rows:
        res.add_row(name, label, "molecules_per_s", report[key]["mol_per_s"], settings.seed)
    for key in ("speedup_vs_rxnfp_bert", "speedup_vs_smollm2"):
        if key in report:
            res.add_row(name, "MoleX", key, report[key], settings.seed)
    res.add_row(
        name,
        "MoleX",
        "group_matching_per_s",
        report["molex"]["group_matching_mol_per_s"],
        settings.seed,
    )
    return res


# --------------------------------------------------------------------------- 9. calibration


def calibration_gain(settings: Settings, cv: CVSection) -> CalibrationSection:
    """MoleX minus MoleX without calibration (same folds, seeds and features)."""
    rows = []
    with final_scoring():
        for name, run in cv.runs.items():
            y, cal = pooled_classes({name: run}, "MoleX")
            _, uncal = pooled_classes({name: run}, "MoleX w/o calibration")
            gain = np.mean(
                [accuracy(y, a) - accuracy(y, b) for a, b in zip(cal, uncal, strict=True)]
            )
            rows.append({"dataset": name, "metric": "accuracy", "gain": 100 * float(gain)})
            for reading, (metric, _) in READING_METRICS.items():
                a = run.pooled_explanations("MoleX", reading)[1]
                b = run.pooled_explanations("MoleX w/o calibration", reading)[1]
                ok = np.isfinite(a).all(0) & np.isfinite(b).all(0) if a.size else np.zeros(0, bool)
                value = 100 * float(np.mean(a[:, ok] - b[:, ok])) if ok.any() else float("nan")
                rows.append({"dataset": name, "metric": metric, "gain": value})
    gain = pd.DataFrame(rows)
    frame = cv.frame()
    mx = frame[frame["method"] == "MoleX"]
    kept = mx[mx["metric"] == "calibration_rounds"].groupby("dataset")["value"]
    capped = mx[mx["metric"] == "calibration_capped"].groupby("dataset")["value"]
    rounds = kept.describe()[["mean", "min", "max"]].assign(
        cap=settings.calib_rounds, **{"folds at the cap (share)": capped.mean()}
    )
    res = CalibrationSection(
        gain=gain,
        rounds=rounds,
        histories={name: run.calibration for name, run in cv.runs.items()},
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
    return res
