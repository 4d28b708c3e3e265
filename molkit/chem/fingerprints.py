"""Molecular fingerprints as numpy arrays (for models) and RDKit vectors (for Tanimoto search)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator, rdMolDescriptors

from .smiles import as_mols

__all__ = [
    "FingerprintKind",
    "MACCS_N_BITS",
    "morgan_bits",
    "morgan_counts",
    "maccs",
    "rdkit_fp",
    "fingerprints",
    "fingerprint_objects",
    "tanimoto_matrix",
]

FingerprintKind = Literal["morgan", "morgan_counts", "maccs", "rdkit"]
MolsLike = str | Chem.Mol | Iterable[str | Chem.Mol]

#: MACCS keys have 167 bits (bit 0 is always unset, as in RDKit).
MACCS_N_BITS = 167


@lru_cache(maxsize=32)
def _morgan_generator(radius: int, n_bits: int, chirality: bool):
    return rdFingerprintGenerator.GetMorganGenerator(
        radius=radius, fpSize=n_bits, includeChirality=chirality
    )


@lru_cache(maxsize=32)
def _rdkit_generator(max_path: int, n_bits: int):
    return rdFingerprintGenerator.GetRDKitFPGenerator(maxPath=max_path, fpSize=n_bits)


def morgan_bits(
    smiles_or_mols: MolsLike,
    radius: int = 2,
    n_bits: int = 2048,
    chirality: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Morgan (ECFP-like, radius 2 = ECFP4) bit fingerprints, uint8 array (n, n_bits)."""
    gen = _morgan_generator(radius, n_bits, chirality)
    mols = as_mols(smiles_or_mols, progress, "morgan fingerprints")
    return _stack([gen.GetFingerprintAsNumPy(m) for m in mols], n_bits, np.uint8)


def morgan_counts(
    smiles_or_mols: MolsLike,
    radius: int = 2,
    n_bits: int = 2048,
    chirality: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Folded Morgan count fingerprints, float32 array (n, n_bits) of substructure counts."""
    gen = _morgan_generator(radius, n_bits, chirality)
    mols = as_mols(smiles_or_mols, progress, "morgan count fingerprints")
    return _stack([gen.GetCountFingerprintAsNumPy(m) for m in mols], n_bits, np.float32)


def maccs(smiles_or_mols: MolsLike, progress: bool = True) -> np.ndarray:
    """MACCS structural keys, uint8 array (n, 167)."""
    mols = as_mols(smiles_or_mols, progress, "MACCS keys")
    rows = []
    for m in mols:
        arr = np.zeros(MACCS_N_BITS, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(rdMolDescriptors.GetMACCSKeysFingerprint(m), arr)
        rows.append(arr)
    return _stack(rows, MACCS_N_BITS, np.uint8)


def rdkit_fp(
    smiles_or_mols: MolsLike,
    max_path: int = 7,
    n_bits: int = 2048,
    progress: bool = True,
) -> np.ndarray:
    """RDKit topological (path-based, Daylight-like) bit fingerprints, uint8 (n, n_bits)."""
    gen = _rdkit_generator(max_path, n_bits)
    mols = as_mols(smiles_or_mols, progress, "RDKit fingerprints")
    return _stack([gen.GetFingerprintAsNumPy(m) for m in mols], n_bits, np.uint8)


def _stack(rows: list[np.ndarray], n_bits: int, dtype) -> np.ndarray:
    if not rows:
        return np.zeros((0, n_bits), dtype=dtype)
    return np.stack(rows).astype(dtype, copy=False)


_ARRAY_FUNCTIONS = {
    "morgan": morgan_bits,
    "morgan_counts": morgan_counts,
    "maccs": maccs,
    "rdkit": rdkit_fp,
}


def fingerprints(smiles: MolsLike, kind: FingerprintKind = "morgan", **kwargs) -> np.ndarray:
    """Dispatch to one fingerprint function by ``kind``; returns an array (n, n_bits).

    ``kwargs`` go to that function (``radius``, ``n_bits``, ``max_path``, ``progress``).
    """
    if kind not in _ARRAY_FUNCTIONS:
        raise ValueError(
            f"Unknown fingerprint kind {kind!r}; choose one of {list(_ARRAY_FUNCTIONS)}"
        )
    return _ARRAY_FUNCTIONS[kind](smiles, **kwargs)


def fingerprint_objects(
    smiles: MolsLike,
    kind: FingerprintKind = "morgan",
    radius: int = 2,
    n_bits: int = 2048,
    progress: bool = True,
) -> list:
    """RDKit fingerprint vectors for ``tanimoto_matrix``.

    ``morgan``, ``rdkit``, ``maccs``: ``ExplicitBitVect`` (``n_bits`` ignored for MACCS).
    ``morgan_counts``: unfolded sparse count vectors (what MolT5's Morgan Tanimoto compares).
    """
    mols = as_mols(smiles, progress, f"{kind} fingerprints")
    if kind == "morgan":
        gen = _morgan_generator(radius, n_bits, False)
        return [gen.GetFingerprint(m) for m in mols]
    if kind == "morgan_counts":
        gen = _morgan_generator(radius, n_bits, False)
        return [gen.GetSparseCountFingerprint(m) for m in mols]
    if kind == "rdkit":
        gen = _rdkit_generator(7, n_bits)
        return [gen.GetFingerprint(m) for m in mols]
    if kind == "maccs":
        return [rdMolDescriptors.GetMACCSKeysFingerprint(m) for m in mols]
    raise ValueError(f"Unknown fingerprint kind {kind!r}; choose one of {list(_ARRAY_FUNCTIONS)}")


def tanimoto_matrix(a_fps: Sequence, b_fps: Sequence | None = None) -> np.ndarray:
    """Tanimoto similarities between two lists of RDKit fingerprints, float32 (len(a), len(b)).

    With ``b_fps=None`` compares ``a_fps`` with itself. A pair of empty fingerprints scores 0.
    """
    b_fps = a_fps if b_fps is None else b_fps
    out = np.zeros((len(a_fps), len(b_fps)), dtype=np.float32)
    if len(b_fps):
        for i, fp in enumerate(a_fps):
            out[i] = DataStructs.BulkTanimotoSimilarity(fp, b_fps)
    return out
