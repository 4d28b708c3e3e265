"""The baselines every notebook shares, one definition each, as scikit-learn estimators.

"Morgan + LR / RF / gradient boosting" means the same thing in every notebook: `morgan_model` is a
`sklearn.pipeline.Pipeline` of `MorganFingerprint` and the estimator, so ``get_params`` shows every
setting and a table can name the model exactly. Beside it: `linear_probe` (standardised embeddings,
logistic or ridge regression), `training_mean` (the training mean / class prior: scikit-learn's
dummy estimators), `DrugPrior` (a molecule pair's per-molecule positive rates, no chemistry),
`fit_gradient_boosting` (histogram boosting with early stopping on a validation part),
`GINBaseline` (a GIN trained from scratch) and `fit_predict_per_task` (one model per task of a
multi-task label matrix, missing labels skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

Task = Literal["classification", "regression"]
MORGAN_ESTIMATORS = ("lr", "rf", "gbm")


def _check_task(task: str) -> None:
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")


class MorganFingerprint(TransformerMixin, BaseEstimator):
    """SMILES -> Morgan (ECFP-like) bits, float32 (n, n_bits) (`molkit.chem.morgan_bits`)."""

    def __init__(self, radius: int = 2, n_bits: int = 2048):
        self.radius = radius
        self.n_bits = n_bits

    def fit(self, X: Sequence[str], y: Any = None) -> MorganFingerprint:
        return self

    def transform(self, X: Sequence[str]) -> np.ndarray:
        from molkit.chem import morgan_bits

        return np.asarray(
            morgan_bits(list(X), radius=self.radius, n_bits=self.n_bits, progress=False),
            dtype=np.float32,
        )


def morgan_model(
    estimator: str,
    task: Task = "classification",
    radius: int = 2,
    n_bits: int = 2048,
    seed: int = 0,
    **params: Any,
):
    """``Pipeline(MorganFingerprint, estimator)``. ``estimator``: ``lr`` (logistic / ridge
    regression), ``rf`` (random forest, 300 trees unless ``n_estimators`` is given) or ``gbm``
    (histogram gradient boosting); ``params`` go to the estimator. Fit on SMILES, predict on
    SMILES."""
    from sklearn.pipeline import Pipeline

    _check_task(task)
    classification = task == "classification"
    if estimator == "lr":
        from sklearn.linear_model import LogisticRegression, Ridge

        model = (
            LogisticRegression(**{"max_iter": 5000, **params})
            if classification
            else Ridge(**params)
        )
    elif estimator == "rf":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classification else RandomForestRegressor
        model = cls(**{"n_estimators": 300, "random_state": seed, "n_jobs": 1, **params})
    elif estimator == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        model = cls(**{"random_state": seed, **params})
    else:
        raise ValueError(f"estimator must be one of {MORGAN_ESTIMATORS}, not {estimator!r}")
    return Pipeline(
        [("morgan", MorganFingerprint(radius=radius, n_bits=n_bits)), (estimator, model)]
    )


def linear_probe(
    task: Task = "classification", C: float = 1.0, alpha: float = 1.0, max_iter: int = 2000
):
    """A frozen representation's probe: ``StandardScaler`` then logistic regression (classification,
    inverse regularisation ``C``) or ridge regression (regression, ``alpha``)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_task(task)
    head = (
        LogisticRegression(C=C, max_iter=max_iter)
        if task == "classification"
        else Ridge(alpha=alpha)
    )
    return make_pipeline(StandardScaler(), head)


def training_mean(task: Task = "regression"):
    """The trivial baseline every model must beat first: the training mean (regression) or the
    training class prior (classification), as scikit-learn's dummy estimators."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    _check_task(task)
    return (
        DummyClassifier(strategy="prior")
        if task == "classification"
        else DummyRegressor(strategy="mean")
    )


class DrugPrior(ClassifierMixin, BaseEstimator):
    """Per-molecule prior with no chemistry, for pairs: score(a, b) = rate(a) * rate(b), where rate
    is a molecule's positive rate over the training pairs it appears in (either position), shrunk
    towards the global rate with ``smoothing`` pseudo-pairs; unseen molecules get the global rate.
    ``X`` is a sequence of (a, b) pairs (or an (n, 2) array)."""

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing

    def fit(self, X: Sequence[Sequence[str]], y: Sequence[float]) -> DrugPrior:
        import pandas as pd

        a, b = _pair_columns(X)
        y = np.asarray(y, dtype=float)
        if len(a) != len(y):
            raise ValueError(f"got {len(a)} pairs for {len(y)} labels")
        self.global_rate_ = float(y.mean())
        frame = pd.DataFrame({"drug": list(a) + list(b), "y": np.concatenate([y, y])})
        stats = frame.groupby("drug")["y"].agg(["sum", "count"])
        s = float(self.smoothing)
        self.rates_ = ((stats["sum"] + s * self.global_rate_) / (stats["count"] + s)).to_dict()
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Sequence[Sequence[str]]) -> np.ndarray:
        """(n, 2) probabilities of classes 0 and 1."""
        if not hasattr(self, "rates_"):
            raise RuntimeError("call DrugPrior.fit(pairs, y) first")
        a, b = _pair_columns(X)
        g = self.global_rate_
        p = np.array(
            [self.rates_.get(x, g) * self.rates_.get(z, g) for x, z in zip(a, b, strict=True)]
        )
        return np.column_stack([1 - p, p])

    def predict(self, X: Sequence[Sequence[str]]) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _pair_columns(X: Sequence[Sequence[str]]) -> tuple[list[str], list[str]]:
    pairs = [tuple(p) for p in X]
    if any(len(p) != 2 for p in pairs):
        raise ValueError("DrugPrior takes (molecule a, molecule b) pairs")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def fit_gradient_boosting(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    task: Task = "classification",
    max_iter: int = 300,
    learning_rate: float = 0.1,
    seed: int = 0,
    *,
    num_leaves: int = 31,
    min_child_samples: int = 20,
    colsample: float = 1.0,
    patience: int = 10,
    threads: int | None = None,
):
    """LightGBM gradient boosting (``LGBMClassifier`` / ``LGBMRegressor``) with early stopping on
    the given validation part: at most ``max_iter`` trees, stopped after ``patience`` rounds
    without a better validation log-loss (classification) or RMSE (regression: the figure the
    notebooks report), keeping the best round. ``num_leaves``, ``min_child_samples`` and
    ``colsample`` (the share of features each tree sees) are LightGBM's. Deterministic for a given
    ``seed`` (``deterministic=True``, row-wise histograms), so a re-run on another CPU gives the
    same trees. ``threads``: None uses every core (OpenMP's default). Missing values (NaN) are
    allowed; columns that are constant over the training rows get no split (LightGBM leaves them
    out of its histograms and of each tree's column sample). Returns the fitted estimator."""
    import lightgbm as lgb

    _check_task(task)
    classification = task == "classification"
    if len(x_valid) == 0:
        raise ValueError("early stopping needs a non-empty validation part (x_valid, y_valid)")
    cls = lgb.LGBMClassifier if classification else lgb.LGBMRegressor
    model = cls(
        n_estimators=max_iter,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_samples=min_child_samples,
        colsample_bytree=colsample,
        metric="binary_logloss" if classification else "rmse",
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=threads,
        verbosity=-1,
    )
    stop = lgb.early_stopping(patience, first_metric_only=True, verbose=False)
    return model.fit(x_train, y_train, eval_X=(x_valid,), eval_y=(y_valid,), callbacks=[stop])


def fit_predict_per_task(
    make_model: Callable[[], Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    task: Task = "classification",
) -> np.ndarray:
    """One fresh ``make_model()`` per column of ``y_train`` (n, t), fitted on that task's labelled
    rows (NaN skipped); returns (n_test, t): class-1 probabilities (0 where a task's training labels
    hold no positive) or predictions. A fitted random forest predicts with one thread: threads would
    add the trees' votes in any order and change the last digits from run to run."""
    _check_task(task)
    y_train = np.asarray(y_train, dtype=float).reshape(len(x_train), -1)
    out = np.full((len(x_test), y_train.shape[1]), np.nan)
    for t in range(y_train.shape[1]):
        mask = ~np.isnan(y_train[:, t])
        model = make_model()
        labels = y_train[mask, t].astype(int) if task == "classification" else y_train[mask, t]
        model.fit(x_train[mask], labels)
        jobs = [k for k in model.get_params() if k == "n_jobs" or k.endswith("__n_jobs")]
        if jobs:  # also a Pipeline's step (rf__n_jobs)
            model.set_params(**dict.fromkeys(jobs, 1))
        if task == "classification":
            proba = model.predict_proba(x_test)
            classes = list(model.classes_)
            out[:, t] = proba[:, classes.index(1)] if 1 in classes else 0.0
        else:
            out[:, t] = model.predict(x_test)
    return out


class GINBaseline(BaseEstimator):
    """A GIN trained from scratch on graphs (`molkit.models.gnn`: ``GraphPredictor`` +
    ``train_graph_model``, early stopping on the validation part: ``epochs`` is a maximum).
    ``pooling``: the graph readout (``mean``, ``sum`` or ``max``; GIN's paper sums).
    ``fit(graphs, y, valid_graphs, y_valid)``; ``predict(graphs)`` returns (n, n_tasks)
    probabilities (classification) or values; ``history_`` holds the training curve and the
    kept epoch."""

    def __init__(
        self,
        task: Task = "classification",
        num_layers: int = 5,
        hidden: int = 300,
        dropout: float = 0.1,
        epochs: int = 100,
        patience: int = 10,
        lr: float = 1e-3,
        batch_size: int = 32,
        seed: int = 0,
        pooling: str = "mean",
    ):
        self.task = task
        self.num_layers = num_layers
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.pooling = pooling

    def fit(
        self,
        graphs: Sequence,
        y: np.ndarray,
        valid_graphs: Sequence | None = None,
        y_valid: np.ndarray | None = None,
    ) -> GINBaseline:
        import torch

        from molkit.models.gnn import GraphPredictor, train_graph_model

        _check_task(self.task)
        y = np.asarray(y, dtype=float).reshape(len(graphs), -1)
        torch.manual_seed(self.seed)
        self.model_ = GraphPredictor(
            y.shape[1],
            num_layers=self.num_layers,
            hidden=self.hidden,
            dropout=self.dropout,
            pooling=self.pooling,
        )
        self.history_ = train_graph_model(
            self.model_,
            list(graphs),
            y,
            list(valid_graphs) if valid_graphs is not None else None,
            y_valid,
            task=self.task,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            progress=False,
        )
        return self

    def predict(self, graphs: Sequence) -> np.ndarray:
        from molkit.models.gnn import predict_graph_model

        if not hasattr(self, "model_"):
            raise RuntimeError("call GINBaseline.fit(...) first")
        return predict_graph_model(self.model_, list(graphs), task=self.task)
