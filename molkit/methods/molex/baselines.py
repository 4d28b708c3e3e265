"""The models MoleX is compared with on the same splits: Morgan fingerprints with logistic
regression (and its atom attributions) or a random forest, and a GIN trained from scratch.

Each baseline is fit on a fold's training part and chooses what it chooses on that fold's
validation part, the one MoleX stops its calibration on: the logistic regression's C, the forest's
leaf size (lowest validation log-loss), the GIN's epoch (early stopping); the GIN's depth, width
and pooling are chosen per dataset on the tuning part (`molkit.methods.molex.protocol`).

The random forest and the GIN are the shared ones (`molkit.methods.baselines`). The logistic
regression is not: the shared `MorganFingerprint` hands float32 bits to scikit-learn, which then
fits in float32, while this notebook's numbers come from uint8 bits, which scikit-learn fits in
float64 (probabilities differ by up to ~1e-6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from molkit.chem import parse_smiles
from molkit.methods.molex.method import log_loss

__all__ = [
    "FingerprintFit",
    "GINConfig",
    "fingerprint_baselines",
    "gin_baseline",
    "gin_probabilities",
    "morgan_atom_scores",
]


def morgan_atom_scores(
    smiles: Sequence[str], bit_weights: np.ndarray, radius: int = 2, n_bits: int = 2048
) -> list[np.ndarray]:
    """Atom attributions of a linear model on binary Morgan bits: each set bit's weight is split
    over the environments that set it, and each environment's share over its atoms."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    weights = np.asarray(bit_weights, dtype=float).ravel()
    out = []
    for s in smiles:
        mol = parse_smiles(s)
        info = rdFingerprintGenerator.AdditionalOutput()
        info.AllocateBitInfoMap()
        gen.GetFingerprint(mol, additionalOutput=info)
        scores = np.zeros(mol.GetNumAtoms())
        for bit, envs in info.GetBitInfoMap().items():
            for center, rad in envs:
                atoms = {center}
                if rad > 0:
                    for bond in Chem.FindAtomEnvironmentOfRadiusN(mol, rad, center):
                        b = mol.GetBondWithIdx(bond)
                        atoms |= {b.GetBeginAtomIdx(), b.GetEndAtomIdx()}
                scores[list(atoms)] += weights[bit] / (len(envs) * len(atoms))
        out.append(scores)
    return out


@dataclass
class FingerprintFit:
    """The Morgan baselines of one fold: test probabilities (n_test, n_classes) of the logistic
    regression and the forest, the regression's atom attributions toward the explained class, and
    the settings their validation part chose (``c``, ``leaf``)."""

    proba_lr: np.ndarray
    proba_rf: np.ndarray
    attributions: list[np.ndarray]
    c: float
    leaf: int


def _choose(candidates: Sequence, fit, x_valid, y_valid):
    """(candidate, fitted model) with the lowest validation log-loss (the first on a tie)."""
    best = None
    for value in candidates:
        model = fit(value)
        loss = log_loss(y_valid, model.predict_proba(x_valid))
        if best is None or loss < best[0] - 1e-12:
            best = (loss, value, model)
    return best[1], best[2]


def fingerprint_baselines(
    smiles: Sequence[str],
    y_train: np.ndarray,
    y_valid: np.ndarray,
    split: Mapping[str, np.ndarray],
    n_classes: int,
    target: int,
    radius: int = 2,
    n_bits: int = 2048,
    c_grid: Sequence[float] = (0.1,),
    rf_trees: int = 200,
    leaf_grid: Sequence[int] = (1,),
    seed: int = 0,
) -> FingerprintFit:
    """Morgan FP + LR (C from ``c_grid``) and Morgan FP + RF (min_samples_leaf from ``leaf_grid``)
    fit on ``split["train"]`` (labels ``y_train``), each choice the lowest log-loss on
    ``split["valid"]`` (labels ``y_valid``); test probabilities of ``split["test"]`` and the LR's
    atom attributions toward class ``target`` (for more than two classes: that class's weights
    minus the mean weights). No test label is read."""
    from sklearn.linear_model import LogisticRegression

    from molkit.chem import morgan_bits
    from molkit.methods.baselines import morgan_model

    smiles = np.asarray(smiles, dtype=object)
    tr, va, te = split["train"], split["valid"], split["test"]
    y_train, y_valid = np.asarray(y_train, dtype=int), np.asarray(y_valid, dtype=int)
    # uint8 bits: scikit-learn fits them in float64 (see the module docstring)
    fp = morgan_bits(list(smiles), radius=radius, n_bits=n_bits, progress=False)
    c, lr = _choose(
        c_grid,
        lambda c: LogisticRegression(C=c, max_iter=5000).fit(fp[tr], y_train),
        fp[va],
        y_valid,
    )
    leaf, rf = _choose(
        leaf_grid,
        lambda leaf: morgan_model(
            "rf",
            radius=radius,
            n_bits=n_bits,
            n_estimators=rf_trees,
            random_state=seed,
            n_jobs=1,
            min_samples_leaf=leaf,
        ).fit(list(smiles[tr]), y_train),
        list(smiles[va]),
        y_valid,
    )
    coef = lr.coef_[0] if n_classes == 2 else lr.coef_[target] - lr.coef_.mean(0)
    attributions = morgan_atom_scores(list(smiles[te]), coef, radius, n_bits)
    return FingerprintFit(
        lr.predict_proba(fp[te]), rf.predict_proba(list(smiles[te])), attributions, c, leaf
    )


@dataclass(frozen=True)
class GINConfig:
    """A GIN's architecture: message-passing layers, width and graph pooling."""

    depth: int
    width: int
    pooling: str

    def __str__(self) -> str:
        return f"{self.depth} layers x {self.width}, {self.pooling} pooling"


def gin_probabilities(p: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities (n, n_classes) from a GIN's sigmoid outputs: one output for two
    classes, one-vs-rest sigmoids normalised to sum 1 otherwise."""
    if n_classes == 2:
        return np.column_stack([1 - p[:, 0], p[:, 0]])
    return p / p.sum(1, keepdims=True)


def gin_baseline(
    graphs: Sequence,
    y_train: np.ndarray,
    y_valid: np.ndarray,
    split: Mapping[str, np.ndarray],
    n_classes: int,
    config: GINConfig,
    epochs: int = 100,
    patience: int = 10,
    seed: int = 0,
    predict: Sequence[str] = ("test",),
):
    """A GIN trained from scratch (`molkit.methods.baselines.GINBaseline`) on the graphs of
    ``split["train"]`` (labels ``y_train``), early-stopped on ``split["valid"]`` (``y_valid``):
    ``epochs`` is a maximum. Returns (the fitted GIN, {part: class probabilities (n, n_classes)}
    for each part named in ``predict``; a part is a key of ``split``)."""
    from molkit.methods.baselines import GINBaseline

    def targets(y):
        y = np.asarray(y, dtype=int)
        return y[:, None].astype(float) if n_classes == 2 else np.eye(n_classes)[y]

    tr, va = split["train"], split["valid"]
    gin = GINBaseline(
        num_layers=config.depth,
        hidden=config.width,
        pooling=config.pooling,
        dropout=0.1,
        epochs=epochs,
        patience=patience,
        seed=seed,
    ).fit([graphs[i] for i in tr], targets(y_train), [graphs[i] for i in va], targets(y_valid))
    out = {
        part: gin_probabilities(gin.predict([graphs[i] for i in split[part]]), n_classes)
        for part in predict
    }
    return gin, out
