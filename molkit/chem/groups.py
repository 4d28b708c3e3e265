"""Functional groups from a curated SMARTS table, and MoleX-style group tokens.

A table entry's *owned* atoms are the SMARTS atoms carrying an atom-map number (``[C:1]``); when
no atom is mapped, every matched atom is owned. Unmapped atoms are context only (the carbon an
ester oxygen hangs on). Entries are tried in order, and a match is kept only when none of its
owned atoms was claimed by an earlier match, so each atom belongs to at most one group and a
specific group (carboxylic acid) hides the generic ones it contains (ketone, hydroxyl).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rdkit import Chem

from .smiles import as_mol

__all__ = [
    "FUNCTIONAL_GROUP_SMARTS",
    "FunctionalGroup",
    "GroupToken",
    "functional_groups",
    "group_tokens",
    "group_ngrams",
]

#: Ordered (name, SMARTS): larger and more specific groups first. Names may repeat.
FUNCTIONAL_GROUP_SMARTS: tuple[tuple[str, str], ...] = (
    # Nitrogen/sulfur/phosphorus oxo acids and their derivatives.
    ("nitro", "[N;X3;$([N+](=O)[O-]),$(N(=O)=O)](~[OX1])~[OX1]"),
    ("nitrate", "[OX2][N;X3;$([N+](=O)[O-]),$(N(=O)=O)](~[OX1])~[OX1]"),
    ("sulfonamide", "[SX4](=[OX1])(=[OX1])[NX3;!a]"),
    ("sulfonic_acid", "[SX4](=[OX1])(=[OX1])[OX2H1,OX1-]"),
    ("sulfonyl", "[SX4](=[OX1])=[OX1]"),
    ("sulfoxide", "[#6][SX3:1](=[OX1:1])[#6]"),
    ("phosphate", "[PX4](=[OX1])([OX2,OX1-])([OX2,OX1-])[OX2,OX1-]"),
    ("phosphoryl", "[PX4]=[OX1]"),
    # Carbonyl derivatives, most substituted first.
    ("urea", "[NX3;!a][CX3](=[OX1])[NX3;!a]"),
    ("carbamate", "[NX3;!a][CX3](=[OX1])[OX2][#6]"),
    ("isocyanate", "[NX2]=[CX2]=[OX1]"),
    ("isothiocyanate", "[NX2]=[CX2]=[SX1]"),
    ("guanidine", "[NX3][CX3](=[NX2])[NX3]"),
    ("anhydride", "[CX3](=[OX1])[OX2][CX3]=[OX1]"),
    ("carboxylic_acid", "[CX3](=[OX1])[OX2H1,OX1-]"),
    ("ester", "[CX3:1](=[OX1:1])[OX2:1][#6]"),
    ("acyl_halide", "[CX3](=[OX1])[F,Cl,Br,I]"),
    ("amide", "[CX3](=[OX1])[NX3;!a]"),
    ("aldehyde", "[CX3;H1,H2]=[OX1]"),
    ("ketone", "[#6][CX3:1](=[OX1:1])[#6]"),
    ("carbonyl", "[C;!a]=[OX1]"),
    ("nitrile", "[CX2]#[NX1]"),
    ("trifluoromethyl", "[CX4](F)(F)F"),
    # Fused aromatic ring systems, then single aromatic rings.
    ("naphthalene", "c1ccc2ccccc2c1"),
    ("quinoline", "c1ccc2ncccc2c1"),
    ("isoquinoline", "c1ccc2cnccc2c1"),
    ("indole", "c1ccc2c(c1)cc[nX3]2"),
    ("benzimidazole", "c1ccc2c(c1)[n]c[n]2"),
    ("benzofuran", "c1ccc2c(c1)cco2"),
    ("benzothiophene", "c1ccc2c(c1)ccs2"),
    ("purine", "c1ncc2nc[n]c2n1"),
    ("coumarin", "O=c1ccc2ccccc2o1"),
    ("pyridine", "n1ccccc1"),
    ("pyrimidine", "n1cnccc1"),
    ("pyrazine", "n1ccncc1"),
    ("pyridazine", "n1ncccc1"),
    ("triazine", "n1cncnc1"),
    ("pyran", "o1ccccc1"),
    ("benzene", "c1ccccc1"),
    ("tetrazole", "n1nnnc1"),
    ("triazole", "n1nncc1"),
    ("triazole", "n1ncnc1"),
    ("imidazole", "n1ccnc1"),
    ("pyrazole", "n1nccc1"),
    ("oxazole", "o1ccnc1"),
    ("isoxazole", "o1nccc1"),
    ("thiazole", "s1ccnc1"),
    ("isothiazole", "s1nccc1"),
    ("pyrrole", "n1cccc1"),
    ("furan", "o1cccc1"),
    ("thiophene", "s1cccc1"),
    # Saturated rings worth naming (before the amines and ethers they contain).
    ("epoxide", "[CX4]1[OX2][CX4]1"),
    ("morpholine", "[NX3;!a]1CC[OX2]CC1"),
    ("piperazine", "[NX3;!a]1CC[NX3;!a]CC1"),
    ("piperidine", "[NX3;!a]1CCCCC1"),
    ("pyrrolidine", "[NX3;!a]1CCCC1"),
    ("tetrahydrofuran", "[OX2]1CCCC1"),
    ("tetrahydropyran", "[OX2]1CCCCC1"),
    ("cyclohexene", "C1=CCCCC1"),
    ("cyclohexane", "C1CCCCC1"),
    ("cyclopentane", "C1CCCC1"),
    ("cyclopropane", "C1CC1"),
    # Single-atom and small groups.
    ("azo", "[#6][NX2:1]=[NX2:1][#6]"),
    ("oxime", "[CX3]=[NX2][OX2H1]"),
    ("imine", "[CX3]=[NX2;!a]"),
    ("hydrazine", "[NX3;!a][NX3;!a]"),
    ("disulfide", "[SX2][SX2]"),
    ("thiol", "[#6][S;X2H1,X1-:1]"),
    ("thioether", "[#6][SX2;!a:1][#6]"),
    ("phenolic_hydroxyl", "c[OX2H1:1]"),
    ("hydroxyl", "[#6][OX2H1:1]"),
    ("ether", "[#6][OX2;!a:1][#6]"),
    ("ammonium", "[NX4+;!a]"),
    ("aniline", "c[NX3;+0;!a:1]"),
    ("primary_amine", "[#6][NX3;H2;+0;!a:1]"),
    ("secondary_amine", "[#6][NX3;H1;+0;!a:1][#6]"),
    ("tertiary_amine", "[#6][NX3;H0;+0;!a:1]([#6])[#6]"),
    ("fluoro", "[F;D1;+0]"),
    ("chloro", "[Cl;D1;+0]"),
    ("bromo", "[Br;D1;+0]"),
    ("iodo", "[I;D1;+0]"),
    ("carbonyl", "[#6]=[OX1:1]"),  # C=O on an aromatic carbon: the oxygen only
    ("thiocarbonyl", "[#6]=[SX1:1]"),
    ("alkyne", "[CX2]#[CX2]"),
    ("alkene", "[CX3]=[CX3]"),
)


@dataclass(frozen=True)
class FunctionalGroup:
    """A detected group: table ``name`` and the RDKit atom indices it owns (sorted)."""

    name: str
    atoms: tuple[int, ...]


@dataclass(frozen=True)
class GroupToken:
    """One token of a molecule: a functional group (``kind="group"``) or a leftover skeleton
    fragment (``kind="skeleton"``), with the RDKit atom indices it covers (sorted)."""

    name: str
    atoms: tuple[int, ...]
    kind: str = "group"


@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[str, Chem.Mol, tuple[int, ...] | None], ...]:
    out = []
    for name, smarts in FUNCTIONAL_GROUP_SMARTS:
        patt = Chem.MolFromSmarts(smarts)
        if patt is None:
            raise ValueError(f"Bad SMARTS for functional group {name!r}: {smarts}")
        mapped = tuple(a.GetIdx() for a in patt.GetAtoms() if a.GetAtomMapNum() > 0)
        out.append((name, patt, mapped or None))
    return tuple(out)


def functional_groups(smiles_or_mol: str | Chem.Mol) -> list[FunctionalGroup]:
    """Non-overlapping functional groups, in table order then by first atom index.

    Atom indices refer to ``Chem.MolFromSmiles(smiles)`` (RDKit parse order).
    """
    mol = as_mol(smiles_or_mol)
    claimed: set[int] = set()
    found: list[FunctionalGroup] = []
    for name, patt, owned_positions in _compiled():
        matches = []
        for match in mol.GetSubstructMatches(patt, uniquify=True, maxMatches=10_000):
            owned = match if owned_positions is None else tuple(match[i] for i in owned_positions)
            matches.append(tuple(sorted(owned)))
        for owned in sorted(set(matches)):
            if claimed.isdisjoint(owned):
                claimed.update(owned)
                found.append(FunctionalGroup(name, owned))
    return found


_PERIODIC_TABLE = Chem.GetPeriodicTable()


def _skeleton_name(mol: Chem.Mol, atoms: Sequence[int]) -> str:
    first = mol.GetAtomWithIdx(atoms[0])
    if first.GetAtomicNum() != 6:  # stray heteroatom (always a single-atom token)
        name = _PERIODIC_TABLE.GetElementName(first.GetAtomicNum()).lower()
        if first.GetIsAromatic():
            return f"aromatic_{name}"
        if first.GetFormalCharge() != 0 and first.GetDegree() == 0:
            return f"{name}_ion"
        return name
    if first.GetIsAromatic():
        return "aromatic_carbon" if len(atoms) == 1 else "aromatic_fragment"
    if len(atoms) == 1:
        n_h = first.GetTotalNumHs()
        return f"CH{n_h}" if n_h > 1 else ("CH" if n_h == 1 else "C")
    if all(mol.GetAtomWithIdx(i).IsInRing() for i in atoms):
        return "aliphatic_ring"
    return "alkyl_chain"


def _skeleton_class(atom: Chem.Atom) -> tuple[str, bool] | None:
    """Atoms of the same class join into one leftover fragment; None means a single-atom token."""
    if atom.GetAtomicNum() != 6:
        return None
    return ("C", atom.GetIsAromatic())


def group_tokens(smiles_or_mol: str | Chem.Mol) -> list[GroupToken]:
    """Partition every atom into tokens: functional groups, then leftover carbon fragments
    (connected, aromatic and aliphatic apart: ``alkyl_chain``, ``aliphatic_ring``, ``CH3``,
    ``aromatic_fragment``...) and single leftover heteroatoms (``sulfur``, ``sodium_ion``).

    Tokens are ordered by their smallest atom index, i.e. by first appearance in the SMILES that
    was parsed, so neighbouring tokens tend to be bonded and n-grams are meaningful.
    """
    mol = as_mol(smiles_or_mol)
    tokens = [GroupToken(g.name, g.atoms) for g in functional_groups(mol)]
    covered = {i for t in tokens for i in t.atoms}
    for start in range(mol.GetNumAtoms()):
        if start in covered:
            continue
        cls = _skeleton_class(mol.GetAtomWithIdx(start))
        fragment, stack = {start}, [start]
        while stack and cls is not None:
            for nb in mol.GetAtomWithIdx(stack.pop()).GetNeighbors():
                j = nb.GetIdx()
                if j not in covered and j not in fragment and _skeleton_class(nb) == cls:
                    fragment.add(j)
                    stack.append(j)
        atoms = tuple(sorted(fragment))
        covered.update(atoms)
        tokens.append(GroupToken(_skeleton_name(mol, atoms), atoms, "skeleton"))
    return sorted(tokens, key=lambda t: t.atoms[0])


def group_ngrams(
    tokens: Sequence[GroupToken], n_max: int = 3
) -> list[tuple[tuple[str, ...], frozenset[int]]]:
    """Contiguous token n-grams (n = 1..n_max) along the token order, each with the union of its
    tokens' atoms: ``[(("benzene",), {0..5}), (("benzene", "carboxylic_acid"), {...}), ...]``."""
    out = []
    for n in range(1, n_max + 1):
        for start in range(len(tokens) - n + 1):
            window = tokens[start : start + n]
            names = tuple(t.name for t in window)
            atoms = frozenset(i for t in window for i in t.atoms)
            out.append((names, atoms))
    return out
