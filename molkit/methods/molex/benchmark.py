"""MoleX, its ablations and the baselines on one explanation dataset, seed by seed, and the CPU
inference speed of MoleX against the fine-tuned LM.

`run_dataset` is the whole per-dataset protocol (one split per seed; test labels are read only to
score): group n-grams, frozen LM layers once per text, IB fine-tuning, n-gram embeddings, MoleX
and its ablations, the baselines, test metrics and explanation AUCs. `measure_throughput` times
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

from molkit.chem import group_ngrams, group_tokens, parse_smiles
from molkit.data.explain import explain_split
from molkit.eval.explain import atom_auc, explanation_auc, random_attributions
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
    ngram_text,
)
from molkit.models.prefix import encode_prefix, prefix_hidden

if TYPE_CHECKING:
    from molkit.methods.molex.experiment import Settings

__all__ = [
    "EXPLAINED_METHODS",
    "DatasetRun",
    "measure_throughput",
    "per_molecule_auc",
    "run_dataset",
    "save_examples",
    "throughput_summary",
]

#: The methods whose atom attributions are kept per test molecule (`DatasetRun.explanations`).
EXPLAINED_METHODS = ("MoleX", "MoleX w/o calibration", "Morgan FP + LR", "Random attribution")


@dataclass
class DatasetRun:
    """What `run_dataset` measured on one dataset.

    ``rows``: tidy results (dataset, method, metric, value, seed, split, note).
    ``predictions[(seed, method)]``: test-set class probabilities (n_test, n_classes), also of
    the ``Training prior`` (no row of its own);
    ``labels[seed]``: the test labels they are scored against. ``explanations[(seed, method,
    reading)]``: per test molecule explanation AUC (NaN where undefined) of `EXPLAINED_METHODS`,
    ``reading`` ``"signed"`` or ``"abs"``. ``examples``: the first seed's test molecules with
    MoleX atom scores (calibrated and not) and ground truth. ``calibration[seed]``: the calibration
    history (round, train/valid loss). ``models``: the first seed's fitted objects (for
    `measure_throughput` and inspection).
    """

    rows: pd.DataFrame
    predictions: dict[tuple[int, str], np.ndarray]
    examples: pd.DataFrame
    calibration: dict[int, pd.DataFrame]
    models: dict[str, Any]
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    explanations: dict[tuple[int, str, str], np.ndarray] = field(default_factory=dict)


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


def _abs_auc(atoms: list[np.ndarray], truths: list) -> float:
    """Explanation AUC of unsigned importance |score| (Lamole scores tokens by gradient norms)."""
    return explanation_auc([np.abs(a) for a in atoms], truths)[0]


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


def _keep_explanations(run: dict, seed: int, method: str, atoms: list, truths: list) -> None:
    run[seed, method, "signed"] = per_molecule_auc(atoms, truths)
    run[seed, method, "abs"] = per_molecule_auc([np.abs(a) for a in atoms], truths)


def run_dataset(
    settings: Settings, df: pd.DataFrame, chemical_lm, progress: bool = False
) -> DatasetRun:
    """MoleX, its ablations and the baselines on one dataset over ``settings.seeds``, one split
    per seed.

    ``df``: shaped like `molkit.data.explain.load_explain_dataset`'s. Methods: ``MoleX`` (IB
    fine-tuned features, sparse reduction, calibrated), ``MoleX w/o calibration``, ``MoleX (PCA)``,
    ``MoleX (beta=0)``, ``MoleX (no fine-tuning)`` (the last two on ``settings.ablation_datasets``),
    ``Fine-tuned LM`` (the VIB classifier on whole SMILES), ``Morgan FP + LR``, ``Morgan FP + RF``,
    ``GIN``, ``Random attribution``. Metrics: accuracy, roc_auc, explanation_auc (signed scores
    toward the explained class), explanation_auc_abs (unsigned importance), n_explained,
    calibration_rounds, finetune_seconds, parameters. Test labels are read only to score
    predictions. ``chemical_lm``: a loaded (model, tokenizer) pair
    (`molkit.models.prefix.load_chemical_lm`).
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
    emb_pretrained = (
        embed_prefix(IBClassifier(model, n_classes, k_top), prefix_ngrams) if ablate else None
    )
    rows: list[dict] = []
    predictions: dict[tuple[int, str], np.ndarray] = {}
    labels: dict[int, np.ndarray] = {}
    explanations: dict[tuple[int, str, str], np.ndarray] = {}
    calibration: dict[int, pd.DataFrame] = {}
    examples, models = pd.DataFrame(), {}
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
    }
    for seed in s.seeds:
        split = explain_split(df, seed, s.split_fractions)
        tr, va, te = split["train"], split["valid"], split["test"]
        truths = [df["truth"].iloc[i] for i in te]
        labels[seed] = y[te]
        predictions[seed, "Training prior"] = _training_prior(y[tr], len(te), n_classes)

        def finetune(beta: float, seed: int = seed, tr=tr, va=va):
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
                epochs=s.finetune_epochs,
                patience=s.finetune_patience,
                seed=seed,
                progress=progress,
                **ft_kw,
            )
            return clf, hist, time.perf_counter() - start

        def score(
            method: str,
            proba: np.ndarray,
            extra: dict | None = None,
            note: str = "",
            seed: int = seed,
            te=te,
        ):
            predictions[seed, method] = proba
            return _rows(
                name, method, seed, {**classification_scores(y[te], proba), **(extra or {})}, note
            )

        clf, hist, seconds = finetune(s.beta)
        rows += score(
            "Fine-tuned LM",
            predict_proba_lm(clf, prefix_mols.subset(te)),
            {"finetune_seconds": seconds, "best_epoch": hist.best_epoch},
            note=f"top {k_top} of {len(model.encoder.layer)} layers + VIB head, beta={s.beta:g}",
        )
        feature_sets = {"ib": embed_prefix(clf, prefix_ngrams)}
        variants = [
            ("MoleX", "ib", "sparse", True),
            ("MoleX w/o calibration", "ib", "sparse", False),
            ("MoleX (PCA)", "ib", "pca", True),
        ]
        if ablate:
            feature_sets["beta0"] = embed_prefix(finetune(0.0)[0], prefix_ngrams)
            feature_sets["pretrained"] = emb_pretrained
            variants += [
                ("MoleX (beta=0)", "beta0", "sparse", True),
                ("MoleX (no fine-tuning)", "pretrained", "sparse", True),
            ]
        fitted: dict[str, MolexModel] = {}
        for method, features, reduction, calibrated in variants:
            X, centred = molex_features(table, feature_sets[features], tr)
            key = f"{features}/{reduction}"
            if key not in fitted:
                fitted[key] = fit_molex(
                    X[tr], y[tr], X[va], y[va], n_classes, reduction=reduction, seed=seed, **fit_kw
                )
            mx = fitted[key]
            atoms = atom_scores_from_ngrams(
                table, mx.ngram_contributions(centred, target, calibrated), te
            )
            exp_auc, n_exp = explanation_auc(atoms, truths)
            extra = {
                "explanation_auc": exp_auc,
                "explanation_auc_abs": _abs_auc(atoms, truths),
                "n_explained": n_exp,
            }
            if calibrated:
                extra["calibration_rounds"] = mx.calib_rounds
            if method in EXPLAINED_METHODS:
                _keep_explanations(explanations, seed, method, atoms, truths)
            rows += score(method, mx.predict_proba(X[te], calibrated), extra)
            if method == "MoleX":
                calibration[seed] = mx.history
                rows += _rows(
                    name,
                    method,
                    seed,
                    {"n_parameters": mx.n_parameters, "loading_sparsity": mx.reduction.sparsity},
                )
                if seed == s.seeds[0]:
                    uncal = atom_scores_from_ngrams(
                        table, mx.ngram_contributions(centred, target, False), te
                    )
                    examples = pd.DataFrame(
                        {
                            "smiles": df["smiles"].iloc[te].to_numpy(),
                            "label": y[te],
                            "truth": truths,
                            "molex": atoms,
                            "molex_uncalibrated": uncal,
                            "prediction": mx.predict(X[te]),
                        }
                    )
                    models = {
                        "table": table,
                        "molex": mx,
                        "centred": centred,
                        "classifier": clf,
                        "test": te,
                        "df": df,
                    }
        p_lr, p_rf, fp_atoms = fingerprint_baselines(
            df["smiles"].tolist(),
            y,
            split,
            n_classes,
            target,
            radius=s.morgan_radius,
            n_bits=s.morgan_bits,
            rf_trees=s.rf_trees,
            seed=seed,
        )
        fp_explained = {
            "explanation_auc": explanation_auc(fp_atoms, truths)[0],
            "explanation_auc_abs": _abs_auc(fp_atoms, truths),
        }
        _keep_explanations(explanations, seed, "Morgan FP + LR", fp_atoms, truths)
        rows += score("Morgan FP + LR", p_lr, fp_explained)
        rows += score("Morgan FP + RF", p_rf)
        p_gin = gin_baseline(
            df["smiles"].tolist(),
            y,
            split,
            n_classes,
            num_layers=s.gin_layers,
            hidden=s.gin_hidden,
            epochs=s.gin_epochs,
            seed=seed,
        )
        rows += score("GIN", p_gin)
        rand = random_attributions(table.n_atoms[te], seed)
        rand_auc = explanation_auc(rand, truths)[0]  # uniform in [0, 1): its magnitudes are itself
        _keep_explanations(explanations, seed, "Random attribution", rand, truths)
        rows += _rows(
            name,
            "Random attribution",
            seed,
            {"explanation_auc": rand_auc, "explanation_auc_abs": rand_auc},
        )
    n_params_lm = sum(
        p.numel()
        for part in (model.embeddings, model.encoder, clf.mu, clf.log_var, clf.head)
        for p in part.parameters()
    )
    rows += _rows(name, "Fine-tuned LM", s.seeds[0], {"n_parameters": n_params_lm})
    rows += _rows(
        name,
        "MoleX",
        s.seeds[0],
        {"n_unique_ngrams": len(table.texts), "n_molecules": len(df)},
    )
    return DatasetRun(
        pd.DataFrame(rows), predictions, examples, calibration, models, labels, explanations
    )


# --------------------------------------------------------------------------- throughput


@torch.no_grad()
def _lm_pooled(model, clf: IBClassifier, enc) -> torch.Tensor:
    hidden = prefix_hidden(model, enc, clf.n_frozen)
    return clf(hidden, enc["attention_mask"])[0]


def measure_throughput(
    run: DatasetRun,
    chemical_lm,
    n_molecules: int = 256,
    repeats: int = 3,
    batch_size: int = 64,
    max_length: int = 256,
) -> pd.DataFrame:
    """CPU inference speed of MoleX and of the fine-tuned LM classifier on the same test
    molecules (cycled up to ``n_molecules``), in one run; best of ``repeats``.

    Steps: MoleX ``group n-grams`` (RDKit group tokens + fragment texts), ``n-gram lookup``
    (summing each n-gram's stored contribution vector), ``linear model`` (the affine map on summed
    features), ``LM embedding of new n-grams`` (cold start: the molecules' unique n-grams through
    the whole LM); LM classifier ``tokenise`` and ``LM forward`` (all layers + head).
    Returns rows (pipeline, step, seconds_per_molecule, molecules_per_s).
    """
    model, tokenizer = chemical_lm
    mx: MolexModel = run.models["molex"]
    clf: IBClassifier = run.models["classifier"]
    table: NgramTable = run.models["table"]
    te = np.resize(run.models["test"], n_molecules)
    smiles = run.models["df"]["smiles"].to_numpy()[te].tolist()
    W, c = mx.weights()
    per_ngram = run.models["centred"] @ W
    lookup = {text: per_ngram[j] for j, text in enumerate(table.texts)}
    mol_texts = [[table.texts[j] for j, _ in table.occurrences[i]] for i in te]
    X = np.asarray(table.counts[te] @ run.models["centred"])
    new_texts = sorted({t for texts in mol_texts for t in texts})
    batched = [smiles[s : s + batch_size] for s in range(0, len(smiles), batch_size)]

    def tokenise(texts):
        return tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

    encoded = [tokenise(b) for b in batched]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) / n_molecules

    def ngrams():
        for s in smiles:
            mol = parse_smiles(s)
            [ngram_text(mol, atoms) for _, atoms in group_ngrams(group_tokens(mol), 3)]

    def table_sum():
        for texts in mol_texts:
            np.sum([lookup[t] for t in texts], axis=0) + c

    def embed_new():
        for s in range(0, len(new_texts), batch_size):
            _lm_pooled(model, clf, tokenise(new_texts[s : s + batch_size]))

    steps = [
        ("MoleX", "group n-grams", best(ngrams)),
        ("MoleX", "n-gram lookup", best(table_sum)),
        ("MoleX", "linear model", best(lambda: X @ W + c)),
        ("MoleX", "LM embedding of new n-grams", best(embed_new)),
        ("LM classifier", "tokenise", best(lambda: [tokenise(b) for b in batched])),
        ("LM classifier", "LM forward", best(lambda: [_lm_pooled(model, clf, e) for e in encoded])),
    ]
    out = pd.DataFrame(steps, columns=["pipeline", "step", "seconds_per_molecule"])
    out["molecules_per_s"] = 1 / out["seconds_per_molecule"]
    return out


def throughput_summary(steps: pd.DataFrame) -> dict[str, float]:
    """Molecules/s of the compared pipelines from `measure_throughput` rows, and the speed-ups.

    ``molex_model`` (affine map on features) vs ``lm_model`` (LM forward on token ids);
    ``molex_warm`` (n-grams + lookup) and ``molex_cold`` (+ LM embedding of every new n-gram)
    vs ``lm_end_to_end`` (tokenise + forward).
    """
    t = {
        (p, s): v
        for p, s, v in zip(
            steps["pipeline"], steps["step"], steps["seconds_per_molecule"], strict=True
        )
    }
    molex_model = t["MoleX", "linear model"]
    molex_warm = t["MoleX", "group n-grams"] + t["MoleX", "n-gram lookup"]
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
