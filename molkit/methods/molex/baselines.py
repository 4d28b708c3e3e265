"""The models MoleX is compared with on the same splits: Morgan fingerprints with logistic
regression (and its atom attributions) or a random forest, and a GIN trained from scratch.

The random forest and the GIN are the shared ones (`molkit.methods.baselines`). The logistic
regression is not: the shared `MorganFingerprint` hands float32 bits to scikit-learn, which then
fits in float32, while this notebook's recorded numbers come from uint8 bits, which scikit-learn
fits in float64 (probabilities differ by up to ~1e-6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rdkit import Chem

from molkit.chem import parse_smiles

__all__ = ["fingerprint_baselines", "gin_baseline", "morgan_atom_scores"]


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


def fingerprint_baselines(
    smiles: Sequence[str],
    y: np.ndarray,
    split: Mapping[str, np.ndarray],
    n_classes: int,
    target: int,
    radius: int = 2,
    n_bits: int = 2048,
    rf_trees: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Morgan FP + LR (C = 0.1) and Morgan FP + RF fit on the training part. Returns the test
    probabilities of both (n_test, n_classes) and the LR's atom attributions toward class
    ``target`` (for more than two classes: that class's weights minus the mean weights)."""
    from sklearn.linear_model import LogisticRegression

    from molkit.chem import morgan_bits
    from molkit.methods.baselines import morgan_model

    smiles = np.asarray(smiles, dtype=object)
    y = np.asarray(y)
    tr, te = split["train"], split["test"]
    # uint8 bits: scikit-learn fits them in float64 (see the module docstring)
    fp = morgan_bits(list(smiles), radius=radius, n_bits=n_bits, progress=False)
    lr = LogisticRegression(C=0.1, max_iter=5000).fit(fp[tr], y[tr])
    rf = morgan_model(
        "rf", radius=radius, n_bits=n_bits, n_estimators=rf_trees, random_state=seed, n_jobs=1
    ).fit(list(smiles[tr]), y[tr])
    coef = lr.coef_[0] if n_classes == 2 else lr.coef_[target] - lr.coef_.mean(0)
    attributions = morgan_atom_scores(list(smiles[te]), coef, radius, n_bits)
    return lr.predict_proba(fp[te]), rf.predict_proba(list(smiles[te])), attributions


def gin_baseline(
    smiles: Sequence[str],
    y: np.ndarray,
    split: Mapping[str, np.ndarray],
    n_classes: int,
    num_layers: int = 3,
    hidden: int = 64,
    epochs: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """Test class probabilities (n_test, n_classes) of a GIN trained from scratch
    (`molkit.methods.baselines.GINBaseline`, early stopping on the validation part): one sigmoid
    output for two classes, one-vs-rest sigmoids normalised to sum 1 otherwise."""
    from molkit.chem import graphs_from_smiles
    from molkit.methods.baselines import GINBaseline

    y = np.asarray(y)
    targets = y[:, None].astype(float) if n_classes == 2 else np.eye(n_classes)[y]
    graphs = graphs_from_smiles(list(smiles), progress=False)
    tr, va, te = split["train"], split["valid"], split["test"]
    gin = GINBaseline(
        num_layers=num_layers, hidden=hidden, dropout=0.1, epochs=epochs, patience=10, seed=seed
    ).fit([graphs[i] for i in tr], targets[tr], [graphs[i] for i in va], targets[va])
    p = gin.predict([graphs[i] for i in te])
    if n_classes == 2:
        return np.column_stack([1 - p[:, 0], p[:, 0]])
    return p / p.sum(1, keepdims=True)
