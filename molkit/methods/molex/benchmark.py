"""MoleX, its ablations and the baselines on one explanation dataset, seed by seed, and the CPU
inference speed of MoleX against the fine-tuned LM.

`run_dataset` is the whole per-dataset protocol (stratified k-fold cross-validation; test labels
are read only to score): group n-grams, frozen LM layers once per text, IB fine-tuning, n-gram
embeddings at the bottleneck mean, MoleX and its one-factor variants, the baselines, test metrics
and explanation AUCs per atom and per group token. `measure_throughput` times
the deployed pipelines on the same test molecules.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from molkit.data.explain import explain_splits
from molkit.eval.explain import atom_auc, random_attributions, token_truth
from molkit.methods.molex.baselines import fingerprint_baselines, gin_baseline
from molkit.methods.molex.method import (
    IBClassifier,
    MolexModel,
    classification_scores,
    embed_prefix,
    finetune_ib,
    fit_molex,
    predict_proba_lm,
)
from molkit.methods.molex.ngrams import (
    NgramTable,
    atom_scores_from_ngrams,
    build_ngram_table,
    molex_features,
    token_scores_from_ngrams,
)
from molkit.models.prefix import encode_prefix, prefix_hidden

if TYPE_CHECKING:
    from molkit.methods.molex.experiment import Settings

__all__ = [
    "ABLATION_VARIANTS",
    "EXPLAINED_METHODS",
    "READINGS",
    "READING_METRICS",
    "VARIANTS",
    "DatasetRun",
    "dataset_splits",
    "measure_throughput",
    "per_molecule_auc",
    "run_dataset",
    "save_examples",
    "throughput_summary",
]

#: The methods whose attributions are kept per test molecule (`DatasetRun.explanations`).
EXPLAINED_METHODS = ("MoleX", "MoleX w/o calibration", "Morgan FP + LR", "Random attribution")
#: How an attribution is read: per atom or per group token, signed (toward the explained class)
#: or by magnitude (|importance|, as Lamole ranks tokens by gradient norms).
READINGS = ("atom", "atom_abs", "token", "token_abs")
#: The metric name of each reading's mean explanation AUC, and of its number of molecules scored.
READING_METRICS = {
    "atom": ("explanation_auc", "n_explained"),
    "atom_abs": ("explanation_auc_abs", "n_explained"),
    "token": ("token_auc", "n_explained_tokens"),
    "token_abs": ("token_auc_abs", "n_explained_tokens"),
}
#: MoleX and its one-factor variants: (method, features, reduction, calibrated). Features:
#: ``mu`` (bottleneck mean of the IB fine-tuned LM), ``pooled`` (the pooled LM output under the
#: bottleneck of the same model), ``beta0`` (bottleneck mean after fine-tuning with beta = 0),
#: ``pretrained`` (the pooled output of the LM without fine-tuning: it has no bottleneck).
VARIANTS = (
    ("MoleX", "mu", "sparse", True),
    ("MoleX w/o calibration", "mu", "sparse", False),
    ("MoleX (PCA)", "mu", "pca", True),
    ("MoleX (pooled h)", "pooled", "sparse", True),
    ("MoleX (beta=0)", "beta0", "sparse", True),
    ("MoleX (no fine-tuning)", "pretrained", "sparse", True),
)
#: The variants that run only on `Settings.ablation_datasets`.
ABLATION_VARIANTS = ("MoleX (PCA)", "MoleX (pooled h)", "MoleX (beta=0)", "MoleX (no fine-tuning)")


@dataclass
class DatasetRun:
    """What `run_dataset` measured on one dataset, split by split (the folds of a
    cross-validation: every molecule is tested once).

    ``rows``: tidy results (dataset, method, metric, value, seed (the split number), split, note).
    ``tests[k]``: split k's test molecules (row indices of the dataset); ``labels[k]`` their
    labels; ``predictions[(k, method)]``: their class probabilities (n_test, n_classes), also of
    the ``Training prior`` (no row of its own). ``explanations[(k, method, reading)]``: per test
    molecule explanation AUC (NaN where undefined) of `EXPLAINED_METHODS` in each of `READINGS`.
    ``examples``: the first split's test molecules with MoleX atom scores (calibrated and not) and
    ground truth. ``calibration[k]``: the calibration history (round, train/valid loss).
    ``finetune[k]``: the fine-tuning history (epoch, train_ce, train_kl, valid_ce, beta, kept).
    ``models``: the first split's fitted objects (for `measure_throughput` and inspection).
    """

    rows: pd.DataFrame
    predictions: dict[tuple[int, str], np.ndarray]
    examples: pd.DataFrame
    calibration: dict[int, pd.DataFrame]
    models: dict[str, Any]
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    explanations: dict[tuple[int, str, str], np.ndarray] = field(default_factory=dict)
    tests: dict[int, np.ndarray] = field(default_factory=dict)
    finetune: dict[int, pd.DataFrame] = field(default_factory=dict)

    @property
    def splits(self) -> list[int]:
        return sorted(self.tests)

    def pooled(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(molecule indices, labels, probabilities) of ``method`` over every split's test part."""
        ks = [k for k in self.splits if (k, method) in self.predictions]
        if not ks:
            raise KeyError(f"no predictions of {method!r}")
        return (
            np.concatenate([self.tests[k] for k in ks]),
            np.concatenate([self.labels[k] for k in ks]),
            np.concatenate([self.predictions[k, method] for k in ks]),
        )

    def pooled_explanations(self, method: str, reading: str) -> tuple[np.ndarray, np.ndarray]:
        """(molecule indices, per-molecule explanation AUC) of ``method`` over every split."""
        ks = [k for k in self.splits if (k, method, reading) in self.explanations]
        return (
            np.concatenate([self.tests[k] for k in ks]),
            np.concatenate([self.explanations[k, method, reading] for k in ks]),
        )


def _rows(
    dataset: str, method: str, seed: int, metrics: dict[str, float], note: str = ""
) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "method": method,
            "metric": k,
            "value": float(v),
            "seed": seed,
            "split": "test",
            "note": note,
        }
        for k, v in metrics.items()
    ]


def per_molecule_auc(atoms: Sequence[np.ndarray], truths: Sequence) -> np.ndarray:
    """Explanation AUC of each molecule (n,), NaN where it has no ground truth or an undefined
    one (`molkit.eval.explain.atom_auc`); its NaN-mean is `explanation_auc`'s mean."""
    return np.array(
        [np.nan if t is None else atom_auc(a, t) for a, t in zip(atoms, truths, strict=True)]
    )


def _training_prior(y_train: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """The training class prior as test probabilities (n_test, n_classes): the trivial baseline
    an LM is judged against first (`molkit.methods.baselines.training_mean`)."""
    from molkit.methods.baselines import training_mean

    prior = training_mean("classification").fit(np.zeros((len(y_train), 1)), y_train)
    proba = np.zeros((n_test, n_classes))
    proba[:, prior.classes_] = prior.predict_proba(np.zeros((n_test, 1)))
    return proba


def _token_truths(table: NgramTable, te: np.ndarray, truths: list) -> list:
    """Each test molecule's token ground truth (`molkit.eval.explain.token_truth`), or None."""
    return [
        token_truth(t, [a for _, a in table.tokens[i]]) for t, i in zip(truths, te, strict=True)
    ]


def _explain(
    table: NgramTable,
    te: np.ndarray,
    atoms: list,
    truths: list,
    token_truths: list,
    token_level: list | None = None,
) -> dict[str, np.ndarray]:
    """Per-molecule explanation AUC (n_test,) of atom attributions in every reading, against the
    atom ``truths`` and the fold's ``token_truths`` (`_token_truths`). Token scores are the sums of
    atom scores unless ``token_level`` gives them (random attribution draws its own per token)."""
    toks = token_level if token_level is not None else token_scores_from_ngrams(table, atoms, te)
    return {
        "atom": per_molecule_auc(atoms, truths),
        "atom_abs": per_molecule_auc([np.abs(a) for a in atoms], truths),
        "token": per_molecule_auc(toks, token_truths),
        "token_abs": per_molecule_auc([np.abs(t) for t in toks], token_truths),
    }


def _explanation_metrics(per_molecule: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean explanation AUC of every reading with its number of molecules scored."""
    out: dict[str, float] = {}
    for reading, (auc_name, n_name) in READING_METRICS.items():
        values = per_molecule[reading]
        ok = np.isfinite(values)
        out[auc_name] = float(values[ok].mean()) if ok.any() else float("nan")
        out[n_name] = int(ok.sum())
    return out


def dataset_splits(settings: Settings, df: pd.DataFrame) -> list[dict[str, np.ndarray]]:
    """The evaluation splits of one dataset: stratified ``settings.cv_folds``-fold
    cross-validation (``settings.liver_folds`` for Liver), seeded by ``settings.seed``, with a
    validation part of ``settings.valid_fraction`` carved out of every training fold
    (`molkit.data.explain.explain_splits`)."""
    folds = settings.liver_folds if df.attrs["name"] == "liver" else settings.cv_folds
    return explain_splits(df, folds, settings.seed, settings.valid_fraction)


def run_dataset(
    settings: Settings, df: pd.DataFrame, chemical_lm, progress: bool = False
) -> DatasetRun:
    """MoleX, its one-factor variants and the baselines on one dataset, fold by fold
    (`dataset_splits`).

    ``df``: shaped like `molkit.data.explain.load_explain_dataset`'s. Methods: `VARIANTS` (the
    ablations among them on ``settings.ablation_datasets`` only), ``Fine-tuned LM`` (the VIB
    classifier on whole SMILES), ``Morgan FP + LR``, ``Morgan FP + RF``, ``GIN``, ``Random
    attribution``. Metrics: accuracy, roc_auc, the explanation AUCs of `READING_METRICS` with
    their numbers of molecules, calibration_rounds, finetune_seconds, best_epoch, n_parameters.
    Test labels are read only to score predictions. ``chemical_lm``: a loaded (model, tokenizer)
    pair (`molkit.models.prefix.load_chemical_lm`).
    """
    s = settings
    model, tokenizer = chemical_lm
    name = df.attrs["name"]
    n_classes, target = df.attrs["n_classes"], df.attrs["explain_class"]
    y = df["label"].to_numpy()
    k_top = s.n_trainable_layers
    table = build_ngram_table(df["smiles"].tolist(), s.n_max, progress=progress)
    prefix_mols = encode_prefix(
        model, tokenizer, df["smiles"].tolist(), k_top, max_length=s.max_length, progress=progress
    )
    prefix_ngrams = encode_prefix(
        model, tokenizer, table.texts, k_top, max_length=s.max_length, progress=progress
    )
    ablate = name in s.ablation_datasets
    variants = [v for v in VARIANTS if ablate or v[0] not in ABLATION_VARIANTS]
    emb_pretrained = (
        embed_prefix(IBClassifier(model, n_classes, k_top), prefix_ngrams, space="pooled")
        if ablate
        else None
    )
    run = DatasetRun(pd.DataFrame(), {}, pd.DataFrame(), {}, {})
    rows: list[dict] = []
    fit_kw = {
        "n_components": s.n_components,
        "sparse_alpha": s.sparse_alpha,
        "logreg_c": s.logreg_c,
        "complement_components": s.complement_components,
        "calib_rounds": s.calib_rounds,
        "calib_lr": s.calib_lr,
        "calib_ridge": s.calib_ridge,
        "calib_patience": s.calib_patience,
    }
    ft_kw = {
        "lr": s.lr,
        "head_lr": s.head_lr,
        "batch_size": s.batch_size,
        "bottleneck_dim": s.bottleneck_dim,
        "pooling": s.pooling,
        "epochs": s.finetune_epochs,
        "patience": s.finetune_patience,
    }
    smiles = df["smiles"].tolist()
    for k, split in enumerate(dataset_splits(s, df)):
        tr, va, te = split["train"], split["valid"], split["test"]
        truths = [df["truth"].iloc[i] for i in te]
        token_truths = _token_truths(table, te, truths)
        run.tests[k], run.labels[k] = te, y[te]
        run.predictions[k, "Training prior"] = _training_prior(y[tr], len(te), n_classes)

        def finetune(beta: float, k: int = k, tr=tr, va=va):
            start = time.perf_counter()
            clf, hist = finetune_ib(
                model,
                prefix_mols.subset(tr),
                y[tr],
                prefix_mols.subset(va),
                y[va],
                n_classes,
                k_top,
                beta=beta,
                seed=s.seed + k,
                progress=progress,
                **ft_kw,
            )
            records = hist.records.assign(beta=beta, kept=hist.records["epoch"] == hist.best_epoch)
            return clf, hist, records, time.perf_counter() - start

        def score(method, proba, extra=None, note="", k=k, te=te):
            run.predictions[k, method] = proba
            metrics = {**classification_scores(y[te], proba), **(extra or {})}
            return _rows(name, method, k, metrics, note)

        clf, hist, records, seconds = finetune(s.beta)
        histories = [records]
        rows += score(
            "Fine-tuned LM",
            predict_proba_lm(clf, prefix_mols.subset(te)),
            {"finetune_seconds": seconds, "best_epoch": hist.best_epoch},
            note=f"top {k_top} of {len(model.encoder.layer)} layers + VIB head, beta={s.beta:g}",
        )
        feature_sets = {"mu": embed_prefix(clf, prefix_ngrams, space="mu")}
        if ablate:
            clf0, _, records0, _ = finetune(0.0)
            histories.append(records0)
            feature_sets.update(
                pooled=embed_prefix(clf, prefix_ngrams, space="pooled"),
                beta0=embed_prefix(clf0, prefix_ngrams, space="mu"),
                pretrained=emb_pretrained,
            )
        run.finetune[k] = pd.concat(histories, ignore_index=True)
        fitted: dict[str, MolexModel] = {}
        for method, features, reduction, calibrated in variants:
            X, centred = molex_features(table, feature_sets[features], tr)
            key = f"{features}/{reduction}"
            if key not in fitted:
                fitted[key] = fit_molex(
                    X[tr],
                    y[tr],
                    X[va],
                    y[va],
                    n_classes,
                    reduction=reduction,
                    seed=s.seed + k,
                    **fit_kw,
                )
            mx = fitted[key]
            atoms = atom_scores_from_ngrams(
                table, mx.ngram_contributions(centred, target, calibrated), te
            )
            per_molecule = _explain(table, te, atoms, truths, token_truths)
            extra = _explanation_metrics(per_molecule)
            if calibrated:
                extra["calibration_rounds"] = mx.calib_rounds
            if method in EXPLAINED_METHODS:
                run.explanations.update({(k, method, r): v for r, v in per_molecule.items()})
            rows += score(method, mx.predict_proba(X[te], calibrated), extra)
            if method != "MoleX":
                continue
            run.calibration[k] = mx.history
            rows += _rows(
                name,
                method,
                k,
                {
                    "n_parameters": mx.n_parameters_deployed(len(table.texts)),
                    "loading_sparsity": mx.reduction.sparsity,
                },
            )
            if k == 0:
                uncal = atom_scores_from_ngrams(
                    table, mx.ngram_contributions(centred, target, False), te
                )
                run.examples = pd.DataFrame(
                    {
                        "smiles": df["smiles"].iloc[te].to_numpy(),
                        "label": y[te],
                        "truth": truths,
                        "molex": atoms,
                        "molex_uncalibrated": uncal,
                        "prediction": mx.predict(X[te]),
                    }
                )
                run.models = {
                    "table": table,
                    "molex": mx,
                    "centred": centred,
                    "classifier": clf,
                    "test": te,
                    "train": tr,
                    "df": df,
                    "features": X,
                }
        p_lr, p_rf, fp_atoms = fingerprint_baselines(
            smiles,
            y,
            split,
            n_classes,
            target,
            radius=s.morgan_radius,
            n_bits=s.morgan_bits,
            rf_trees=s.rf_trees,
            seed=s.seed + k,
        )
        fp_explained = _explain(table, te, fp_atoms, truths, token_truths)
        run.explanations.update({(k, "Morgan FP + LR", r): v for r, v in fp_explained.items()})
        rows += score("Morgan FP + LR", p_lr, _explanation_metrics(fp_explained))
        rows += score("Morgan FP + RF", p_rf)
        p_gin = gin_baseline(
            smiles,
            y,
            split,
            n_classes,
            num_layers=s.gin_layers,
            hidden=s.gin_hidden,
            epochs=s.gin_epochs,
            seed=s.seed + k,
        )
        rows += score("GIN", p_gin)
        rand = random_attributions(table.n_atoms[te], s.seed + k)
        rand_tokens = random_attributions([len(table.tokens[i]) for i in te], s.seed + 1000 + k)
        rand_explained = _explain(table, te, rand, truths, token_truths, token_level=rand_tokens)
        run.explanations.update(
            {(k, "Random attribution", r): v for r, v in rand_explained.items()}
        )
        rows += _rows(name, "Random attribution", k, _explanation_metrics(rand_explained))
    n_params_lm = sum(
        p.numel()
        for part in (model.embeddings, model.encoder, clf.mu, clf.log_var, clf.head)
        for p in part.parameters()
    )
    rows += _rows(name, "Fine-tuned LM", 0, {"n_parameters": n_params_lm})
    rows += _rows(
        name,
        "MoleX",
        0,
        {"n_unique_ngrams": len(table.texts), "n_molecules": len(df)},
    )
    run.rows = pd.DataFrame(rows)
    return run


# --------------------------------------------------------------------------- throughput


@torch.no_grad()
def _lm_logits(model, clf: IBClassifier, enc) -> torch.Tensor:
    """The fine-tuned LM classifier end to end on tokenised texts: all layers, pooling, head."""
    hidden = prefix_hidden(model, enc, clf.n_frozen)
    return clf(hidden, enc["attention_mask"])[0]


@torch.no_grad()
def _lm_mu(model, clf: IBClassifier, enc) -> torch.Tensor:
    """Bottleneck means of tokenised n-gram texts through the whole fine-tuned LM (cold start)."""
    hidden = prefix_hidden(model, enc, clf.n_frozen)
    return clf.mu(clf.embed(hidden, enc["attention_mask"]))


def measure_throughput(
    run: DatasetRun,
    chemical_lm,
    n_molecules: int = 256,
    repeats: int = 3,
    batch_size: int = 64,
    max_length: int = 256,
) -> pd.DataFrame:
    """CPU inference speed of MoleX and of the fine-tuned LM classifier on the same test
    molecules of the first fold (at most ``n_molecules``, each once), in one run, with the same
    torch threads; best of ``repeats``.

    MoleX steps: ``end to end, known n-grams`` (`NgramPredictor`: parse, fast group matching,
    n-gram texts, lookup of each n-gram's stored contribution, sum; a fresh predictor per repeat,
    its fragment memo warmed on the fold's training molecules only, so no test molecule is
    timed against a memo of itself), ``linear model`` (the affine map on summed features
    given), ``LM embedding of new n-grams`` (cold start: the molecules' unique n-grams through the
    whole LM to the bottleneck mean, then W). LM classifier: ``tokenise`` and ``LM forward`` (all
    layers + head), in length-sorted batches of ``batch_size`` (its fastest order).
    Returns rows (pipeline, step, seconds_per_molecule, molecules_per_s).
    """
    from molkit.methods.molex.inference import NgramPredictor

    model, tokenizer = chemical_lm
    mx: MolexModel = run.models["molex"]
    clf: IBClassifier = run.models["classifier"]
    table: NgramTable = run.models["table"]
    all_smiles = run.models["df"]["smiles"].to_numpy()
    te = np.asarray(run.models["test"])[:n_molecules]
    n_molecules = len(te)
    smiles = all_smiles[te].tolist()
    W, c = mx.weights()
    train_smiles = all_smiles[run.models["train"]].tolist()

    def predictor() -> NgramPredictor:
        fresh = NgramPredictor.from_linear(table.texts, run.models["centred"], W, c)
        fresh.warm(train_smiles)
        return fresh

    X = np.asarray(table.counts[te] @ run.models["centred"])
    new_texts = sorted({table.texts[j] for i in te for j, _ in table.occurrences[i]})
    by_length = sorted(smiles, key=len)
    batched = [by_length[s : s + batch_size] for s in range(0, len(by_length), batch_size)]

    def tokenise(texts):
        return tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

    encoded = [tokenise(b) for b in batched]
    new_batches = [new_texts[s : s + batch_size] for s in range(0, len(new_texts), batch_size)]

    def best(fn, setup=None) -> float:
        times = []
        for _ in range(repeats):
            arg = () if setup is None else (setup(),)
            start = time.perf_counter()
            fn(*arg)
            times.append(time.perf_counter() - start)
        return min(times) / n_molecules

    def embed_new():
        for b in new_batches:
            _lm_mu(model, clf, tokenise(b)).numpy().astype(np.float64) @ W

    steps = [
        (
            "MoleX",
            "end to end, known n-grams",
            best(lambda p: p.decision_function(smiles), setup=predictor),
        ),
        ("MoleX", "linear model", best(lambda: X @ W + c)),
        ("MoleX", "LM embedding of new n-grams", best(embed_new)),
        ("LM classifier", "tokenise", best(lambda: [tokenise(b) for b in batched])),
        ("LM classifier", "LM forward", best(lambda: [_lm_logits(model, clf, e) for e in encoded])),
    ]
    out = pd.DataFrame(steps, columns=["pipeline", "step", "seconds_per_molecule"])
    out["molecules_per_s"] = 1 / out["seconds_per_molecule"]
    return out


def throughput_summary(steps: pd.DataFrame) -> dict[str, float]:
    """Molecules/s of the compared pipelines from `measure_throughput` rows, and the speed-ups.

    ``molex_model`` (affine map on features) vs ``lm_model`` (LM forward on token ids);
    ``molex_warm`` (end to end on known n-grams) and ``molex_cold`` (+ LM embedding of every new
    n-gram) vs ``lm_end_to_end`` (tokenise + forward).
    """
    t = {
        (p, s): v
        for p, s, v in zip(
            steps["pipeline"], steps["step"], steps["seconds_per_molecule"], strict=True
        )
    }
    molex_model = t["MoleX", "linear model"]
    molex_warm = t["MoleX", "end to end, known n-grams"]
    molex_cold = molex_warm + t["MoleX", "LM embedding of new n-grams"]
    lm_forward = t["LM classifier", "LM forward"]
    lm_e2e = lm_forward + t["LM classifier", "tokenise"]
    return {
        "molex_model_mol_per_s": 1 / molex_model,
        "lm_model_mol_per_s": 1 / lm_forward,
        "speedup_model": lm_forward / molex_model,
        "molex_warm_mol_per_s": 1 / molex_warm,
        "molex_cold_mol_per_s": 1 / molex_cold,
        "lm_end_to_end_mol_per_s": 1 / lm_e2e,
        "speedup_end_to_end_warm": lm_e2e / molex_warm,
        "speedup_end_to_end_cold": lm_e2e / molex_cold,
    }


def save_examples(examples: pd.DataFrame, path: str | Path) -> Path:
    """Write explanation examples (atom scores as lists) as JSON lines; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = examples.copy()
    for col in ("truth", "molex", "molex_uncalibrated"):
        frame[col] = [None if v is None else np.asarray(v).tolist() for v in frame[col]]
    frame.to_json(path, orient="records", lines=True)
    return path
