"""MoleX, its one-factor variants and the baselines on one dataset, fold by fold
(`molkit.methods.molex.protocol.dataset_splits`).

Per fold: the LM stage chosen on the tuning part is fine-tuned with every training seed
(``settings.lm_seeds``); each seed's n-gram features give MoleX and its variants; the baselines
fit on the same training part and choose on the same validation part. Test labels and the test
molecules' ground truth are sealed (`molkit.data.sealed`) as the fold starts and read only by
`_score_fold`, inside `final_scoring`: every choice above reads training and validation labels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from molkit.data.sealed import SealedLabels, final_scoring, seal
from molkit.eval.explain import atom_auc, random_attributions, token_truth
from molkit.methods.molex.baselines import fingerprint_baselines, gin_baseline
from molkit.methods.molex.method import (
    MolexModel,
    classification_scores,
    embed_prefix,
    fit_molex,
    predict_proba_lm,
)
from molkit.methods.molex.ngrams import (
    NgramTable,
    atom_scores_from_ngrams,
    molex_features,
    token_scores_from_ngrams,
)
from molkit.methods.molex.protocol import (
    GINChoice,
    LMChoice,
    LMConfig,
    PrefixCache,
    Splits,
    finetune,
    prior_proba,
)
from molkit.methods.molex.settings import Settings

__all__ = [
    "ABLATION_VARIANTS",
    "EXPLAINED_METHODS",
    "PRIOR",
    "READINGS",
    "READING_METRICS",
    "VARIANTS",
    "DatasetRun",
    "FirstFold",
    "accuracy",
    "mean_value",
    "per_molecule_auc",
    "pooled_auc",
    "pooled_classes",
    "run_dataset",
    "save_examples",
]

#: The trivial baseline: the training class prior (no row of its own).
PRIOR = "Training prior"
#: The methods whose attributions are scored per test molecule (`DatasetRun.explanations`).
EXPLAINED_METHODS = ("MoleX", "MoleX w/o calibration", "Morgan FP + LR", "Random attribution")
#: How an attribution is read: per atom or per group token, signed (toward the explained class)
#: or by magnitude (|importance|).
READINGS = ("atom", "atom_abs", "token", "token_abs")
#: The metric name of each reading's mean explanation AUC, and of its number of molecules scored.
READING_METRICS = {
    "atom": ("explanation_auc", "n_explained"),
    "atom_abs": ("explanation_auc_abs", "n_explained"),
    "token": ("token_auc", "n_explained_tokens"),
    "token_abs": ("token_auc_abs", "n_explained_tokens"),
}
#: MoleX and its one-factor variants: (method, features, reduction, calibrated). Features: ``mu``
#: (bottleneck mean of the IB fine-tuned LM), ``pooled`` (the pooled LM output under that
#: bottleneck), ``beta0`` (bottleneck mean after fine-tuning with beta = 0), ``frozen`` (the
#: bottleneck mean of a head trained on the frozen pretrained LM: no fine-tuning, same feature).
VARIANTS = (
    ("MoleX", "mu", "sparse", True),
    ("MoleX w/o calibration", "mu", "sparse", False),
    ("MoleX (PCA)", "mu", "pca", True),
    ("MoleX (pooled h)", "pooled", "sparse", True),
    ("MoleX (beta=0)", "beta0", "sparse", True),
    ("MoleX (no fine-tuning)", "frozen", "sparse", True),
)
#: The variants that run only on `Settings.ablation_datasets`; beta = 0 on the first seed only.
ABLATION_VARIANTS = ("MoleX (PCA)", "MoleX (pooled h)", "MoleX (beta=0)", "MoleX (no fine-tuning)")


@dataclass
class FirstFold:
    """The first fold's fitted objects (seed 0), for the walkthrough and the speed section."""

    table: NgramTable
    molex: MolexModel
    centred: np.ndarray
    classifier: Any
    config: LMConfig
    train: np.ndarray
    test: np.ndarray
    df: pd.DataFrame
    features: np.ndarray


@dataclass
class DatasetRun:
    """What `run_dataset` measured on one dataset.

    ``tests[k]``: fold k's test molecules (row indices); ``labels[k]`` their labels, sealed
    (`molkit.data.sealed.SealedLabels`); ``predictions[(k, method)]``: class probabilities
    (n_seeds, n_test, n_classes), one row per training seed (1 for a model trained once or not
    trained, e.g. `PRIOR`); ``explanations[(k, method, reading)]``: per test molecule explanation
    AUC (n_seeds, n_test), NaN where undefined. ``rows``: tidy results (per fold: the mean over
    seeds). ``finetune``: every LM run's history (fold, seed, arm); ``calibration[k]``: MoleX's
    calibration history (seed 0); ``choices``: what each fold's validation part chose (Morgan's
    C and leaf size, the GIN's epoch); ``examples``: the first fold's test molecules with MoleX
    atom scores and the ground truth; ``first``: `FirstFold`."""

    name: str
    n_classes: int
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    tests: dict[int, np.ndarray] = field(default_factory=dict)
    labels: dict[int, SealedLabels] = field(default_factory=dict)
    predictions: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    explanations: dict[tuple[int, str, str], np.ndarray] = field(default_factory=dict)
    finetune: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration: dict[int, pd.DataFrame] = field(default_factory=dict)
    choices: pd.DataFrame = field(default_factory=pd.DataFrame)
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    first: FirstFold | None = None
    seconds: float = 0.0

    @property
    def splits(self) -> list[int]:
        return sorted(self.tests)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for _, m in self.predictions))

    def has(self, method: str) -> bool:
        return any(m == method for _, m in self.predictions)

    def pooled(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(molecule indices, labels, probabilities (n_seeds, n, n_classes)) of ``method`` over
        every fold's test part. Reads the sealed labels: call inside `final_scoring`."""
        ks = [k for k in self.splits if (k, method) in self.predictions]
        if not ks:
            raise KeyError(f"no predictions of {method!r} on {self.name}")
        return (
            np.concatenate([self.tests[k] for k in ks]),
            np.concatenate([self.labels[k].read() for k in ks]),
            np.concatenate([self.predictions[k, method] for k in ks], axis=1),
        )

    def pooled_explanations(self, method: str, reading: str) -> tuple[np.ndarray, np.ndarray]:
        """(molecule indices, per-molecule explanation AUC (n_seeds, n)) of ``method``."""
        ks = [k for k in self.splits if (k, method, reading) in self.explanations]
        if not ks:
            return np.zeros(0, dtype=int), np.zeros((1, 0))
        return (
            np.concatenate([self.tests[k] for k in ks]),
            np.concatenate([self.explanations[k, method, reading] for k in ks], axis=1),
        )


def per_molecule_auc(atoms: Sequence[np.ndarray], truths: Sequence) -> np.ndarray:
    """Explanation AUC of each molecule (n,), NaN where it has no ground truth or an undefined
    one (`molkit.eval.explain.atom_auc`)."""
    return np.array(
        [np.nan if t is None else atom_auc(a, t) for a, t in zip(atoms, truths, strict=True)]
    )


def _explain(
    table: NgramTable,
    te: np.ndarray,
    atoms: list,
    truths: Sequence,
    token_level: list | None = None,
) -> dict[str, np.ndarray]:
    """Per-molecule explanation AUC (n_test,) of atom attributions in every reading. Token scores
    are the sums of atom scores unless ``token_level`` gives them (random attribution draws its
    own per token)."""
    token_truths = [
        token_truth(t, [a for _, a in table.tokens[i]]) for t, i in zip(truths, te, strict=True)
    ]
    toks = token_level if token_level is not None else token_scores_from_ngrams(table, atoms, te)
    return {
        "atom": per_molecule_auc(atoms, truths),
        "atom_abs": per_molecule_auc([np.abs(a) for a in atoms], truths),
        "token": per_molecule_auc(toks, token_truths),
        "token_abs": per_molecule_auc([np.abs(t) for t in toks], token_truths),
    }


def _bottleneck_mean(clf, pooled: np.ndarray) -> np.ndarray:
    """``clf``'s bottleneck mean of pooled embeddings (n, hidden) float32: what
    ``embed_prefix(clf, prefix, "mu")`` returns for the same texts."""
    import torch

    with torch.no_grad():
        return clf.mu(torch.from_numpy(pooled)).numpy()


def _rows(dataset: str, method: str, k: int, seed: int, metrics: dict, note: str = "") -> list:
    return [
        {
            "dataset": dataset,
            "method": method,
            "metric": m,
            "value": float(v),
            "seed": seed,
            "split": f"fold {k}",
            "note": note,
        }
        for m, v in metrics.items()
    ]


def _sealed_truths(df: pd.DataFrame, te: np.ndarray, name: str) -> SealedLabels:
    """The test molecules' ground truth, sealed: a MUTAG / PTC truth exists only for positives,
    so it tells the label."""
    values = np.empty(len(te), dtype=object)
    values[:] = [df["truth"].iloc[i] if "truth" in df else None for i in te]
    return seal(values, f"{name} test ground truth")


def _score_fold(
    run: DatasetRun,
    k: int,
    table: NgramTable,
    te: np.ndarray,
    truths: SealedLabels,
    attributions: dict[str, list[list[np.ndarray]]],
    notes: dict[str, str],
    seed: int,
    random_tokens: list,
) -> list[dict]:
    """Fold k's test metrics and explanation AUCs, the one place its test labels and ground
    truth are read (inside `final_scoring`). Rows hold the mean over training seeds."""
    rows = []
    methods = [m for kk, m in run.predictions if kk == k and m != PRIOR]
    methods += [m for m in attributions if m not in methods]
    with final_scoring():
        y, truth = run.labels[k].read(), list(truths.read())
        for method in methods:
            metrics = {}
            if (k, method) in run.predictions:
                per_seed = [classification_scores(y, p) for p in run.predictions[k, method]]
                metrics = {m: float(np.mean([s[m] for s in per_seed])) for m in per_seed[0]}
            if method in attributions:
                token = random_tokens if method == "Random attribution" else None
                per = [_explain(table, te, a, truth, token) for a in attributions[method]]
                for reading in READINGS:
                    run.explanations[k, method, reading] = np.stack([p[reading] for p in per])
                for reading, (auc_name, n_name) in READING_METRICS.items():
                    values = run.explanations[k, method, reading]
                    ok = np.isfinite(values[0])
                    metrics[auc_name] = float(values[:, ok].mean()) if ok.any() else float("nan")
                    metrics[n_name] = int(ok.sum())
            rows += _rows(run.name, method, k, seed, metrics, notes.get(method, ""))
    return rows


def run_dataset(
    settings: Settings,
    df: pd.DataFrame,
    splits: Splits,
    table: NgramTable,
    prefixes: PrefixCache,
    lm: LMChoice,
    gin: GINChoice,
    graphs: Sequence,
    progress: bool = False,
) -> DatasetRun:
    """MoleX, its one-factor variants (`VARIANTS`; the ablations on ``settings.ablation_datasets``
    only) and the baselines (``Fine-tuned LM``, ``Morgan FP + LR``, ``Morgan FP + RF``, ``GIN``,
    ``Random attribution``, `PRIOR`) on every fold of ``splits``. ``table``: the dataset's group
    n-grams; ``prefixes``: its frozen-prefix states; ``lm`` / ``gin``: the configurations chosen
    on the tuning part; ``graphs``: the molecules as graphs."""
    s, start = settings, time.perf_counter()
    name, n_classes, target = df.attrs["name"], df.attrs["n_classes"], df.attrs["explain_class"]
    y, smiles = df["label"].to_numpy(), df["smiles"].tolist()
    config, n_seeds = lm.chosen, s.lm_seeds
    ablate = name in s.ablation_datasets
    variants = [v for v in VARIANTS if ablate or v[0] not in ABLATION_VARIANTS]
    run = DatasetRun(name, n_classes)
    rows, histories, choices = [], [], []
    fit_kw = dict(
        n_components=s.n_components,
        sparse_alpha=s.sparse_alpha,
        logreg_c=s.logreg_c,
        complement_components=s.complement_components,
        calib_rounds=s.calib_rounds,
        calib_lr=s.calib_lr,
        calib_ridge=s.calib_ridge,
        calib_patience=s.calib_patience,
    )
    seed_note = f"mean of {n_seeds} training seeds" if n_seeds > 1 else ""
    notes = {m: seed_note for m, *_ in VARIANTS if m != "MoleX (beta=0)"}
    notes["Fine-tuned LM"] = f"{config}; {seed_note}".rstrip("; ")
    for k, split in enumerate(splits.folds):
        tr, va, te = split["train"], split["valid"], split["test"]
        y_tr, y_va = y[tr], y[va]
        run.tests[k], run.labels[k] = te, seal(y[te], f"{name} fold {k} test labels")
        truths = _sealed_truths(df, te, name)
        run.predictions[k, PRIOR] = prior_proba(y_tr, len(te), n_classes)[None]
        preds: dict[str, list[np.ndarray]] = {}
        attributions: dict[str, list[list[np.ndarray]]] = {}
        extra: dict[str, dict[str, list[float]]] = {}

        def train(cfg: LMConfig, seed: int, arm: str, k=k, tr=tr, va=va, y_tr=y_tr, y_va=y_va):
            clf, hist = finetune(s, prefixes, y, n_classes, cfg, tr, va, y_tr, y_va, seed, progress)
            histories.append(
                hist.records.assign(
                    fold=k, seed=seed, arm=arm, kept=hist.records["epoch"] == hist.best_epoch
                )
            )
            return clf, hist

        for i in range(n_seeds):
            seed = s.seed + 1000 * i + k
            clf, hist = train(config, seed, "chosen")
            ngrams = prefixes.ngrams(config.layers)
            preds.setdefault("Fine-tuned LM", []).append(
                predict_proba_lm(clf, prefixes.molecules(config.layers).subset(te))
            )
            extra.setdefault("Fine-tuned LM", {}).setdefault("best_epoch", []).append(
                hist.best_epoch
            )
            if ablate:  # one pass: mu is the bottleneck's map of the pooled h
                features = {"pooled": embed_prefix(clf, ngrams, "pooled")}
                features["mu"] = _bottleneck_mean(clf, features["pooled"])
            else:
                features = {"mu": embed_prefix(clf, ngrams, "mu")}
            if ablate:
                head, _ = train(LMConfig(0, config.lr, config.beta), seed, "frozen LM")
                features["frozen"] = embed_prefix(head, prefixes.ngrams(0), "mu")
                if i == 0:
                    beta0, _ = train(LMConfig(config.layers, config.lr, 0.0), seed, "beta=0")
                    features["beta0"] = embed_prefix(beta0, ngrams, "mu")
            fitted: dict[str, tuple[MolexModel, np.ndarray, np.ndarray]] = {}
            for method, feature, reduction, calibrated in variants:
                if feature not in features:
                    continue
                key = f"{feature}/{reduction}"
                if key not in fitted:
                    X, centred = molex_features(table, features[feature], tr)
                    mx = fit_molex(
                        X[tr],
                        y_tr,
                        X[va],
                        y_va,
                        n_classes,
                        reduction=reduction,
                        seed=seed,
                        **fit_kw,
                    )
                    fitted[key] = (mx, X, centred)
                mx, X, centred = fitted[key]
                preds.setdefault(method, []).append(mx.predict_proba(X[te], calibrated))
                if calibrated:
                    figures = extra.setdefault(method, {})
                    figures.setdefault("calibration_rounds", []).append(mx.calib_rounds)
                    figures.setdefault("calibration_capped", []).append(mx.calibration_capped)
                if method in EXPLAINED_METHODS:
                    contrib = mx.ngram_contributions(centred, target, calibrated)
                    attributions.setdefault(method, []).append(
                        atom_scores_from_ngrams(table, contrib, te)
                    )
                if method == "MoleX" and i == 0:
                    run.calibration[k] = mx.history
                    if k == 0:
                        run.first = FirstFold(table, mx, centred, clf, config, tr, te, df, X)
        for method, per_seed in preds.items():
            run.predictions[k, method] = np.stack(per_seed)
        fp = fingerprint_baselines(
            smiles,
            y_tr,
            y_va,
            split,
            n_classes,
            target,
            radius=s.morgan_radius,
            n_bits=s.morgan_bits,
            c_grid=s.morgan_c_grid,
            rf_trees=s.rf_trees,
            leaf_grid=s.rf_leaf_grid,
            seed=s.seed + k,
        )
        run.predictions[k, "Morgan FP + LR"] = fp.proba_lr[None]
        run.predictions[k, "Morgan FP + RF"] = fp.proba_rf[None]
        attributions["Morgan FP + LR"] = [fp.attributions]
        model, out = gin_baseline(
            graphs,
            y_tr,
            y_va,
            split,
            n_classes,
            gin.chosen,
            s.gin_epochs,
            s.gin_patience,
            s.seed + k,
        )
        run.predictions[k, "GIN"] = out["test"][None]
        attributions["Random attribution"] = [random_attributions(table.n_atoms[te], s.seed + k)]
        random_tokens = random_attributions([len(table.tokens[i]) for i in te], s.seed + 1000 + k)
        choices.append(
            {
                "fold": k,
                "Morgan LR C": fp.c,
                "Morgan RF min_samples_leaf": fp.leaf,
                "GIN kept epoch": int(model.history_.best_epoch),
            }
        )
        fold_rows = _score_fold(
            run, k, table, te, truths, attributions, notes, s.seed, random_tokens
        )
        for method, figures in extra.items():
            fold_rows += _rows(
                name,
                method,
                k,
                s.seed,
                {m: float(np.mean(v)) for m, v in figures.items()},
                notes.get(method, ""),
            )
        rows += fold_rows
        if k == 0:
            run.examples = _examples(run, df, te, truths)
    run.finetune = pd.concat(histories, ignore_index=True)
    run.choices = pd.DataFrame(choices)
    first = run.first
    lm_params = sum(
        p.numel()
        for part in (
            prefixes.model.embeddings,
            prefixes.model.encoder,
            first.classifier.mu,
            first.classifier.log_var,
            first.classifier.head,
        )
        for p in part.parameters()
    )
    rows += _rows(name, "Fine-tuned LM", 0, s.seed, {"n_parameters": lm_params})
    rows += _rows(
        name,
        "MoleX",
        0,
        s.seed,
        {
            "n_parameters": first.molex.n_parameters_deployed(len(table.texts)),
            "loading_sparsity": first.molex.reduction.sparsity,
            "n_unique_ngrams": len(table.texts),
            "n_molecules": len(df),
        },
    )
    run.rows = pd.DataFrame(rows)
    run.seconds = time.perf_counter() - start
    return run


def _examples(run: DatasetRun, df: pd.DataFrame, te: np.ndarray, truths: SealedLabels):
    """The first fold's test molecules with MoleX's atom scores (seed 0, calibrated and not),
    its prediction, label and ground truth (for drawing)."""
    first = run.first
    mx, table = first.molex, first.table
    target = df.attrs["explain_class"]
    cal = atom_scores_from_ngrams(table, mx.ngram_contributions(first.centred, target), te)
    uncal = atom_scores_from_ngrams(table, mx.ngram_contributions(first.centred, target, False), te)
    with final_scoring():
        labels, truth = run.labels[0].read(), list(truths.read())
    return pd.DataFrame(
        {
            "smiles": df["smiles"].iloc[te].to_numpy(),
            "label": labels,
            "truth": truth,
            "molex": cal,
            "molex_uncalibrated": uncal,
            "prediction": mx.predict(first.features[te]),
        }
    )


# --------------------------------------------------------------------------- pooled scoring


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Share of items whose predicted class (n,) equals the label (n,)."""
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def mean_value(y: np.ndarray, values: np.ndarray) -> float:
    """The mean of per-item values (e.g. explanation AUCs); ``y`` is unused."""
    return float(np.mean(values))


def pooled_classes(
    runs: dict[str, DatasetRun], method: str, idx: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), predicted classes (n_seeds, n)) of ``method`` over the test molecules of
    ``runs`` (datasets in order; ``idx[name]``: only those molecules of a dataset, in that
    order). Reads sealed labels: call inside `final_scoring`."""
    ys, preds = [], []
    for name, run in runs.items():
        where, y, proba = run.pooled(method)
        if idx is not None:
            pos = _positions(where, idx[name])
            y, proba = y[pos], proba[:, pos]
        ys.append(y)
        preds.append(proba.argmax(-1))
    return np.concatenate(ys), np.concatenate(preds, axis=1)


def _positions(where: np.ndarray, idx: np.ndarray) -> np.ndarray:
    order = np.argsort(where)
    pos = order[np.searchsorted(where[order], idx)]
    if not np.array_equal(where[pos], idx):
        raise ValueError("some molecules asked for have no test prediction")
    return pos


def pooled_auc(
    runs: dict[str, DatasetRun], method: str, baseline: str, reading: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-molecule explanation AUCs of ``method`` (n_seeds, n) and ``baseline`` (n_seeds_b, n)
    over the test molecules of ``runs`` where both are defined."""
    pairs = [
        (r.pooled_explanations(method, reading)[1], r.pooled_explanations(baseline, reading)[1])
        for r in runs.values()
    ]
    pairs = [(x, z) for x, z in pairs if x.shape[1] and z.shape[1]]
    if not pairs:
        return np.zeros((1, 0)), np.zeros((1, 0))
    a = np.concatenate([x for x, _ in pairs], axis=1)
    b = np.concatenate([z for _, z in pairs], axis=1)
    keep = np.isfinite(a).all(0) & np.isfinite(b).all(0)
    return a[:, keep], b[:, keep]


def save_examples(examples: pd.DataFrame, path) -> None:
    """Write explanation examples (`DatasetRun.examples`; atom scores as lists) as JSON lines."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = examples.copy()
    for col in ("truth", "molex", "molex_uncalibrated"):
        frame[col] = [None if v is None else np.asarray(v).tolist() for v in frame[col]]
    frame.to_json(path, orient="records", lines=True)
