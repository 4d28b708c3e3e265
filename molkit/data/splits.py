"""Dataset splits: random, deterministic Bemis-Murcko scaffold, predefined, and grouped.

Every function returns a dict ``{"train": idx, "valid": idx, "test": idx}`` of sorted integer
position arrays (``np.ndarray``) into the input sequence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

Split = dict[str, np.ndarray]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            "fractions must be three non-negative numbers summing to 1 (train, valid, test), "
            f"got {tuple(fractions)}"
        )
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Shuffle ``range(n)`` with ``seed`` and cut it by ``fractions``."""
    f_train, f_valid, _ = _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(round(f_train * n)), int(round(f_valid * n))
    return {
        "train": np.sort(perm[:n_train]),
        "valid": np.sort(perm[n_train : n_train + n_valid]),
        "test": np.sort(perm[n_train + n_valid :]),
    }


def murcko_scaffold(smiles: str, include_chirality: bool = False) -> str:
    """Bemis-Murcko scaffold SMILES of a molecule ('' for acyclic molecules)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    from molkit.chem import parse_smiles

    mol = parse_smiles(smiles)
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def scaffold_split(
    smiles: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    balanced: bool = False,
    seed: int = 0,
) -> Split:
    """Bemis-Murcko scaffold split; no scaffold is shared between two parts.

    ``balanced=False`` (default): the deterministic MoleculeNet / DeepChem ``ScaffoldSplitter``
    convention: scaffold sets sorted by size, largest first, ties to the set whose first molecule
    comes later (DeepChem sorts by (size, first index) in reverse), fill train until it would exceed
    its share, then valid, then test; no seed involved.
    ``balanced=True``: chemprop's ``scaffold_balanced``: sets larger than half the valid/test size
    go first, the rest in a seeded random order, so different seeds give different (still
    scaffold-disjoint) splits.
    """
    f_train, f_valid, f_test = _check_fractions(fractions)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[murcko_scaffold(s)].append(i)
    n = len(smiles)
    if balanced:
        big_cut = min(f_valid, f_test) * n / 2
        big = [g for g in groups.values() if len(g) > big_cut]
        small = [g for g in groups.values() if len(g) <= big_cut]
        rng = np.random.default_rng(seed)
        rng.shuffle(big)
        rng.shuffle(small)
        sets = big + small
    else:
        sets = sorted(groups.values(), key=lambda idx: (len(idx), idx[0]), reverse=True)
    train_cut, valid_cut = f_train * n, (f_train + f_valid) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for idx in sets:
        if len(train) + len(idx) > train_cut:
            if len(train) + len(valid) + len(idx) > valid_cut:
                test += idx
            else:
                valid += idx
        else:
            train += idx
    return {
        k: np.array(sorted(v), dtype=int)
        for k, v in (("train", train), ("valid", valid), ("test", test))
    }


def predefined_split(labels: Sequence[str], valid_from_train: float = 0.0, seed: int = 0) -> Split:
    """Split from an upstream column (values 'train' / 'valid' / 'test').

    Where upstream has no validation part, ``valid_from_train`` carves a seeded fraction of train.
    """
    labels = np.asarray([str(x).lower() for x in labels])
    unknown = set(labels) - {"train", "valid", "test"}
    if unknown:
        raise ValueError(
            f"predefined split labels must be train/valid/test, found {sorted(unknown)}"
        )
    out = {k: np.flatnonzero(labels == k) for k in ("train", "valid", "test")}
    if valid_from_train and len(out["valid"]) == 0:
        rng = np.random.default_rng(seed)
        train = rng.permutation(out["train"])
        n_valid = int(round(valid_from_train * len(train)))
        out["valid"], out["train"] = np.sort(train[:n_valid]), np.sort(train[n_valid:])
    return out


def group_split(
    groups: Sequence, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Seeded split that keeps every group (e.g. a solute, a chromophore) within one part."""
    f_train, f_valid, _ = _check_fractions(fractions)
    keys = list(dict.fromkeys(groups))
    order = np.random.default_rng(seed).permutation(len(keys))
    members: dict = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    n = len(groups)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for j in order:
        idx = members[keys[j]]
        if len(parts["train"]) + len(idx) <= f_train * n:
            parts["train"] += idx
        elif len(parts["train"]) + len(parts["valid"]) + len(idx) <= (f_train + f_valid) * n:
            parts["valid"] += idx
        else:
            parts["test"] += idx
    return {k: np.array(sorted(v), dtype=int) for k, v in parts.items()}


def make_split(
    method: str,
    *,
    smiles: Sequence[str] | None = None,
    n: int | None = None,
    labels=None,
    groups=None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Dispatch by name: ``random`` (n or smiles), ``scaffold`` / ``scaffold_balanced`` (smiles),
    ``predefined`` (labels), ``group`` (groups)."""
    if method == "random":
        return random_split(n if n is not None else len(smiles), fractions, seed)
    if method == "scaffold":
        return scaffold_split(smiles, fractions)
    if method == "scaffold_balanced":
        return scaffold_split(smiles, fractions, balanced=True, seed=seed)
    if method == "predefined":
        return predefined_split(labels, seed=seed)
    if method == "group":
        return group_split(groups, fractions, seed)
    raise ValueError(
        f"unknown split method {method!r}; "
        "choose 'random', 'scaffold', 'scaffold_balanced', 'predefined' or 'group'"
    )


def subsample(
    n_total: int, n: int | None, seed: int = 0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Sorted indices of a seeded sample of ``n`` of ``n_total`` items without replacement (all of
    them when ``n`` is None or not smaller). Pass ``rng`` to draw several samples from one
    generator: each call draws from it, whatever ``n``, so a sequence of samples does not depend on
    which of them took everything."""
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, not {n}")
    k = n_total if n is None else min(n, n_total)
    rng = rng if rng is not None else np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, k, replace=False))
