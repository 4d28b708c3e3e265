"""MolTC's pair sets and the baselines every section scores beside the LM: the pair sets loaded
(one row per measurement), gradient boosting's features and settings, and `run_baselines` (the
no-chemistry prior or training mean, Morgan + gradient boosting, the pair GIN) on one split.

Test labels are scored once, inside `molkit.data.final_scoring`: everything fitted here (early
stopping, the prior's rates) sees the training and validation parts only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from molkit.data import final_scoring, seal
from molkit.data.pairs import deduplicate_measurements
from molkit.data.splits import Split, subsample
from molkit.eval.metrics import task_metrics
from molkit.methods.baselines import DrugPrior, fit_gradient_boosting, training_mean
from molkit.methods.moltc.method import PairTask, pair_task
from molkit.methods.moltc.pair_gin import fit_pair_gin, pair_fingerprints, pair_graphs
from molkit.methods.moltc.settings import Settings

__all__ = [
    "GBM",
    "GBM_SMALL_SET",
    "LARGE_SET",
    "MEAN",
    "PAIR_GIN",
    "PRIOR",
    "SMALL_SET",
    "fit_gbm",
    "gbm_features",
    "gbm_on_test_sets",
    "gbm_params",
    "load_pairs",
    "load_regression_set",
    "run_baselines",
    "solute_only",
]

PRIOR = "per-drug prior (no chemistry)"
MEAN = "training mean"
GBM = "Morgan + gradient boosting"
PAIR_GIN = "pair GIN"
#: Sets at least this large get the pair GIN nowhere and the other baselines on one seed only.
LARGE_SET = 10000
#: Sets smaller than this get gradient boosting and the pair GIN on every seed.
SMALL_SET = 1000
#: Sets under this many pairs get the small-set gradient-boosting settings (`gbm_params`).
GBM_SMALL_SET = 2000


def load_pairs(name: str, rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A pair set (a registered name or a CSV file of pairs, ``molkit.data.load_dataset``) without
    rows whose target is missing, optionally a seeded subsample of ``rows`` rows
    (`molkit.data.subsample`). Rows with invalid SMILES are dropped by the loader, which reports
    them in ``df.attrs['invalid']``; ``df.attrs`` keeps the loader's description (a CSV file's
    target and context columns)."""
    from molkit.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_dataset(name)
    task = pair_task(name, df)
    attrs = dict(df.attrs)
    df = df[np.isfinite(df[task.target].to_numpy(dtype=float))].reset_index(drop=True)
    df = df.iloc[subsample(len(df), rows, seed)].reset_index(drop=True)
    df.attrs.update(attrs)
    return df


def load_regression_set(
    name: str, rows: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, PairTask, dict[str, float]]:
    """A regression pair set with one row per measurement: (molecule 1, molecule 2, the task's
    context columns, e.g. the temperature), repeats averaged
    (`molkit.data.pairs.deduplicate_measurements`), then ``rows`` of them drawn with ``seed``.
    Returns the frame, its `PairTask` and the de-duplication counts."""
    df = load_pairs(name)
    task = pair_task(name, df)
    attrs = dict(df.attrs)
    df, report = deduplicate_measurements(df, task.target, task.extra)
    df = df.iloc[subsample(len(df), rows, seed)].reset_index(drop=True)
    df.attrs.update(attrs)
    return df, task, report


def gbm_params(settings: Settings, n_pairs: int) -> dict:
    """`fit_gradient_boosting`'s settings for a set of ``n_pairs`` pairs: the small-set ones under
    `GBM_SMALL_SET` pairs (lr 0.03, 15 leaves, at least 5 pairs a leaf, 30 % of the features per
    tree, patience 200: FreeSolv), else the large-set ones (lr 0.1, 63 leaves, patience 100)."""
    if n_pairs < GBM_SMALL_SET:
        return {
            "max_iter": settings.gbm_iter, "learning_rate": settings.gbm_lr,
            "num_leaves": settings.gbm_leaves, "min_child_samples": settings.gbm_min_child,
            "colsample": settings.gbm_colsample, "patience": settings.gbm_patience,
        }  # fmt: skip
    return {
        "max_iter": settings.gbm_large_iter, "learning_rate": settings.gbm_large_lr,
        "num_leaves": settings.gbm_large_leaves, "colsample": settings.gbm_colsample,
        "patience": settings.gbm_large_patience,
    }  # fmt: skip


def gbm_features(
    df: pd.DataFrame, task: PairTask, settings: Settings, molecules: int = 2
) -> np.ndarray:
    """Gradient boosting's inputs for every row of ``df``: Morgan counts (``gbm_counts``; bits
    otherwise) of both molecules (``molecules=1``: of molecule 1 only, the single-molecule
    table), ``task.descriptors`` and ``task.extra`` context columns
    (`molkit.methods.moltc.pair_fingerprints`). The same for every split of ``df``, so the
    baselines compute them once a set."""
    extra = df[list(task.extra)].to_numpy(dtype=float) if task.extra else None
    x = pair_fingerprints(
        df["smiles_1"].tolist(), df["smiles_2"].tolist(), n_bits=settings.n_bits, extra=extra,
        counts=settings.gbm_counts, descriptors=task.descriptors,
    )  # fmt: skip
    if molecules == 2:
        return x
    if molecules != 1:
        raise ValueError(f"molecules must be 1 or 2, not {molecules}")
    per_molecule = (x.shape[1] - (extra.shape[1] if extra is not None else 0)) // 2
    return np.hstack([x[:, :per_molecule], x[:, 2 * per_molecule :]])


def fit_gbm(x: np.ndarray, y: np.ndarray, train: np.ndarray, valid: np.ndarray, kind: str,
            seed: int, params: dict):  # fmt: skip
    """Gradient boosting on the rows ``train`` with early stopping on ``valid``, on the columns
    that vary over the training rows (the constant ones, e.g. water's whole block in FreeSolv, are
    dropped first). Returns ``(predict, n_columns)``: ``predict(rows)`` gives the class-1
    probability or the value of those rows of ``x``."""
    xt = x[train]
    varies = ~((xt == xt[:1]) | (np.isnan(xt) & np.isnan(xt[:1]))).all(axis=0)
    model = fit_gradient_boosting(
        xt[:, varies], y[train], x[valid][:, varies], y[valid], kind, seed=seed, **params
    )

    def predict(rows: np.ndarray) -> np.ndarray:
        part = x[rows][:, varies]
        return model.predict_proba(part)[:, 1] if kind == "classification" else model.predict(part)

    return predict, int(varies.sum())


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
    features: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every baseline on one split: the no-chemistry per-drug prior (classification,
    `molkit.methods.baselines.DrugPrior`) or the training mean (regression), with ``gbm`` Morgan
    counts of both molecules + gradient boosting (`fit_gbm`; ``task.extra`` context columns
    appended), and with ``gin`` the pair GIN (symmetric head for DDI, role-aware otherwise;
    ``gin_epochs`` epochs, raised to ``gin_min_steps`` optimiser steps on sets under `SMALL_SET`
    pairs; early stopping after ``gin_patience`` epochs without a better validation loss; pass
    ``graphs = pair_graphs(...)`` of ``df`` to reuse them across splits; likewise ``features =
    gbm_features(df, task, settings)`` for gradient boosting). The test labels are sealed until
    the predictions are scored. Returns tidy rows (method, metric, value; ``seconds`` of wall time
    and gradient boosting's ``features used`` included) and the test predictions per method."""
    y = df[task.target].to_numpy(dtype=float)
    tr, va, te = split["train"], split["valid"], split["test"]
    y_test = seal(y[te], f"{task.dataset} test part")
    y = y.copy()
    y[te] = np.nan  # nothing below reads the test labels
    a, b = df["smiles_1"].tolist(), df["smiles_2"].tolist()
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    extra_rows = []
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
        x = gbm_features(df, task, settings) if features is None else features
        if len(x) != len(df):
            raise ValueError(
                f"{len(x)} feature rows for {len(df)} pairs; pass "
                "features=gbm_features(df, task, settings) of the same frame"
            )
        predict, n_columns = fit_gbm(x, y, tr, va, task.kind, seed, gbm_params(settings, len(df)))
        preds[GBM] = predict(te)
        seconds[GBM] = time.perf_counter() - start
        extra_rows.append({"method": GBM, "metric": "features used", "value": n_columns})
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
            patience=settings.gin_patience, seed=seed, progress=progress,
            min_steps=settings.gin_min_steps if len(df) < SMALL_SET else 0,
        )  # fmt: skip
        preds[PAIR_GIN] = fitted.predict([graphs[i] for i in te])
        seconds[PAIR_GIN] = time.perf_counter() - start
    with final_scoring():
        scores = {m: task_metrics(task.kind, y_test.read(), p) for m, p in preds.items()}
    rows = [
        {"method": m, "metric": k, "value": v}
        for m in preds
        for k, v in {**scores[m], "seconds": seconds[m]}.items()
    ]
    return pd.DataFrame(rows + extra_rows), preds


def solute_only(
    df: pd.DataFrame, split: Split, task: PairTask, settings: Settings, seed: int,
    pair_pred: np.ndarray,
) -> dict[str, float]:  # fmt: skip
    """Gradient boosting on molecule 1's features alone (the single-molecule table) beside the
    pair model's test predictions ``pair_pred`` on the same split: both test RMSEs and the largest
    difference between the two models' predictions."""
    x = gbm_features(df, task, settings, molecules=1)
    y = df[task.target].to_numpy(dtype=float, copy=True)
    y_test = seal(y[split["test"]], f"{task.dataset} test part")
    y[split["test"]] = np.nan
    predict, _ = fit_gbm(x, y, split["train"], split["valid"], task.kind, seed,
                         gbm_params(settings, len(df)))  # fmt: skip
    pred = predict(split["test"])
    with final_scoring():
        truth = y_test.read()
    return {
        "seed": seed,
        "rmse_pair": float(np.sqrt(np.mean((pair_pred - truth) ** 2))),
        "rmse_solute": float(np.sqrt(np.mean((pred - truth) ** 2))),
        "max_difference": float(np.max(np.abs(pred - pair_pred))),
    }


def gbm_on_test_sets(
    settings: Settings, task: PairTask, train: pd.DataFrame, valid: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
) -> dict[str, np.ndarray]:  # fmt: skip
    """Gradient boosting fitted on ``train`` (early stopping on ``valid``), predicting each of
    ``tests`` (frames without labels): the context beside the LM rows, on the same items."""
    frames = [train, valid, *tests.values()]
    df = pd.concat(frames, ignore_index=True)
    x = gbm_features(df, task, settings)
    y = df[task.target].to_numpy(dtype=float)  # NaN on the test sets: no labels there
    bounds = np.cumsum([0, *map(len, frames)])
    fit_rows, stop_rows = np.arange(bounds[1]), np.arange(bounds[1], bounds[2])
    predict, _ = fit_gbm(x, y, fit_rows, stop_rows, task.kind, settings.seed,
                         gbm_params(settings, bounds[2]))  # fmt: skip
    return {name: predict(np.arange(bounds[k + 2], bounds[k + 3]))
            for k, name in enumerate(tests)}  # fmt: skip
