"""OGB-style atom and bond feature vocabularies (no torch needed).

Each atom (bond) row is a concatenation of one-hot blocks (``ATOM_FEATURE_BLOCKS``); every block
but the yes/no ones ends with an "other" slot for values outside the vocabulary, so a row has
exactly one 1 per block.
"""

from __future__ import annotations

from rdkit import Chem

__all__ = [
    "ATOM_FEATURE_VOCAB",
    "BOND_FEATURE_VOCAB",
    "ATOM_FEATURE_BLOCKS",
    "BOND_FEATURE_BLOCKS",
    "ATOM_FEATURE_DIM",
    "BOND_FEATURE_DIM",
    "NUM_ATOM_TYPES",
    "atom_feature_indices",
    "bond_feature_indices",
]

_CHIRAL = Chem.rdchem.ChiralType
_HYBRID = Chem.rdchem.HybridizationType
_BOND = Chem.rdchem.BondType
_STEREO = Chem.rdchem.BondStereo

#: Vocabularies as in OGB's ``allowable_features`` (plus an implicit "other" slot each).
ATOM_FEATURE_VOCAB: dict[str, list] = {
    "atomic_num": list(range(1, 119)),
    "chirality": [
        _CHIRAL.CHI_UNSPECIFIED,
        _CHIRAL.CHI_TETRAHEDRAL_CW,
        _CHIRAL.CHI_TETRAHEDRAL_CCW,
        _CHIRAL.CHI_OTHER,
    ],
    "degree": list(range(11)),
    "formal_charge": list(range(-5, 6)),
    "num_hs": list(range(9)),
    "num_radical_electrons": list(range(5)),
    "hybridization": [_HYBRID.SP, _HYBRID.SP2, _HYBRID.SP3, _HYBRID.SP3D, _HYBRID.SP3D2],
    "is_aromatic": [False, True],
    "is_in_ring": [False, True],
}
BOND_FEATURE_VOCAB: dict[str, list] = {
    "bond_type": [_BOND.SINGLE, _BOND.DOUBLE, _BOND.TRIPLE, _BOND.AROMATIC],
    "stereo": [
        _STEREO.STEREONONE,
        _STEREO.STEREOZ,
        _STEREO.STEREOE,
        _STEREO.STEREOCIS,
        _STEREO.STEREOTRANS,
        _STEREO.STEREOANY,
    ],
    "is_conjugated": [False, True],
    "is_in_ring": [False, True],
}


def _width(values: list) -> int:
    return len(values) if values == [False, True] else len(values) + 1  # +1: "other"


def _blocks(vocab: dict[str, list]) -> dict[str, tuple[int, int]]:
    out, start = {}, 0
    for name, values in vocab.items():
        out[name] = (start, start + _width(values))
        start += _width(values)
    return out


#: Block name -> (start, stop) column range in ``x`` / ``edge_attr``.
ATOM_FEATURE_BLOCKS = _blocks(ATOM_FEATURE_VOCAB)
BOND_FEATURE_BLOCKS = _blocks(BOND_FEATURE_VOCAB)
#: Width of a node feature row (174, as OGB) and of an edge feature row (16).
ATOM_FEATURE_DIM = max(stop for _, stop in ATOM_FEATURE_BLOCKS.values())
BOND_FEATURE_DIM = max(stop for _, stop in BOND_FEATURE_BLOCKS.values())
#: Classes of the atomic-number block (1..118 and "other"): the attribute-masking targets.
NUM_ATOM_TYPES = len(ATOM_FEATURE_VOCAB["atomic_num"]) + 1


def _index(vocab: list, value) -> int:
    try:
        return vocab.index(value)
    except ValueError:
        return len(vocab)


def atom_feature_indices(atom: Chem.Atom) -> list[int]:
    """Column indices of the 1s in this atom's feature row (one per block)."""
    values = {
        "atomic_num": atom.GetAtomicNum(),
        "chirality": atom.GetChiralTag(),
        "degree": atom.GetTotalDegree(),
        "formal_charge": atom.GetFormalCharge(),
        "num_hs": atom.GetTotalNumHs(),
        "num_radical_electrons": atom.GetNumRadicalElectrons(),
        "hybridization": atom.GetHybridization(),
        "is_aromatic": atom.GetIsAromatic(),
        "is_in_ring": atom.IsInRing(),
    }
    return [ATOM_FEATURE_BLOCKS[k][0] + _index(ATOM_FEATURE_VOCAB[k], v) for k, v in values.items()]


def bond_feature_indices(bond: Chem.Bond) -> list[int]:
    """Column indices of the 1s in this bond's feature row (one per block)."""
    values = {
        "bond_type": bond.GetBondType(),
        "stereo": bond.GetStereo(),
        "is_conjugated": bond.GetIsConjugated(),
        "is_in_ring": bond.IsInRing(),
    }
    return [BOND_FEATURE_BLOCKS[k][0] + _index(BOND_FEATURE_VOCAB[k], v) for k, v in values.items()]
