"""Molecule-pair data: unordered pair keys, de-duplication, drug-cold splits and leak checks.

A pair frame has one row per pair, the two molecules in two columns (``smiles_1``, ``smiles_2`` by
default) and optionally a label. ``pair_key`` makes a pair and its swap one key;
``deduplicate_pairs`` keeps one row per unordered pair (dropping pairs whose copies disagree);
``drug_cold_split`` puts a molecule absent from training in every valid / test pair (or, with
``unseen="both"``, both molecules); ``make_pair_split`` names every split a pair notebook uses;
``split_overlap`` / ``check_cold_split`` count (or refuse) what each part shares with training;
``straddling_pairs`` finds the pairs a ``drug_cold_both`` split leaves out between two parts.
For measurements on ordered pairs (a solute in a solvent, at a temperature):
``deduplicate_measurements`` keeps one row per (molecule 1, molecule 2, context), averaging the
repeats, and ``unseen_split`` keeps every molecule of one role (e.g. every solvent) of a valid or
test pair out of training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from molkit.data.splits import Split, group_split, predefined_split, random_split

__all__ = [
    "PAIR_COLUMNS",
    "PAIR_SPLITS",
    "check_cold_split",
    "deduplicate_measurements",
    "deduplicate_pairs",
    "drug_cold_split",
    "make_pair_split",
    "pair_key",
    "split_overlap",
    "straddling_pairs",
    "unseen_split",
]

#: The default columns of a pair frame's two molecules.
PAIR_COLUMNS: tuple[str, str] = ("smiles_1", "smiles_2")
#: The split names `make_pair_split` knows.
PAIR_SPLITS: tuple[str, ...] = ("upstream", "random", "grouped", "drug_cold", "drug_cold_both")


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The unordered key of a pair: ``(min(a, b), max(a, b))``."""
    return (a, b) if a <= b else (b, a)


def _keys(df: pd.DataFrame, cols: tuple[str, str]) -> list[tuple[str, str]]:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(
            f"pair columns {missing} not in the frame (columns: {list(df.columns)}); "
            "pass cols=(...)"
        )
    return [pair_key(str(a), str(b)) for a, b in zip(df[cols[0]], df[cols[1]], strict=True)]


def deduplicate_pairs(
    df: pd.DataFrame, label: str = "label", cols: tuple[str, str] = PAIR_COLUMNS
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per unordered pair: the first occurrence is kept; pairs whose copies disagree on
    ``label`` are dropped entirely (neither label can be trusted).

    Returns the de-duplicated frame (index reset) and counts: ``rows``, ``unique_pairs``,
    ``duplicate_rows`` (rows removed as repeats), ``conflicting_pairs`` (dropped), ``kept``.
    """
    keys = pd.Series(_keys(df, cols), index=df.index)
    n_labels = df[label].groupby(keys).nunique()
    conflicting = set(n_labels.index[n_labels > 1])
    first = ~keys.duplicated(keep="first")
    keep = first & ~keys.isin(conflicting)
    out = df[keep].reset_index(drop=True)
    report = {
        "rows": len(df),
        "unique_pairs": int(first.sum()),
        "duplicate_rows": int((~first).sum()),
        "conflicting_pairs": len(conflicting),
        "kept": len(out),
    }
    return out, report


def drug_cold_split(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cols: tuple[str, str] = PAIR_COLUMNS,
    unseen: str = "one",
) -> Split:
    """Seeded drug-cold split of de-duplicated pairs.

    Molecules are shuffled with ``seed`` and assigned to train / valid / test.
    ``unseen="one"``: a pair lands in test when it holds a test molecule, in valid when it holds a
    valid molecule and no test one, else in train, with molecule shares chosen so that the pair
    shares come out near ``fractions``; every valid and test pair contains a molecule absent from
    every training pair.
    ``unseen="both"``: a pair is kept only when both molecules fall in the same part (molecule
    shares proportional to the square roots of ``fractions``), so no valid or test pair shares a
    molecule with train; the pairs that straddle two parts (about half) are left out of every part.
    Raises when an unordered pair occurs twice (run :func:`deduplicate_pairs` first).
    """
    f_train, f_valid, f_test = (float(f) for f in fractions)
    if abs(f_train + f_valid + f_test - 1) > 1e-6 or min(f_train, f_valid, f_test) < 0:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    keys = _keys(df, cols)
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"{len(keys) - len(set(keys))} unordered pairs occur more than once; run "
            "deduplicate_pairs(df) first so that no pair (or its swap) can sit on both sides of "
            "the split"
        )
    if unseen == "one":
        # P(pair has >= 1 test molecule) = 1 - (1 - m_test)^2, likewise for valid given no test one.
        m_test = 1 - math.sqrt(1 - f_test)
        m_valid = math.sqrt(1 - f_test) - math.sqrt(max(f_train, 0.0)) if f_valid > 0 else 0.0
    elif unseen == "both":
        roots = [math.sqrt(f) for f in (f_train, f_valid, f_test)]
        m_valid, m_test = roots[1] / sum(roots), roots[2] / sum(roots)
    else:
        raise ValueError(f"unseen must be 'one' or 'both', not {unseen!r}")
    molecules = sorted(set(df[cols[0]].astype(str)) | set(df[cols[1]].astype(str)))
    order = np.random.default_rng(seed).permutation(len(molecules))
    n_test, n_valid = int(round(m_test * len(molecules))), int(round(m_valid * len(molecules)))
    role = {}
    for rank, j in enumerate(order):
        role[molecules[j]] = 2 if rank < n_test else 1 if rank < n_test + n_valid else 0
    first = df[cols[0]].astype(str).map(role).to_numpy()
    second = df[cols[1]].astype(str).map(role).to_numpy()
    part = np.maximum(first, second) if unseen == "one" else np.where(first == second, first, -1)
    return {name: np.flatnonzero(part == k) for k, name in enumerate(("train", "valid", "test"))}


def make_pair_split(
    df: pd.DataFrame,
    how: str,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    cols: tuple[str, str] = PAIR_COLUMNS,
) -> Split:
    """A split of a pair frame by name (`PAIR_SPLITS`).

    ``upstream`` (the ``split`` column), ``random`` (seeded rows), ``grouped`` (seeded, every
    molecule 1 (solute, chromophore) within one part), ``drug_cold`` / ``drug_cold_both`` (see
    :func:`drug_cold_split`, ``unseen="one"`` / ``"both"``).
    """
    if how == "upstream":
        if "split" not in df.columns:
            raise ValueError(
                "this frame has no upstream 'split' column; use how='random', 'grouped' or "
                "'drug_cold'"
            )
        return predefined_split(df["split"].tolist())
    if how == "random":
        return random_split(len(df), fractions, seed)
    if how == "grouped":
        return group_split(df[cols[0]].astype(str).tolist(), fractions, seed)
    if how in ("drug_cold", "drug_cold_both"):
        unseen = "both" if how == "drug_cold_both" else "one"
        return drug_cold_split(df, fractions, seed, cols, unseen=unseen)
    raise ValueError(f"unknown split {how!r}; choose one of {', '.join(map(repr, PAIR_SPLITS))}")


def split_overlap(
    df: pd.DataFrame,
    split: Split,
    label: str | None = "label",
    cols: tuple[str, str] = PAIR_COLUMNS,
) -> pd.DataFrame:
    """How much of each part the training part already shows, one row per part.

    Columns: ``pairs``; ``repeated_pairs`` (unordered pairs occurring more than once within the
    part); ``repeated_conflicting`` (of those, with different labels); ``pairs_in_train``
    (valid/test pairs whose unordered pair also occurs in train); ``opposite_label_in_train``;
    ``both_molecules_in_train``; ``new_molecule`` (pairs holding a molecule that no training pair
    holds); ``both_molecules_new``; ``positive_rate``.
    """
    keys = _keys(df, cols)
    labels = df[label].to_numpy(dtype=float) if label is not None else None
    train_idx = split["train"]
    train_labels: dict[tuple[str, str], set] = {}
    for i in train_idx:
        train_labels.setdefault(keys[i], set()).add(None if labels is None else labels[i])
    train_mols = set(df[cols[0]].astype(str).iloc[train_idx]) | set(
        df[cols[1]].astype(str).iloc[train_idx]
    )
    rows = []
    for name, idx in split.items():
        part_keys = pd.Series([keys[i] for i in idx], dtype=object)
        counts = part_keys.value_counts()
        repeated = set(counts.index[counts > 1])
        conflicting = 0
        if labels is not None and repeated:
            by_key = pd.Series(labels[idx]).groupby(part_keys.to_numpy()).nunique()
            conflicting = int((by_key > 1).sum())
        a = df[cols[0]].astype(str).to_numpy()[idx]
        b = df[cols[1]].astype(str).to_numpy()[idx]
        in_train = opposite = 0
        if name != "train":
            for i in idx:
                seen = train_labels.get(keys[i])
                if seen is not None:
                    in_train += 1
                    if labels is not None and any(v != labels[i] for v in seen):
                        opposite += 1
        both = sum(x in train_mols and y in train_mols for x, y in zip(a, b, strict=True))
        neither = sum(
            x not in train_mols and y not in train_mols for x, y in zip(a, b, strict=True)
        )
        positive = (
            float(np.nanmean(labels[idx])) if labels is not None and len(idx) else float("nan")
        )
        rows.append(
            {
                "part": name,
                "pairs": len(idx),
                "repeated_pairs": len(repeated),
                "repeated_conflicting": conflicting,
                "pairs_in_train": in_train,
                "opposite_label_in_train": opposite,
                "both_molecules_in_train": both,
                "new_molecule": len(idx) - both,
                "both_molecules_new": neither,
                "positive_rate": positive,
            }
        )
    return pd.DataFrame(rows)


def check_cold_split(
    df: pd.DataFrame, split: Split, cols: tuple[str, str] = PAIR_COLUMNS, unseen: str = "one"
) -> None:
    """Raise ``ValueError`` unless the split is cold: no unordered pair in two parts, and every
    valid and test pair holds a molecule that no training pair holds (``unseen="both"``: holds no
    molecule that a training pair holds)."""
    report = split_overlap(df, split, label=None, cols=cols).set_index("part")
    problems = []
    for part in ("valid", "test"):
        if part not in report.index:
            continue
        row = report.loc[part]
        if row["pairs_in_train"]:
            problems.append(f"{row['pairs_in_train']} {part} pairs also occur in train")
        if row["both_molecules_in_train"]:
            problems.append(
                f"{row['both_molecules_in_train']} {part} pairs have both molecules in train"
            )
        one_seen = row["new_molecule"] - row["both_molecules_new"]
        if unseen == "both" and one_seen:
            problems.append(f"{one_seen} {part} pairs have one molecule in train")
    keys = _keys(df, cols)
    valid_keys = {keys[i] for i in split.get("valid", [])}
    shared = sum(keys[i] in valid_keys for i in split.get("test", []))
    if shared:
        problems.append(f"{shared} test pairs also occur in valid")
    if problems:
        raise ValueError(
            "the split is not cold: "
            + "; ".join(problems)
            + ". Use drug_cold_split on deduplicate_pairs(df)."
        )


def straddling_pairs(
    df: pd.DataFrame,
    split: Split,
    parts: tuple[str, str] = ("train", "test"),
    cols: tuple[str, str] = PAIR_COLUMNS,
) -> np.ndarray:
    """Rows in no part of ``split`` with one molecule that a ``parts[0]`` pair holds and the other
    molecule held by a ``parts[1]`` pair, in row order.

    For a ``drug_cold_both`` split (`drug_cold_split` with ``unseen="both"``) and the default
    ``parts`` these are the pairs it leaves out between train and test: one drug seen in training,
    the other unseen. So one model trained on that split's training part can be scored on both
    drugs unseen (its test part) and on one drug unseen (these pairs), against the same training
    data. Raises when the two parts share a molecule (the split is not cold on both sides).
    """
    for part in parts:
        if part not in split:
            raise KeyError(f"the split has no part {part!r}; it has {sorted(split)}")
    first, second = (df[c].astype(str).to_numpy() for c in cols)

    def molecules(part: str) -> set[str]:
        idx = np.asarray(split[part], dtype=int)
        return set(first[idx]) | set(second[idx])

    seen, unseen = molecules(parts[0]), molecules(parts[1])
    if seen & unseen:
        raise ValueError(
            f"{len(seen & unseen)} molecules occur in both {parts[0]} and {parts[1]} pairs: "
            "straddling pairs need a split with no shared molecule (how='drug_cold_both')"
        )
    used = np.zeros(len(df), dtype=bool)
    for idx in split.values():
        used[np.asarray(idx, dtype=int)] = True
    a_seen = np.array([m in seen for m in first])
    b_seen = np.array([m in seen for m in second])
    a_new = np.array([m in unseen for m in first])
    b_new = np.array([m in unseen for m in second])
    return np.flatnonzero(~used & ((a_seen & b_new) | (a_new & b_seen)))


def deduplicate_measurements(
    df: pd.DataFrame,
    target: str,
    context: Sequence[str] = (),
    cols: tuple[str, str] = PAIR_COLUMNS,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per measurement key: the ordered pair (molecule 1, molecule 2: a solute and its
    solvent are not a symmetric pair) and the ``context`` columns (e.g. the temperature).

    Repeats of a key become one row, the first one with ``target`` replaced by the repeats' mean,
    so that no measurement sits on both sides of a split. Returns the frame (first-occurrence
    order, index reset) and counts: ``rows``, ``kept``, ``duplicate_rows`` (rows merged into an
    earlier one), ``repeated_keys`` and ``max_spread`` (the largest max - min of ``target`` within
    a key; 0 without repeats).
    """
    keys = [*cols, *context]
    missing = [c for c in [*keys, target] if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the frame (columns: {list(df.columns)})")
    grouped = df.groupby(keys, sort=False, dropna=False)[target]
    stats = grouped.agg(["mean", "min", "max", "size"])
    first = ~df.duplicated(keys, keep="first")
    out = df[first].reset_index(drop=True)
    index = pd.MultiIndex.from_frame(out[keys]) if len(keys) > 1 else pd.Index(out[keys[0]])
    out[target] = stats["mean"].reindex(index).to_numpy()
    repeated = stats[stats["size"] > 1]
    report = {
        "rows": len(df),
        "kept": len(out),
        "duplicate_rows": int((~first).sum()),
        "repeated_keys": len(repeated),
        "max_spread": float((repeated["max"] - repeated["min"]).max()) if len(repeated) else 0.0,
    }
    return out, report


def unseen_split(
    df: pd.DataFrame,
    column: str = "smiles_2",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Seeded split in which every value of ``column`` stays within one part: with the default, no
    valid or test pair has a second molecule (a solvent) that a training pair has as its second
    molecule, so a model must read that molecule to predict for it.

    The values are shuffled with ``seed`` and each goes, with all its rows, to the part furthest
    below its share of the rows (``fractions``) relative to that share, so the parts come out near
    their shares and, with three values or more, none with a share is empty."""
    if column not in df.columns:
        raise KeyError(f"column {column!r} not in the frame (columns: {list(df.columns)})")
    shares = np.array([float(f) for f in fractions])
    if len(shares) != 3 or abs(shares.sum() - 1) > 1e-6 or shares.min() < 0:
        raise ValueError(f"fractions must be three shares summing to 1, got {tuple(fractions)}")
    values = df[column].astype(str).to_numpy()
    groups = list(dict.fromkeys(values))
    members = pd.Series(np.arange(len(df))).groupby(values, sort=False).apply(list)
    target = shares * len(df)
    filled = np.zeros(3)
    parts: list[list[int]] = [[], [], []]
    for j in np.random.default_rng(seed).permutation(len(groups)):
        rows = members[groups[j]]
        behind = np.where(target > 0, (target - filled) / np.where(target > 0, target, 1), -np.inf)
        k = int(np.argmax(behind))
        parts[k] += rows
        filled[k] += len(rows)
    names = ("train", "valid", "test")
    return {name: np.array(sorted(p), dtype=int) for name, p in zip(names, parts, strict=True)}
