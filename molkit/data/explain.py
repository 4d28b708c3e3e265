"""Explanation datasets: molecules whose atoms carry a ground-truth explanation.

MUTAG and the four PTC files come from Lamole's Group-SELFIES files: each row has a SMILES, a label
and the Group-SELFIES type of each group token (`GROUP_SELFIES_TYPES`), but no atom indices; the
ground-truth atoms are found by RDKit SMARTS (`GROUP_TYPE_SMARTS`, `tu_ground_truth`). Liver ships
atom-level structural alerts (``node_atts``). `load_explain_dataset` gives every file one shape
(``smiles``, ``label``, ``truth``), `explain_split` its seeded, label-stratified split and
`explain_splits` the evaluation protocol (stratified k-fold cross-validation, a validation part
carved out of every training fold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from rdkit import Chem

from molkit.chem import parse_smiles

__all__ = [
    "EXPLAIN_DATASETS",
    "GROUND_TRUTH_TYPES",
    "GROUP_SELFIES_TYPES",
    "GROUP_TYPE_SMARTS",
    "explain_split",
    "explain_splits",
    "group_type_enrichment",
    "ground_truth_prevalence",
    "load_explain_dataset",
    "tu_ground_truth",
]

EXPLAIN_DATASETS = ("mutag", "ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr", "liver")

#: ``TOTAL LABEL`` / ``GROUP LABEL`` codes of the mirrored MUTAG / PTC files (code 8 = no group).
GROUP_SELFIES_TYPES = {
    0: "benzene",
    1: "nitro",
    2: "carbonyl",
    3: "amido",
    4: "hydroxyl",
    5: "cyano",
    6: "carboxyl",
    7: "cyclohexene",
}

#: RDKit SMARTS that locate the atoms of each Group-SELFIES group type in the SMILES.
GROUP_TYPE_SMARTS = {
    0: "c1ccccc1",
    1: "[N;X3](~[OX1])~[OX1]",
    2: "[CX3;$(C([#6])[#6])]=[OX1]",
    3: "[CX3](=[OX1])[NX3]",
    4: "[OX2H1;$(O[#6])]",
    5: "[CX2]#[NX1]",
    6: "[CX3](=[OX1])[OX2H1,OX1-]",
    7: "C1=CCCCC1",
}

#: Which group types are the ground-truth explanation of the positive class, per dataset, following
#: Lamole's definition (a functional group together with the benzene ring it is attached to):
#: nitro-aromatics for MUTAG mutagens (every MUTAG molecule has a nitro group, so only mutagens are
#: scored), every annotated non-benzene group with its benzene ring for PTC carcinogens.
GROUND_TRUTH_TYPES = {
    "mutag": (1,),
    **{name: (1, 2, 3, 4, 5, 6, 7) for name in ("ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr")},
}


def tu_ground_truth(
    smiles: str, group_labels: Sequence[int], types: Sequence[int], attached_benzene: bool = True
) -> np.ndarray | None:
    """Atom mask (n_atoms,) int8 of the annotated groups of ``types`` in one MUTAG/PTC molecule.

    ``group_labels`` is the row's ``GROUP LABEL`` (the Group-SELFIES type of each group token).
    Group-SELFIES tokens carry no atom indices, so the atoms are found by RDKit: every match of
    the type's SMARTS (`GROUP_TYPE_SMARTS`) in ``smiles``, for each type that is both annotated
    in the row and listed in ``types``. With ``attached_benzene`` (and benzene annotated in the
    row), every benzene ring bonded to one of those groups is added (Lamole's group + benzene
    pairing). None when no such group is annotated.
    """
    labels = set(int(g) for g in group_labels)
    wanted = sorted(labels & set(int(t) for t in types))
    if not wanted:
        return None
    mol = parse_smiles(smiles)
    mask = np.zeros(mol.GetNumAtoms(), dtype=np.int8)
    for code in wanted:
        for match in mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_TYPE_SMARTS[code])):
            mask[list(match)] = 1
    if attached_benzene and 0 in labels:
        group_atoms = set(np.flatnonzero(mask).tolist())
        for ring in mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_TYPE_SMARTS[0])):
            neighbours = {nb.GetIdx() for i in ring for nb in mol.GetAtomWithIdx(i).GetNeighbors()}
            if neighbours & group_atoms:
                mask[list(ring)] = 1
    return mask


def _check_name(name: str) -> str:
    key = name.strip().lower()
    if key not in EXPLAIN_DATASETS:
        raise ValueError(
            f"unknown explanation dataset {name!r}; choose one of {', '.join(EXPLAIN_DATASETS)}"
        )
    return key


def load_explain_dataset(
    name: str, max_molecules: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """One of `EXPLAIN_DATASETS` with columns ``smiles`` (the file's SMILES, whose atom order
    the ground truth follows), ``label`` (int), ``truth`` (atom mask or None) and, for Liver,
    ``split``. ``df.attrs``: ``name``, ``n_classes``, ``explain_class`` (the class whose logit the
    explanations are scored for), ``n_duplicates_dropped``.

    Duplicated SMILES (7-8 per PTC file) are kept once; a duplicate with conflicting labels is
    dropped entirely. ``max_molecules`` takes a seeded, label-stratified subset (smoke runs).
    """
    from molkit.data.datasets import load_dataset

    key = _check_name(name)
    raw = load_dataset(key)
    df = pd.DataFrame(
        {
            "smiles": raw["smiles_raw"].astype(str),
            "canonical": raw["smiles"],
            "label": raw["label"].astype(int),
        }
    )
    if key == "liver":
        df["split"] = raw["split"].to_numpy()
        df["truth"] = [a if a.any() else None for a in raw["node_atts"]]
        n_classes, explain_class = 3, 2
    else:
        types = GROUND_TRUTH_TYPES[key]
        df["truth"] = [
            tu_ground_truth(s, g, types) if y == 1 else None
            for s, g, y in zip(raw["smiles_raw"], raw["group_label"], df["label"], strict=True)
        ]
        n_classes, explain_class = 2, 1
    conflicting = df.groupby("canonical")["label"].transform("nunique") > 1
    n_before = len(df)
    df = (
        df[~conflicting]
        .drop_duplicates("canonical")
        .drop(columns="canonical")
        .reset_index(drop=True)
    )
    n_duplicates = n_before - len(df)  # before any subset: a subset drops no duplicate
    if max_molecules is not None and len(df) > max_molecules:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(len(df)), train_size=max_molecules, stratify=df["label"], random_state=seed
        )
        df = df.iloc[np.sort(keep)].reset_index(drop=True)
    df.attrs.update(
        {
            "name": key,
            "n_classes": n_classes,
            "explain_class": explain_class,
            "n_duplicates_dropped": n_duplicates,
        }
    )
    return df


def explain_split(
    df: pd.DataFrame, seed: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, np.ndarray]:
    """Label-stratified random split {"train", "valid", "test"} -> sorted indices.

    With a ``split`` column (Liver) its test part is kept and ``fractions[1]`` of the whole is
    carved out of its train part as validation (stratified, seeded); otherwise (MUTAG, PTC have no
    split column) the seeded stratified split follows ``fractions`` (train, valid, test).
    """
    from sklearn.model_selection import train_test_split

    f_train, f_valid, f_test = (float(f) for f in fractions)
    if min(f_train, f_valid, f_test) <= 0 or abs(f_train + f_valid + f_test - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}"
        )
    idx, y = np.arange(len(df)), df["label"].to_numpy()
    if "split" in df:
        test = idx[df["split"].to_numpy() == "test"]
        rest = idx[df["split"].to_numpy() != "test"]
    else:
        rest, test = train_test_split(idx, test_size=f_test, stratify=y, random_state=seed)
    train, valid = train_test_split(
        rest, test_size=f_valid / (f_train + f_valid), stratify=y[rest], random_state=seed
    )
    return {"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)}


def explain_splits(
    df: pd.DataFrame, folds: int, seed: int = 0, valid_fraction: float = 0.1
) -> list[dict[str, np.ndarray]]:
    """Stratified ``folds``-fold cross-validation (shuffled, seeded): one split per fold,
    {"train", "valid", "test"} -> sorted indices, whose test parts partition the molecules (every
    molecule is tested exactly once, the TU-dataset convention for MUTAG and PTC). ``valid``:
    ``valid_fraction`` of the whole, carved stratified out of each training fold (early
    stopping); an upstream ``split`` column is not used. ``folds`` must be at least 2 and at most
    the size of the smallest class."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = df["label"].to_numpy()
    smallest = int(np.bincount(y).min()) if len(y) else 0
    if not 2 <= folds <= smallest:
        raise ValueError(
            f"cannot make {folds} stratified folds of {len(y)} molecules whose smallest class has "
            f"{smallest}; choose 2..{smallest} folds"
        )
    if not 0 < valid_fraction < 1 - 1 / folds:
        raise ValueError(
            f"valid_fraction must be in (0, {1 - 1 / folds:.2f}), got {valid_fraction}"
        )
    out = []
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (rest, test) in enumerate(cv.split(np.zeros(len(y)), y)):
        share = valid_fraction * len(y) / len(rest)
        train, valid = train_test_split(
            rest, test_size=share, stratify=y[rest], random_state=seed + k
        )
        out.append({"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)})
    return out


def group_type_enrichment(name: str) -> pd.DataFrame:
    """Per Group-SELFIES type of a whole MUTAG/PTC file (before de-duplication): the share of
    positives and of negatives whose row annotates it, and their ratio (> 1: more common among
    positives). A ground truth is discriminative only when its types are enriched among positives;
    ``ground truth`` marks the types `GROUND_TRUTH_TYPES` uses."""
    from molkit.data.datasets import load_dataset

    key = _check_name(name)
    if key not in GROUND_TRUTH_TYPES:
        raise ValueError(
            f"{name!r} has no group-type ground truth (only {list(GROUND_TRUTH_TYPES)})"
        )
    raw = load_dataset(key)
    pos, neg = raw["label"] == 1, raw["label"] == 0
    rows = []
    for code, type_name in GROUP_SELFIES_TYPES.items():
        has = raw["group_label"].map(lambda groups, c=code: c in set(groups))
        p, n = float(has[pos].mean()), float(has[neg].mean())
        rows.append(
            {
                "dataset": key,
                "group type": type_name,
                "ground truth": code in GROUND_TRUTH_TYPES[key],
                "share of positives": p,
                "share of negatives": n,
                "ratio": p / n if n > 0 else float("inf") if p > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def ground_truth_prevalence(name: str) -> dict[str, object]:
    """Share of the positives and of the negatives of a whole MUTAG/PTC file (before
    de-duplication) that carry at least one ground-truth group type (`GROUND_TRUTH_TYPES`): where
    the annotated groups point in the data."""
    from molkit.data.datasets import load_dataset

    key = _check_name(name)
    if key not in GROUND_TRUTH_TYPES:
        raise ValueError(
            f"{name!r} has no group-type ground truth (only {list(GROUND_TRUTH_TYPES)})"
        )
    raw = load_dataset(key)
    types = set(GROUND_TRUTH_TYPES[key])
    has = raw["group_label"].map(lambda groups: bool(set(groups) & types))
    return {
        "dataset": key,
        "positives with a ground-truth group": has[raw["label"] == 1].mean(),
        "negatives with a ground-truth group": has[raw["label"] == 0].mean(),
    }
