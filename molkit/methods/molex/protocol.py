"""The evaluation protocol of notebook 01: how each dataset is split, what is chosen where, and
which ground truths can judge an explanation.

* `dataset_splits`: a stratified *tuning part* held out of the cross-validation (it only chooses
  settings and is never tested), then stratified k-fold cross-validation of the rest, every
  molecule of it tested once, each training fold with a validation part carved out.
* `select_lm` / `select_gin`: the LM stage (trainable layers, learning rate, beta; epochs by early
  stopping) and the GIN (depth, width, pooling; epochs by early stopping) chosen per dataset:
  every candidate is trained on the first fold's training part, stopped on its validation part,
  and scored on the tuning part; the lowest log-loss there wins. No test label is read.
* `PrefixCache`: the frozen lower layers' outputs of every molecule and n-gram text, once per
  number of trained top layers (`molkit.models.prefix`).
* `truth_enrichment`: whether a dataset's ground truth is more common among the positives than
  among the other molecules (one-sided Fisher test): only then can a model that predicts well be
  expected to rank it first, so only such datasets enter pooled explanation verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from molkit.methods.molex.baselines import GINConfig, gin_baseline
from molkit.methods.molex.method import (
    FineTuneHistory,
    IBClassifier,
    classification_scores,
    finetune_ib,
    log_loss,
    predict_proba_lm,
)
from molkit.methods.molex.settings import Settings
from molkit.models.prefix import PrefixStates, encode_prefix

__all__ = [
    "Enrichment",
    "GINChoice",
    "LMCandidate",
    "LMChoice",
    "LMConfig",
    "PrefixCache",
    "Splits",
    "dataset_splits",
    "prior_proba",
    "select_gin",
    "select_lm",
    "truth_enrichment",
]


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Splits:
    """One dataset's protocol: ``tune`` (row indices of the tuning part) and ``folds`` (one dict
    per fold, ``train`` / ``valid`` / ``test`` row indices; the test parts partition every row
    outside the tuning part)."""

    tune: np.ndarray
    folds: list[dict[str, np.ndarray]]

    @property
    def tested(self) -> np.ndarray:
        """Every row tested once, fold by fold."""
        return np.concatenate([f["test"] for f in self.folds])


def dataset_splits(settings: Settings, df: pd.DataFrame) -> Splits:
    """The tuning part (``settings.tune_fraction``, stratified, seeded by ``settings.seed``) and
    stratified ``settings.folds_of(name)``-fold cross-validation of the rest, with a validation
    part of ``settings.valid_fraction`` in every training fold
    (`molkit.data.explain.explain_splits`)."""
    from sklearn.model_selection import train_test_split

    from molkit.data.explain import explain_splits

    y = df["label"].to_numpy()
    rest, tune = train_test_split(
        np.arange(len(df)),
        test_size=settings.tune_fraction,
        stratify=y,
        random_state=settings.seed,
    )
    rest = np.sort(rest)
    part = df.iloc[rest].reset_index(drop=True)
    folds = explain_splits(
        part, settings.folds_of(df.attrs["name"]), settings.seed, settings.valid_fraction
    )
    return Splits(np.sort(tune), [{k: rest[v] for k, v in f.items()} for f in folds])


def prior_proba(y_train: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """The training class prior as probabilities (n, n_classes): the trivial baseline every
    classifier is judged against first (`molkit.methods.baselines.training_mean`)."""
    from molkit.methods.baselines import training_mean

    prior = training_mean("classification").fit(np.zeros((len(y_train), 1)), y_train)
    proba = np.zeros((n, n_classes))
    proba[:, prior.classes_] = prior.predict_proba(np.zeros((n, 1)))
    return proba


# --------------------------------------------------------------------------- frozen layers


class PrefixCache:
    """Frozen-prefix states (`molkit.models.prefix.encode_prefix`) of one dataset's molecules and
    n-gram texts, computed once per number of trained top layers and kept."""

    def __init__(
        self,
        chemical_lm,
        smiles: Sequence[str],
        texts: Sequence[str],
        max_length: int,
        progress: bool = False,
    ):
        self.model, self.tokenizer = chemical_lm
        self.smiles, self.texts = list(smiles), list(texts)
        self.max_length, self.progress = max_length, progress
        self._cache: dict[tuple[str, int], PrefixStates] = {}

    @property
    def n_layers(self) -> int:
        return len(self.model.encoder.layer)

    def _get(self, what: str, layers: int) -> PrefixStates:
        key = (what, layers)
        if key not in self._cache:
            texts = self.smiles if what == "molecules" else self.texts
            self._cache[key] = encode_prefix(
                self.model,
                self.tokenizer,
                texts,
                layers,
                max_length=self.max_length,
                progress=self.progress,
            )
        return self._cache[key]

    def molecules(self, layers: int) -> PrefixStates:
        """States of every molecule (whole SMILES) for ``layers`` trained top layers."""
        return self._get("molecules", min(layers, self.n_layers))

    def ngrams(self, layers: int) -> PrefixStates:
        """States of every n-gram text for ``layers`` trained top layers."""
        return self._get("ngrams", min(layers, self.n_layers))


# --------------------------------------------------------------------------- the LM stage


@dataclass(frozen=True)
class LMConfig:
    """One candidate of the LM stage: top layers trained, their learning rate, the KL weight."""

    layers: int
    lr: float
    beta: float

    def __str__(self) -> str:
        return f"top {self.layers} layers, lr {self.lr:g}, beta {self.beta:g}"


def finetune(
    settings: Settings,
    prefixes: PrefixCache,
    y: np.ndarray,
    n_classes: int,
    config: LMConfig,
    train: np.ndarray,
    valid: np.ndarray,
    y_train: np.ndarray,
    y_valid: np.ndarray,
    seed: int,
    progress: bool = False,
) -> tuple[IBClassifier, FineTuneHistory]:
    """`finetune_ib` of ``config`` on molecules ``train`` (labels ``y_train``), stopped on
    ``valid`` (``y_valid``), with the settings' epochs, patience and head."""
    mols = prefixes.molecules(config.layers)
    return finetune_ib(
        prefixes.model,
        mols.subset(train),
        y_train,
        mols.subset(valid),
        y_valid,
        n_classes,
        config.layers,
        beta=config.beta,
        epochs=settings.finetune_epochs,
        patience=settings.finetune_patience,
        lr=config.lr,
        head_lr=settings.head_lr,
        batch_size=settings.batch_size,
        bottleneck_dim=settings.bottleneck_dim,
        pooling=settings.pooling,
        seed=seed,
        progress=progress,
    )


@dataclass
class LMCandidate:
    """A candidate trained on the first fold: its history and its figures on the tuning part."""

    config: LMConfig
    history: FineTuneHistory
    tune_log_loss: float
    tune_accuracy: float


@dataclass
class LMChoice:
    """The LM stage chosen for one dataset on its tuning part: every candidate and the chosen
    configuration (lowest log-loss on the tuning part), with the training prior's figures there."""

    dataset: str
    candidates: list[LMCandidate]
    chosen: LMConfig
    prior_log_loss: float
    prior_accuracy: float
    n_tune: int

    def table(self) -> pd.DataFrame:
        """One row per candidate: configuration, epochs, tuning-part figures, chosen."""
        return pd.DataFrame(
            [
                {
                    "dataset": self.dataset,
                    "layers": c.config.layers,
                    "lr": c.config.lr,
                    "beta": c.config.beta,
                    "epochs run": c.history.epochs_run,
                    "kept epoch": c.history.best_epoch,
                    "tuning log-loss": c.tune_log_loss,
                    "tuning accuracy": c.tune_accuracy,
                    "prior log-loss": self.prior_log_loss,
                    "prior accuracy": self.prior_accuracy,
                    "chosen": c.config == self.chosen,
                }
                for c in self.candidates
            ]
        )


def _lowest(values: Sequence[float]) -> int:
    """Index of the lowest finite value (the first on a tie)."""
    arr = np.where(np.isfinite(values), values, np.inf)
    return int(np.argmin(arr))


def select_lm(
    settings: Settings,
    df: pd.DataFrame,
    splits: Splits,
    prefixes: PrefixCache,
    progress: bool = False,
) -> LMChoice:
    """Train every candidate of ``settings.lm_grid`` (seed ``settings.seed``) on the first fold's
    training part, stopped on its validation part, and keep the one with the lowest log-loss on
    the tuning part (`LMChoice`)."""
    y, n_classes = df["label"].to_numpy(), df.attrs["n_classes"]
    fold, tune = splits.folds[0], splits.tune
    tr, va = fold["train"], fold["valid"]
    candidates = []
    for layers, lr, beta in settings.lm_grid:
        config = LMConfig(layers, lr, beta)
        clf, hist = finetune(
            settings,
            prefixes,
            y,
            n_classes,
            config,
            tr,
            va,
            y[tr],
            y[va],
            settings.seed,
            progress,
        )
        proba = predict_proba_lm(clf, prefixes.molecules(layers).subset(tune))
        scores = classification_scores(y[tune], proba)
        candidates.append(LMCandidate(config, hist, log_loss(y[tune], proba), scores["accuracy"]))
    best = _lowest([c.tune_log_loss for c in candidates])
    prior = prior_proba(y[tr], len(tune), n_classes)
    return LMChoice(
        df.attrs["name"],
        candidates,
        candidates[best].config,
        log_loss(y[tune], prior),
        float(np.mean(prior.argmax(1) == y[tune])),
        len(tune),
    )


# --------------------------------------------------------------------------- the GIN


@dataclass
class GINChoice:
    """The GIN architecture chosen for one dataset on its tuning part (`select_gin`)."""

    dataset: str
    table: pd.DataFrame
    chosen: GINConfig


def select_gin(settings: Settings, df: pd.DataFrame, splits: Splits, graphs: Sequence) -> GINChoice:
    """Train a GIN of every depth x width x pooling of the settings' grids on the first fold's
    training part (early stopping on its validation part) and keep the lowest log-loss on the
    tuning part. The table has one row per candidate with the training prior's figures."""
    y, n_classes = df["label"].to_numpy(), df.attrs["n_classes"]
    fold = splits.folds[0]
    split = {"train": fold["train"], "valid": fold["valid"], "tune": splits.tune}
    y_tune = y[splits.tune]
    prior = prior_proba(y[fold["train"]], len(y_tune), n_classes)
    rows, configs = [], []
    for depth in settings.gin_depth_grid:
        for width in settings.gin_width_grid:
            for pooling in settings.gin_pooling_grid:
                config = GINConfig(depth, width, pooling)
                gin, out = gin_baseline(
                    graphs,
                    y[fold["train"]],
                    y[fold["valid"]],
                    split,
                    n_classes,
                    config,
                    settings.gin_epochs,
                    settings.gin_patience,
                    settings.seed,
                    predict=("tune",),
                )
                proba = out["tune"]
                configs.append(config)
                rows.append(
                    {
                        "dataset": df.attrs["name"],
                        "depth": depth,
                        "width": width,
                        "pooling": pooling,
                        "kept epoch": int(gin.history_.best_epoch),
                        "tuning log-loss": log_loss(y_tune, proba),
                        "tuning accuracy": float(np.mean(proba.argmax(1) == y_tune)),
                        "prior log-loss": log_loss(y_tune, prior),
                        "prior accuracy": float(np.mean(prior.argmax(1) == y_tune)),
                    }
                )
    table = pd.DataFrame(rows)
    best = _lowest(table["tuning log-loss"].tolist())
    table["chosen"] = np.arange(len(table)) == best
    return GINChoice(df.attrs["name"], table, configs[best])


# --------------------------------------------------------------------------- ground truth


@dataclass
class Enrichment:
    """Whether one dataset's ground truth points toward its explained class: the share of the
    positives (the explained class) and of the other molecules that carry it, their ratio and a
    one-sided Fisher exact test (``enriched``: p < 0.05). ``None`` shares: no ground truth."""

    dataset: str
    positives: int
    others: int
    share_positives: float | None = None
    share_others: float | None = None
    p_value: float = float("nan")
    enriched: bool = False
    note: str = field(default="")

    @property
    def ratio(self) -> float:
        if not self.share_others:
            return float("nan")
        return float(self.share_positives / self.share_others)


def _carries_truth(df: pd.DataFrame) -> np.ndarray | None:
    """Per molecule, whether it carries the dataset's ground truth whatever its label (None when
    the dataset has none). MUTAG / PTC annotate group types in every row but a truth mask only
    for positives, so their rows' annotations are read from the file."""
    from molkit.data.explain import GROUND_TRUTH_TYPES

    name = df.attrs["name"]
    if name in GROUND_TRUTH_TYPES:
        from molkit.data.datasets import load_dataset

        raw = load_dataset(name)
        types = set(GROUND_TRUTH_TYPES[name])
        has = dict(
            zip(
                raw["smiles_raw"].astype(str),
                raw["group_label"].map(lambda groups: bool(set(groups) & types)),
                strict=True,
            )
        )
        return np.array([bool(has.get(s, False)) for s in df["smiles"]])
    if "truth" not in df or df["truth"].isna().all():
        return None
    return df["truth"].notna().to_numpy()


def truth_enrichment(df: pd.DataFrame, alpha: float = 0.05) -> Enrichment:
    """`Enrichment` of ``df``'s ground truth among its explained class (the whole file: a
    property of the data, not a model choice)."""
    from scipy.stats import fisher_exact

    positive = (df["label"] == df.attrs["explain_class"]).to_numpy()
    has = _carries_truth(df)
    out = Enrichment(df.attrs["name"], int(positive.sum()), int((~positive).sum()))
    if has is None:
        out.note = "no ground truth"
        return out
    a, b = int((has & positive).sum()), int((~has & positive).sum())
    c, d = int((has & ~positive).sum()), int((~has & ~positive).sum())
    out.share_positives = a / max(a + b, 1)
    out.share_others = c / max(c + d, 1)
    out.p_value = float(fisher_exact([[a, b], [c, d]], alternative="greater").pvalue)
    out.enriched = out.p_value < alpha
    return out
