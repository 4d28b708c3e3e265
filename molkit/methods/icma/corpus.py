"""ICMA's corpus: molecule-caption pairs as a retrieval / training pool and a test split, one
identity key per molecule, and what a direction reads and writes.

``chebi20``: the pool is ChEBI-20's 3,301-pair validation split (the 26,407-pair train split is
upstream only), the test set its official test split; ``chebi20-full``: the train split as the
pool; a CSV path (``smiles``, ``text``, optional ``split``; `molkit.data.load_dataset`): its
train and valid rows as the pool, its test rows as the test set. Pool rows whose molecule also
occurs in the test set are removed (by InChIKey), so no query ever retrieves its own answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from molkit.methods.icma.settings import check_direction

__all__ = [
    "molecule_keys",
    "load_corpus",
    "load_chebi20",
    "same_molecule_exclusions",
    "inputs_and_outputs",
    "references",
]


def molecule_keys(smiles: Sequence[str]) -> list[str]:
    """One identity key per molecule: its standard InChIKey (RDKit), or the string itself where
    RDKit cannot make one. Two SMILES of the same molecule (other tautomer spelling, other
    aromaticity or charge notation that canonical SMILES keep apart) get the same key."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    keys = []
    with BlockLogs():  # RDKit's parse errors silenced here only
        for smi in smiles:
            mol = Chem.MolFromSmiles(str(smi))
            key = Chem.MolToInchiKey(mol) if mol is not None else ""
            keys.append(key or str(smi))
    return keys


def load_corpus(dataset: str = "chebi20") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(pool, test, note)``: the retrieval / training pool and the test split of ``dataset``
    (module docstring). Pool rows whose molecule also occurs in the test split are removed,
    compared by InChIKey (`molecule_keys`), which also catches the pairs whose canonical SMILES
    differ (counted in ``note``). Columns: ``id``, ``smiles`` (canonical), ``smiles_raw`` (as in
    the file: the text the LM reads and writes), ``text``, ``key`` (InChIKey)."""
    from molkit.data import is_csv_path, load_dataset

    if is_csv_path(dataset):
        df = load_dataset(dataset, kind="text")
        pool_splits, name = ("train", "valid"), "the CSV's train and valid rows"
    elif dataset in ("chebi20", "chebi20-full"):
        df = load_dataset(dataset)
        pool_splits = ("valid",) if dataset == "chebi20" else ("train",)
        name = f"ChEBI-20 {pool_splits[0]} split"
    else:
        raise ValueError(
            f"dataset must be 'chebi20', 'chebi20-full' or a CSV path, got {dataset!r}"
        )
    test = df[df["split"] == "test"].reset_index(drop=True)
    pool = df[df["split"].isin(pool_splits)].reset_index(drop=True)
    test["key"] = molecule_keys(test["smiles_raw"].tolist())
    pool["key"] = molecule_keys(pool["smiles_raw"].tolist())
    overlap = pool["key"].isin(set(test["key"]))
    by_smiles = int(pool["smiles"].isin(set(test["smiles"])).sum())
    pool = pool[~overlap].reset_index(drop=True)
    which = "official test split" if not is_csv_path(dataset) else "the CSV's test rows"
    note = (
        f"pool = {name} ({len(pool)} pairs after removing {int(overlap.sum())} test molecules by "
        f"InChIKey; {by_smiles} by canonical SMILES); test = {which} ({len(test)} pairs)"
    )
    return pool, test, note


def load_chebi20(dataset: str = "chebi20") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """`load_corpus` for ``chebi20`` or ``chebi20-full`` only."""
    if dataset not in ("chebi20", "chebi20-full"):
        raise ValueError(f"dataset must be 'chebi20' or 'chebi20-full', got {dataset!r}")
    return load_corpus(dataset)


def same_molecule_exclusions(keys: Sequence[str]) -> list[np.ndarray]:
    """For each pool entry i, the pool indices a pool query i must not retrieve: itself and every
    entry of the same molecule (same key: `molecule_keys`, or canonical SMILES)."""
    values = np.asarray(keys, dtype=object)
    groups = pd.Series(np.arange(len(keys))).groupby(values).apply(np.asarray)
    return [groups[s] for s in keys]


def inputs_and_outputs(direction: str, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a pool / test frame for a direction: SMILES as written and captions
    (mol2cap), or the other way round (cap2mol)."""
    check_direction(direction)
    smiles, text = frame["smiles_raw"].astype(str).tolist(), frame["text"].astype(str).tolist()
    return (smiles, text) if direction == "mol2cap" else (text, smiles)


def references(direction: str, frame: pd.DataFrame) -> list[str]:
    """What a direction must produce for the rows of ``frame``: captions (mol2cap) or SMILES as
    written (cap2mol)."""
    return inputs_and_outputs(direction, frame)[1]
