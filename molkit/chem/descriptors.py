"""RDKit descriptors with names an LLM can ask for: the "domain-specific small model"."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

from .smiles import InvalidSmilesError, as_mol, progress_bar

__all__ = [
    "Descriptor",
    "DESCRIPTORS",
    "compute_descriptors",
    "descriptor_value",
    "match_property",
    "format_descriptor",
    "rdkit_descriptor_names",
    "rdkit_descriptors",
]


class Descriptor(NamedTuple):
    """One registry entry: ``function(mol) -> float``, a description with the unit, synonyms."""

    function: Callable[[Chem.Mol], float]
    description: str
    synonyms: tuple[str, ...]


def _stereocentres(mol: Chem.Mol) -> int:
    return len(
        Chem.FindMolChiralCenters(mol, includeUnassigned=True, useLegacyImplementation=False)
    )


def _lipinski_violations(mol: Chem.Mol) -> int:
    return (
        int(Descriptors.MolWt(mol) > 500)
        + int(Crippen.MolLogP(mol) > 5)
        + int(rdMolDescriptors.CalcNumLipinskiHBD(mol) > 5)
        + int(rdMolDescriptors.CalcNumLipinskiHBA(mol) > 10)
    )


def _syn(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


#: name -> Descriptor(function, description with unit, synonyms). Order is the column order.
DESCRIPTORS: dict[str, Descriptor] = {
    "logp": Descriptor(
        Crippen.MolLogP,
        "Crippen (Wildman-Crippen) octanol/water partition coefficient logP (log units)",
        _syn(
            "logp|clogp|alogp|log p|crippen logp|partition coefficient|"
            "octanol water partition coefficient|lipophilicity|hydrophobicity|mollogp"
        ),
    ),
    "mol_weight": Descriptor(
        Descriptors.MolWt,
        "molecular weight, average isotopic masses (g/mol)",
        _syn(
            "molecular weight|mol weight|mw|molwt|molecular mass|molar mass|weight|"
            "average molecular weight|mass"
        ),
    ),
    "exact_mass": Descriptor(
        Descriptors.ExactMolWt,
        "monoisotopic exact mass (Da)",
        _syn("exact mass|monoisotopic mass|exact molecular weight|exactmolwt"),
    ),
    "tpsa": Descriptor(
        rdMolDescriptors.CalcTPSA,
        "topological polar surface area, N and O contributions (Å²)",
        _syn("tpsa|psa|polar surface area|topological polar surface area|surface area"),
    ),
    "hbd": Descriptor(
        rdMolDescriptors.CalcNumHBD,
        "hydrogen-bond donors (count)",
        _syn(
            "hbd|h bond donor|hydrogen bond donor|hbond donor|donor|num h donors|numhdonors|"
            "nhohcount"
        ),
    ),
    "hba": Descriptor(
        rdMolDescriptors.CalcNumHBA,
        "hydrogen-bond acceptors (count)",
        _syn(
            "hba|h bond acceptor|hydrogen bond acceptor|hbond acceptor|acceptor|"
            "num h acceptors|numhacceptors|nocount"
        ),
    ),
    "rotatable_bonds": Descriptor(
        rdMolDescriptors.CalcNumRotatableBonds,
        "rotatable bonds (count)",
        _syn(
            "rotatable bond|rotb|nrotb|num rotatable bonds|flexibility|rotatable bond count|"
            "numrotatablebonds"
        ),
    ),
    "ring_count": Descriptor(
        rdMolDescriptors.CalcNumRings,
        "rings in the smallest set of smallest rings (count)",
        _syn("ring count|ring|num rings|ringcount"),
    ),
    "aromatic_rings": Descriptor(
        rdMolDescriptors.CalcNumAromaticRings,
        "aromatic rings (count)",
        _syn("aromatic ring|aromatic ring count|numaromaticrings|aromaticity"),
    ),
    "heavy_atoms": Descriptor(
        lambda m: m.GetNumHeavyAtoms(),
        "non-hydrogen atoms (count)",
        _syn(
            "heavy atom|heavy atom count|num heavy atoms|non hydrogen atom|size|"
            "molecular size|atom count|atom|heavyatomcount"
        ),
    ),
    "fsp3": Descriptor(
        rdMolDescriptors.CalcFractionCSP3,
        "fraction of sp3-hybridised carbons, Fsp3 (0-1)",
        _syn(
            "fsp3|fraction sp3|fraction csp3|sp3 fraction|fraction of sp3 carbons|"
            "fractioncsp3|saturation"
        ),
    ),
    "formal_charge": Descriptor(
        Chem.GetFormalCharge,
        "net formal charge (elementary charges)",
        _syn("formal charge|charge|net charge|total charge"),
    ),
    "heteroatoms": Descriptor(
        rdMolDescriptors.CalcNumHeteroatoms,
        "atoms other than C and H (count)",
        _syn("heteroatom|heteroatom count|numheteroatoms"),
    ),
    "molar_refractivity": Descriptor(
        Crippen.MolMR,
        "Crippen molar refractivity (m³/mol ×10⁻⁶, i.e. cm³/mol)",
        _syn("molar refractivity|mr|refractivity|molmr|polarizability|polarisability"),
    ),
    "qed": Descriptor(
        QED.qed,
        "quantitative estimate of drug-likeness, QED (0-1)",
        _syn("qed|drug likeness|druglikeness|quantitative estimate of drug likeness"),
    ),
    "stereocenters": Descriptor(
        _stereocentres,
        "tetrahedral stereocentres, assigned or not (count)",
        _syn(
            "stereocenter|stereocentre|chiral center|chiral centre|chirality|"
            "num stereocenters|stereo center"
        ),
    ),
    "lipinski_violations": Descriptor(
        _lipinski_violations,
        "Lipinski rule-of-five violations: MW>500, logP>5, NH/OH>5, N+O>10 (count 0-4)",
        _syn(
            "lipinski violation|rule of five violation|ro5 violation|lipinski rule of five|"
            "rule of five|ro5|lipinski"
        ),
    ),
}

_INTEGER_DESCRIPTORS = set(
    "hbd hba rotatable_bonds ring_count aromatic_rings heavy_atoms formal_charge heteroatoms "
    "stereocenters lipinski_violations".split()
)
_DECIMALS = {
    "logp": 3,
    "mol_weight": 1,
    "exact_mass": 4,
    "tpsa": 2,
    "fsp3": 3,
    "qed": 3,
    "molar_refractivity": 2,
}

# Properties RDKit has no descriptor for: an LLM naming them gets None, never a wrong descriptor.
_UNSUPPORTED = _syn(
    "solubility|logs|logd|pka|toxic|melting|boiling|permeability|bioavailability|half life|"
    "clearance|binding|ic50|affinity|activity"
)
_FILLER = set(
    "the a an of number num no count total calculated computed predicted estimated value "
    "molecule molecular compound".split()
)


def _normalise(text: str, drop_filler: bool = True) -> str:
    text = text.lower().replace("₂", "2").replace("-", " ")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    out = []
    for w in words:
        if drop_filler and w in _FILLER:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]  # plural-insensitive: donors -> donor, rings -> ring
        out.append(w)
    return " ".join(out)


def _synonym_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for name, desc in DESCRIPTORS.items():
        for phrase in (name, name.replace("_", " "), *desc.synonyms):
            for key in {_normalise(phrase), _normalise(phrase, drop_filler=False)}:
                if key:
                    table.setdefault(key, name)
    return table


_SYNONYMS = _synonym_table()
_SYNONYMS_LONGEST_FIRST = sorted(_SYNONYMS, key=len, reverse=True)


def match_property(text: str) -> str | None:
    """Map a free-text property name ("Lipophilicity (LogP)", "H-bond donors") to a key of
    ``DESCRIPTORS``; None when RDKit has no such descriptor (e.g. "solubility")."""
    if not isinstance(text, str):
        return None
    lowered = " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())
    if any(re.search(rf"\b{u}", lowered) for u in _UNSUPPORTED):
        return None
    # Whole text, then each part ("Lipophilicity (LogP)" -> "lipophilicity", "logp").
    parts = [text, *re.findall(r"\(([^)]*)\)", text), re.sub(r"\([^)]*\)", " ", text)]
    for part in parts:
        for key in (_normalise(part), _normalise(part, drop_filler=False)):
            if key in _SYNONYMS:
                return _SYNONYMS[key]
    padded = f" {_normalise(text)} "
    for key in _SYNONYMS_LONGEST_FIRST:
        if f" {key} " in padded:
            return _SYNONYMS[key]
    return None


def descriptor_value(smiles_or_mol: str | Chem.Mol, name: str) -> float:
    """One descriptor of one molecule (float; counts are whole numbers). Raises on bad input."""
    if name not in DESCRIPTORS:
        raise KeyError(f"Unknown descriptor {name!r}; known: {list(DESCRIPTORS)}")
    return float(DESCRIPTORS[name].function(as_mol(smiles_or_mol)))


def compute_descriptors(
    smiles: str | Chem.Mol | Iterable[str | Chem.Mol],
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Descriptor table, rows = molecules (RangeIndex, input order), columns = ``names``
    (default: all of ``DESCRIPTORS``); float64, NaN rows for invalid SMILES."""
    names = list(DESCRIPTORS) if names is None else list(names)
    unknown = [n for n in names if n not in DESCRIPTORS]
    if unknown:
        raise KeyError(f"Unknown descriptors {unknown}; known: {list(DESCRIPTORS)}")
    items = [smiles] if isinstance(smiles, str | Chem.Mol) else list(smiles)
    values = np.full((len(items), len(names)), np.nan)
    for i, item in enumerate(progress_bar(items, progress, "descriptors")):
        try:
            mol = as_mol(item)
        except InvalidSmilesError:
            continue
        for j, name in enumerate(names):
            values[i, j] = DESCRIPTORS[name].function(mol)
    return pd.DataFrame(values, columns=names)


def format_descriptor(name: str, value: float) -> str:
    """Text for a prompt: logP 3 decimals, molecular weight 1 decimal, counts as integers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if name in _INTEGER_DESCRIPTORS:
        return str(int(round(value)))
    return f"{value:.{_DECIMALS.get(name, 2)}f}"


def rdkit_descriptor_names() -> list[str]:
    """The names of every RDKit 2-D descriptor (``rdkit.Chem.Descriptors._descList``, 217 in RDKit
    2026.09), in RDKit's order: the columns of :func:`rdkit_descriptors`."""
    return [name for name, _ in Descriptors._descList]


def rdkit_descriptors(smiles: Sequence[str | Chem.Mol], progress: bool = True) -> np.ndarray:
    """Every RDKit 2-D descriptor (:func:`rdkit_descriptor_names`) per molecule: float32 (n, d),
    NaN where RDKit returns a non-finite value or the SMILES does not parse, for models that accept
    missing values (gradient boosting). Values beyond float32's range become NaN too."""
    names = rdkit_descriptor_names()
    out = np.full((len(smiles), len(names)), np.nan, dtype=np.float64)
    for i, item in enumerate(progress_bar(list(smiles), progress, "RDKit descriptors")):
        try:
            mol = as_mol(item)
        except InvalidSmilesError:
            continue
        values = Descriptors.CalcMolDescriptors(mol, missingVal=np.nan, silent=True)
        out[i] = [values[name] for name in names]
    out[~np.isfinite(out) | (np.abs(out) > np.finfo(np.float32).max)] = np.nan
    return out.astype(np.float32)
