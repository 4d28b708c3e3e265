"""Functional groups from a curated SMARTS table, and MoleX-style group tokens.

A table entry's *owned* atoms are the SMARTS atoms carrying an atom-map number (``[C:1]``); when
no atom is mapped, every matched atom is owned. Unmapped atoms are context only (the carbon an
ester oxygen hangs on). Entries are tried in order, and a match is kept only when none of its
owned atoms was claimed by an earlier match, so each atom belongs to at most one group and a
specific group (carboxylic acid) hides the generic ones it contains (ketone, hydroxyl).

Matching is one pass per molecule over the precompiled patterns, skipping every pattern the
molecule cannot contain: each atom is typed once (element, aromaticity, degrees, hydrogens,
charge, ring membership), and a pattern whose atoms need more atoms of some class than the
molecule has (read from RDKit's own description of each query atom) is never searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
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


#: Atom keys ``atomic number * 2 + aromatic`` span atomic numbers 0..118.
_N_KEYS = 2 * 119

#: An atom's type for the pre-filter: (key, total degree X, hydrogens H (neighbours included),
#: formal charge, degree D, on a ring (None: unknown)), the properties the table's SMARTS
#: primitives read (``QueryOps``: ``getTotalDegree``, ``getTotalNumHs(true)``, ...).
_AtomType = tuple[int, int, int, int, int, bool | None]


@dataclass(frozen=True)
class _Pattern:
    name: str
    query: Chem.Mol
    owned: tuple[int, ...] | None  # positions of the owned (mapped) atoms; None: all


class _PatternTable:
    """The compiled table and its pre-filter.

    Every pattern atom belongs to atom classes: its own query (``queries``: the query tree, and
    whether the atom lies on a ring of the pattern, so that it only matches ring atoms) and the
    sets of (element, aromatic) keys of `_possible_keys`. ``required[p, c]`` is the number of atoms
    pattern ``p`` needs from class ``c`` (a match maps pattern atoms one to one onto molecule
    atoms, each of a type its query allows); the last column is the pattern's size. A molecule
    with fewer atoms of some class than a pattern needs cannot match it, so the pattern is
    skipped without a substructure search. ``type_row(t)`` is the (cached) classes an atom type
    can belong to: a query that cannot be decided from the type counts as matching.
    """

    def __init__(self, patterns, queries, key_classes, required):
        self.patterns: tuple[_Pattern, ...] = patterns
        self.queries: list[tuple[tuple, bool]] = queries
        self.key_classes: list[frozenset[int]] = key_classes
        self.required: np.ndarray = required  # (n_patterns, n_classes + 1)
        self._type_ids: dict[_AtomType, int] = {}
        self._rows: list[np.ndarray] = []
        self._matrix = np.zeros((0, required.shape[1]), dtype=np.int64)

    def type_row(self, t: _AtomType) -> np.ndarray:
        key = t[0]
        row = [key in c for c in self.key_classes]
        row += [
            not (ring and t[5] is False) and _may_match(tree, t) is not False
            for tree, ring in self.queries
        ]
        return np.array([*row, True], dtype=np.int64)

    def candidates(self, types: Sequence[_AtomType]) -> list[int]:
        """Indices of the patterns a molecule with atoms of these types may match, in order."""
        if not types:
            return []
        ids = self._type_ids
        index = []
        for t in types:
            i = ids.get(t)
            if i is None:
                i = ids[t] = len(self._rows)
                self._rows.append(self.type_row(t))
            index.append(i)
        if len(self._rows) != self._matrix.shape[0]:
            self._matrix = np.array(self._rows)
        have = np.bincount(index, minlength=len(self._rows)) @ self._matrix
        return np.flatnonzero((have >= self.required).all(axis=1)).tolist()


def _query_tree(description: str) -> tuple[list[str], list]:
    """RDKit's ``DescribeQuery`` text (one node a line, two spaces of indent a level) as a tree
    of (tokens, children)."""
    nodes = [
        ((len(line) - len(line.lstrip(" "))) // 2, line.split())
        for line in description.splitlines()
        if line.strip()
    ]
    pos = 0

    def build() -> tuple[list[str], list]:
        nonlocal pos
        depth, tokens = nodes[pos]
        pos += 1
        children = []
        while pos < len(nodes) and nodes[pos][0] > depth:
            children.append(build())
        return tokens, children

    tree = build()
    if pos != len(nodes):
        raise ValueError(f"unexpected query description: {description!r}")
    return tree


#: Query primitives read from an atom type, and their positions in `_AtomType`.
_PRIMITIVES = {
    "AtomTotalDegree": 1,
    "AtomHCount": 2,
    "AtomFormalCharge": 3,
    "AtomExplicitDegree": 4,
}


def _may_match(tree: tuple[list[str], list], t: _AtomType) -> bool | None:
    """Three-valued evaluation of a query atom on an atom known only by its type: False when no
    such atom can match, True when every such atom does, None when it depends on anything else
    (recursive SMARTS, or a primitive this does not read)."""
    tokens, children = tree
    name = tokens[0]
    if name in ("AtomAnd", "AtomOr") and len(tokens) == 1 and children:
        values = [_may_match(c, t) for c in children]
        if name == "AtomAnd":
            if False in values:
                return False
            return True if all(v is True for v in values) else None
        if True in values:
            return True
        return False if all(v is False for v in values) else None
    if children:
        return None
    if name == "AtomNull" and len(tokens) == 1:
        return True
    if len(tokens) != 4 or tokens[3] != "val" or tokens[2] not in ("=", "!="):
        return None
    try:
        value = int(tokens[1])
    except ValueError:
        return None
    atomic_num, aromatic = t[0] >> 1, bool(t[0] & 1)
    if name == "AtomType":  # atomic number + 1000 if aromatic
        result = atomic_num + 1000 * aromatic == value
    elif name == "AtomAtomicNum":
        result = atomic_num == value
    elif name == "AtomIsAromatic":
        result = aromatic == bool(value)
    elif name == "AtomIsAliphatic":
        result = (not aromatic) == bool(value)
    elif name in _PRIMITIVES:
        known = t[_PRIMITIVES[name]]
        if known is None:
            return None
        result = known == value
    else:
        return None
    return result if tokens[2] == "=" else not result


def _query(atom: Chem.Atom) -> tuple | None:
    """A query atom's tree, or None when its query cannot be read (it then matches anything)."""
    if not atom.HasQuery():
        return None
    try:
        return _query_tree(atom.DescribeQuery())
    except (IndexError, ValueError):
        return None


def _possible_keys(atom: Chem.Atom) -> frozenset[int]:
    """The atom keys (atomic number * 2 + aromatic) a query atom can match whatever the atom's
    other properties; every key when its query cannot be read."""
    tree = _query(atom)
    if tree is None:
        return frozenset(range(_N_KEYS))
    unknown = (None, None, None, None, None)
    return frozenset(k for k in range(_N_KEYS) if _may_match(tree, (k, *unknown)) is not False)


@lru_cache(maxsize=1)
def _compiled() -> _PatternTable:
    patterns, atom_queries, atom_sets = [], [], []
    for name, smarts in FUNCTIONAL_GROUP_SMARTS:
        patt = Chem.MolFromSmarts(smarts)
        if patt is None:
            raise ValueError(f"Bad SMARTS for functional group {name!r}: {smarts}")
        mapped = tuple(a.GetIdx() for a in patt.GetAtoms() if a.GetAtomMapNum() > 0)
        patterns.append(_Pattern(name, patt, mapped or None))
        rings = Chem.Mol(patt)
        Chem.FastFindRings(rings)  # on a copy: pattern atoms on a pattern ring
        info = rings.GetRingInfo()
        queries = []
        for a in patt.GetAtoms():
            tree = _query(a)
            queries.append(
                (
                    _freeze(tree if tree is not None else (["AtomNull"], [])),
                    info.NumAtomRings(a.GetIdx()) > 0,
                )
            )
        atom_queries.append(queries)
        atom_sets.append([_possible_keys(a) for a in patt.GetAtoms()])
    key_classes = sorted({s for sets in atom_sets for s in sets}, key=sorted)
    query_classes = sorted({q for queries in atom_queries for q in queries}, key=repr)
    required = np.array(
        [
            [sum(s <= c for s in sets) for c in key_classes]
            + [queries.count(q) for q in query_classes]
            + [len(sets)]
            for sets, queries in zip(atom_sets, atom_queries, strict=True)
        ],
        dtype=np.int64,
    )
    return _PatternTable(
        tuple(patterns), [(_thaw(t), ring) for t, ring in query_classes], key_classes, required
    )


def _freeze(tree) -> tuple:
    tokens, children = tree
    return (tuple(tokens), tuple(_freeze(c) for c in children))


def _thaw(tree) -> tuple[list[str], list]:
    tokens, children = tree
    return (list(tokens), [_thaw(c) for c in children])


def _atom_types(mol: Chem.Mol, with_rings: bool = False):
    """Every atom's `_AtomType`, in index order; with ``with_rings`` also the molecule's rings
    (``RingInfo.AtomRings()``, None when not initialised)."""
    atom = mol.GetAtomWithIdx
    n = mol.GetNumAtoms()
    try:
        rings = mol.GetRingInfo().AtomRings()
    except RuntimeError:  # ring information not initialised: ring membership unknown
        rings = None
        ring_of: list[bool | None] = [None] * n
    else:
        on_ring = {i for ring in rings for i in ring}
        ring_of = [i in on_ring for i in range(n)]
    out = []
    explicit_h = False
    for i in range(n):
        a = atom(i)
        z = a.GetAtomicNum()
        explicit_h = explicit_h or z == 1
        n_h, degree = a.GetTotalNumHs(), a.GetDegree()
        out.append(
            (z * 2 + a.GetIsAromatic(), n_h + degree, n_h, a.GetFormalCharge(), degree, ring_of[i])
        )
    if explicit_h:  # hydrogen atoms in the graph: SMARTS H counts include them
        out = [(*t[:2], atom(i).GetTotalNumHs(True), *t[3:]) for i, t in enumerate(out)]
    return (out, rings) if with_rings else out


def _match_groups(mol: Chem.Mol, types: Sequence[_AtomType]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, owned atoms) of the kept matches, in table order then by owned atoms; ``types``
    from `_atom_types`."""
    table = _compiled()
    claimed: set[int] = set()
    found: list[tuple[str, tuple[int, ...]]] = []
    for p in table.candidates(types):
        pattern = table.patterns[p]
        matches = mol.GetSubstructMatches(pattern.query, uniquify=True, maxMatches=10_000)
        if not matches:
            continue
        positions = pattern.owned
        if positions is None:
            owned_sets = {tuple(sorted(m)) for m in matches}
        else:
            owned_sets = {tuple(sorted([m[i] for i in positions])) for m in matches}
        for owned in sorted(owned_sets):
            if claimed.isdisjoint(owned):
                claimed.update(owned)
                found.append((pattern.name, owned))
    return found


def functional_groups(smiles_or_mol: str | Chem.Mol) -> list[FunctionalGroup]:
    """Non-overlapping functional groups, in table order then by first atom index.

    Atom indices refer to ``Chem.MolFromSmiles(smiles)`` (RDKit parse order). Patterns the
    molecule's atoms rule out (too few atoms of an element, aromaticity, degree, hydrogen
    count, charge or ring membership a pattern atom needs) are skipped without a search; the
    result is the same as searching every pattern.
    """
    mol = as_mol(smiles_or_mol)
    return [FunctionalGroup(n, a) for n, a in _match_groups(mol, _atom_types(mol))]


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


def _skeleton_fragments(
    mol: Chem.Mol,
    keys: Sequence[int],
    covered: set[int],
    neighbours: Sequence[Sequence[int]] | None = None,
) -> list[tuple[int, ...]]:
    """The atoms no group owns, as leftover tokens in order of their first atom: connected
    carbons of one kind (aromatic or aliphatic, same ``keys``) join; any other atom stands alone.
    ``covered`` (the groups' atoms) is extended; ``neighbours[i]``: atom i's neighbour indices
    (read from ``mol`` when not given)."""
    out = []
    for start in range(len(keys)):
        if start in covered:
            continue
        key = keys[start]
        fragment = {start}
        if key >> 1 == 6:  # carbon
            stack = [start]
            while stack:
                i = stack.pop()
                if neighbours is None:
                    nbrs = [a.GetIdx() for a in mol.GetAtomWithIdx(i).GetNeighbors()]
                else:
                    nbrs = neighbours[i]
                for j in nbrs:
                    if keys[j] == key and j not in covered and j not in fragment:
                        fragment.add(j)
                        stack.append(j)
        atoms = tuple(sorted(fragment))
        covered.update(atoms)
        out.append(atoms)
    return out


def group_tokens(smiles_or_mol: str | Chem.Mol) -> list[GroupToken]:
    """Partition every atom into tokens: functional groups, then leftover carbon fragments
    (connected, aromatic and aliphatic apart: ``alkyl_chain``, ``aliphatic_ring``, ``CH3``,
    ``aromatic_fragment``...) and single leftover heteroatoms (``sulfur``, ``sodium_ion``).

    Tokens are ordered by their smallest atom index, i.e. by first appearance in the SMILES that
    was parsed, so neighbouring tokens tend to be bonded and n-grams are meaningful.
    """
    mol = as_mol(smiles_or_mol)
    types = _atom_types(mol)
    keys = [t[0] for t in types]
    groups = _match_groups(mol, types)
    tokens = [GroupToken(name, atoms) for name, atoms in groups]
    covered = {i for _, atoms in groups for i in atoms}
    for atoms in _skeleton_fragments(mol, keys, covered):
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
