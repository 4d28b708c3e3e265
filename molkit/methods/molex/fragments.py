"""What identifies a MoleX n-gram without writing it: the atoms of a molecule's group n-grams
(`ngram_atom_sets`) and the keys of their fragments (`_Context`), for the memo of n-gram texts in
`molkit.methods.molex.inference.NgramTexts`.

The n-gram text (``Chem.MolFragmentToSmiles(mol, atomsToUse=sorted(atoms), canonical=True)``, see
`molkit.methods.molex.ngrams.ngram_text`) is the n-gram's identity and the slowest step of a
deployed MoleX: RDKit copies and re-rings the whole molecule on every call. A fragment's key holds
everything RDKit's fragment writer reads (RDKit 2026.09 source: ``MolFragmentToSmiles``,
``Canon::rankFragmentAtoms``, ``canonicalizeFragment``, ``GetAtomSmiles``): the subgraph its atoms
induce, with per atom the element, aromaticity, charge and total degree in the molecule (the
ranking counts neighbours outside the fragment as hydrogens), and for an atom the writer may
bracket its hydrogens, valence, radicals, explicit hydrogens and metal neighbours; isotopes and
atom maps where the SMILES has them; per bond its type and whether it lies on a ring of the
molecule (the order of branches reads it); for chiral atoms and stereo double bonds their tags,
neighbours in bond order, CIP codes and ring-stereo marks; and, where RDKit's ring-symmetry tie
breaking can run (a molecule with an atom on two rings, a fragment with a ring atom) or for
stereo, each atom's ring membership. `_Context.key` lists the atoms in the molecule's index order
(free to compute); `_Context.canonical_key` in RDKit's canonical order of the fragment, so that
the same fragment met in another molecule or another atom order has the same key. One dependence
is not in the keys: whether the ring-symmetry tie breaking runs also depends on ring statistics of
the whole molecule; it can only change a text when RDKit's refinement leaves non-equivalent ring
atoms of the fragment tied (the tests found no such n-gram in the six explanation datasets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdqueries

from molkit.chem.groups import _atom_types, _match_groups, _skeleton_fragments
from molkit.chem.smiles import InvalidSmilesError, parse_smiles

__all__ = ["ngram_atom_sets"]

#: Bond orders of ``Chem.GetAdjacencyMatrix(useBO=True)`` that name one bond type in a sanitised
#: molecule parsed from SMILES without dative bonds: single, aromatic, double, triple, quadruple.
_BOND_CODES = {1.0: 1, 1.5: 12, 2.0: 2, 3.0: 3, 4.0: 4}
_ISOTOPE = re.compile(r"\[\d")
_RADICAL = Chem.MolFromSmarts("*")
_RADICAL.GetAtomWithIdx(0).ExpandQuery(rdqueries.NumRadicalElectronsGreaterQueryAtom(0))


def _token_atoms(
    mol: Chem.Mol, types: list, neighbours: Sequence[Sequence[int]] | None = None
) -> list[tuple[int, ...]]:
    """The atoms of `molkit.chem.group_tokens(mol)` in token order, without the names; ``types``
    from `molkit.chem.groups._atom_types`."""
    keys = [t[0] for t in types]
    groups = [atoms for _, atoms in _match_groups(mol, types)]
    covered = {i for atoms in groups for i in atoms}
    tokens = groups + _skeleton_fragments(mol, keys, covered, neighbours)
    tokens.sort(key=lambda atoms: atoms[0])
    return tokens


def _windows(tokens: list[tuple[int, ...]], n_max: int) -> list[tuple[int, ...]]:
    """Sorted atoms of the contiguous token n-grams, n = 1..n_max, in `group_ngrams` order."""
    out = list(tokens)
    for n in range(2, n_max + 1):
        for start in range(len(tokens) - n + 1):
            out.append(tuple(sorted(sum(tokens[start : start + n], ()))))
    return out


def ngram_atom_sets(smiles_or_mol: str | Chem.Mol, n_max: int = 3) -> list[tuple[int, ...]]:
    """The sorted atoms of every group n-gram, in the order of
    ``group_ngrams(group_tokens(mol), n_max)`` (the names left out)."""
    mol = parse_smiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    return _windows(_token_atoms(mol, _atom_types(mol)), n_max)


#: Elements RDKit's SMILES writer does not count as metals (``QueryOps::isMetal``); an atom
#: bonded to a metal is written in brackets, so a label records its neighbours outside this set.
_NON_METALS = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 33, 34, 35, 36, 52, 53, 54})
_NON_METALS |= {85, 86}
#: SMILES organic subset, and its elements with more than one default valence (a hydrogen-bearing
#: atom of these may have a non-default valence and then be bracketed). The others have one
#: valence, which an unbracketed atom always has.
_ORGANIC = frozenset({5, 6, 7, 8, 9, 15, 16, 17, 35, 53})
_MULTIVALENT = frozenset({15, 16, 53})


def _plain(smiles: str | None) -> bool:
    """Whether the memo may be used for a molecule parsed from ``smiles``: a SMILES without
    CXSMILES extensions or dative bonds (which could set what the key does not read)."""
    return smiles is not None and "|" not in smiles and ">" not in smiles and "<" not in smiles


class _Context:
    """What the fragment keys of one molecule need (module doc), read from RDKit once
    (`_plain` SMILES only): interned atom labels, each atom's neighbours and the codes of the
    bonds to higher indices, ring atoms, and the chirality and double-bond stereo records (with
    neighbours as fragment positions, -1 outside, in `key`). ``fused``: some atom lies on two
    rings (only then can RDKit's ring-symmetry tie breaking run). ``ok`` is False when the bonds
    cannot be read exactly from the adjacency matrix (the memo is then not used).
    """

    __slots__ = (
        "chiral",
        "fused",
        "labels",
        "neighbours",
        "ok",
        "ring_atoms",
        "stereo",
        "stereo_atoms",
        "up",
    )

    def __init__(
        self,
        mol: Chem.Mol,
        types: list,
        rings: tuple[tuple[int, ...], ...],
        smiles: str,
        interned: dict,
        type_labels: dict,
    ):
        n = len(types)
        keys = [t[0] for t in types]
        ring_atoms: set[int] = set()
        ring_bonds: set[tuple[int, int]] = set()
        fused = False
        for ring in rings:  # each ring in path order
            fused = fused or not ring_atoms.isdisjoint(ring)
            ring_atoms.update(ring)
            prev = ring[-1]
            for a in ring:
                ring_bonds.add((a, prev) if a < prev else (prev, a))
                prev = a
        self.fused = fused
        self.ring_atoms = ring_atoms

        adjacency = Chem.GetAdjacencyMatrix(mol, useBO=True)
        rows, cols = np.nonzero(adjacency)
        orders = adjacency[rows, cols].tolist()
        neighbours: list[list[int]] = [[] for _ in range(n)]
        up: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        codes = _BOND_CODES
        self.ok = len(orders) == 2 * mol.GetNumBonds() and all(o in codes for o in orders)
        for i, j, o in zip(rows.tolist(), cols.tolist(), orders, strict=True):
            neighbours[i].append(j)  # ascending j
            if j > i:
                up[i].append((j, codes.get(o, 0) | (32 if (i, j) in ring_bonds else 0)))
        self.neighbours = neighbours
        self.up = up

        atom = mol.GetAtomWithIdx
        # chirality: the tag, the neighbours in the atom's bond order, CIP code, ring stereo,
        # hydrogens and bond types
        self.chiral: list[tuple] = []
        ring_stereo: set[int] = set()
        if "@" in smiles:
            for i in range(n):
                a = atom(i)
                tag = int(a.GetChiralTag())
                if tag:
                    order = tuple(b.GetOtherAtomIdx(i) for b in a.GetBonds())
                    cip = a.GetProp("_CIPCode") if a.HasProp("_CIPCode") else ""
                    partners = ()
                    if a.HasProp("_ringStereoAtoms"):
                        partners = tuple(a.GetPropsAsDict(True, True)["_ringStereoAtoms"])
                        ring_stereo.add(i)
                    detail = (
                        a.GetTotalNumHs(),
                        a.GetNumExplicitHs(),
                        a.GetNumImplicitHs(),
                        tuple(int(b.GetBondType()) for b in a.GetBonds()),
                    )
                    self.chiral.append((i, tag, order, cip, partners, detail))
        # double-bond stereo and bond directions, with both ends' neighbours in bond order
        self.stereo: list[tuple] = []
        if "/" in smiles or "\\" in smiles:
            for bond in mol.GetBonds():
                st, direction = int(bond.GetStereo()), int(bond.GetBondDir())
                if st or direction:
                    i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
                    self.stereo.append(
                        (
                            i,
                            j,
                            st,
                            direction,
                            tuple(bond.GetStereoAtoms()),
                            tuple(b.GetOtherAtomIdx(i) for b in atom(i).GetBonds()),
                            tuple(b.GetOtherAtomIdx(j) for b in atom(j).GetBonds()),
                        )
                    )

        # the atoms a chirality or double-bond record reads (None: no records)
        touched = {r[0] for r in self.chiral} | {i for r in self.stereo for i in r[:2]}
        self.stereo_atoms = touched or None

        brackets = "[" in smiles  # isotopes, maps, radicals and metals need brackets
        isotopes = brackets and _ISOTOPE.search(smiles) is not None
        maps = brackets and ":" in smiles
        metals = brackets and any((k >> 1) not in _NON_METALS for k in keys)
        radicals = brackets and mol.HasSubstructMatch(_RADICAL)
        if not (isotopes or maps or metals or radicals or ring_stereo):
            # the common case: an atom's label follows from its type, unless it is one the
            # writer may bracket (then `_label` reads it)
            labels = []
            for i, t in enumerate(types):
                code = type_labels.get(t)
                if code is None:
                    code = type_labels[t] = (
                        -1 if _maybe_bracketed(t) else _intern(interned, _plain_label(t))
                    )
                if code < 0:
                    code = _intern(interned, _label(atom(i), t, 0, 0, (), False, False))
                labels.append(code)
        else:
            labels = []
            for i, t in enumerate(types):
                a = atom(i)
                nbrs = neighbours[i]
                metal_nbrs = (
                    tuple(sorted(keys[j] >> 1 for j in nbrs if keys[j] >> 1 not in _NON_METALS))
                    if metals
                    else ()
                )
                label = _label(
                    a,
                    t,
                    a.GetIsotope() if isotopes else 0,
                    a.GetAtomMapNum() if maps else 0,
                    metal_nbrs,
                    any(j in ring_stereo for j in nbrs) if ring_stereo else False,
                    radicals,
                )
                labels.append(_intern(interned, label))
        self.labels = labels

    def canonical_key(self, mol: Chem.Mol, atoms: tuple[int, ...]) -> tuple:
        """The fragment's key with its atoms in RDKit's canonical order of the fragment
        (``CanonicalRankAtomsInFragment``), its bonds and stereo records sorted: equal for the
        same fragment whatever the molecule's atom order, so a fragment met in another molecule,
        or written in another order, finds its text (about 6 us, against about 100 us for the
        writer). A stereo tag follows its atom's bond order in the molecule: the same stereo
        fragment written in another order may get another key (a miss, never a wrong text)."""
        ranks = Chem.CanonicalRankAtomsInFragment(mol, atomsToUse=list(atoms))
        return ("canonical", *self.key(tuple(sorted(atoms, key=ranks.__getitem__)), True))

    def key(self, atoms: tuple[int, ...], canonical: bool = False) -> tuple:
        """The exact key of the fragment of sorted ``atoms`` (``canonical``: ``atoms`` in a
        canonical order, bonds and stereo records sorted)."""
        pos = dict(zip(atoms, range(len(atoms)), strict=True))
        up = self.up
        if canonical:
            bonds = sorted(
                (min(pos[i], pos[j]) << 40) | (max(pos[i], pos[j]) << 16) | code
                for i in atoms
                for j, code in up[i]
                if j in pos
            )
        else:
            bonds = [
                (p << 40) | (pos[j] << 16) | code
                for p, i in enumerate(atoms)
                for j, code in up[i]
                if j in pos
            ]
        # the ring-symmetry tie breaking only reads ring atoms
        fused = self.fused and not self.ring_atoms.isdisjoint(atoms)
        stereo = self.stereo_atoms is not None and not self.stereo_atoms.isdisjoint(atoms)
        key = (
            fused,
            tuple(map(self.ring_atoms.__contains__, atoms)) if fused or stereo else None,
            tuple(map(self.labels.__getitem__, atoms)),
            tuple(bonds),
        )
        if stereo:
            get = pos.get
            chiral = [
                (
                    pos[i],
                    tag,
                    tuple(get(j, -1) for j in order),
                    cip,
                    tuple((k > 0, get(abs(k) - 1, -1)) for k in partners),
                    detail,
                )
                for i, tag, order, cip, partners, detail in self.chiral
                if i in pos
            ]
            stereo = [
                (
                    get(i, -1),
                    get(j, -1),
                    st,
                    d,
                    tuple(get(k, -1) for k in ends),
                    tuple(get(k, -1) for k in around_i),
                    tuple(get(k, -1) for k in around_j),
                )
                for i, j, st, d, ends, around_i, around_j in self.stereo
                if i in pos or j in pos
            ]
            if canonical:
                chiral.sort()
                stereo.sort()
            key = (*key, tuple(chiral), tuple(stereo))
        return key


def _intern(interned: dict, label: tuple) -> int:
    code = interned.get(label)
    if code is None:
        code = interned[label] = len(interned)
    return code


def _maybe_bracketed(t: tuple) -> bool:
    """Whether the writer may bracket an atom of this type (charge, element outside the organic
    subset, aromatic N or P, a hydrogen-bearing atom of an element with several valences); an
    atom of any other type is bracketed only for an isotope, map, radical or metal neighbour."""
    key, total_degree, _, charge, degree, _ = t
    element = key >> 1
    return bool(
        charge
        or element not in _ORGANIC
        or key == 15  # aromatic N
        or key == 31  # aromatic P
        or (total_degree > degree and element in _MULTIVALENT)
    )


def _plain_label(t: tuple) -> tuple:
    """The label of an atom the writer never brackets: what ranking and writing read of it."""
    key, total_degree, _, charge, _, _ = t
    # the ranking counts neighbours outside the fragment as hydrogens: with the fragment's
    # bonds (in the key) the total degree gives the ranking hydrogens. An atom's own ring
    # membership is read only by the ring-symmetry tie breaking and for stereo, so it goes in
    # the keys of those fragments alone (`_Context.key`); the order of branches reads the
    # bonds' membership (in their codes).
    return (key, charge, 0, 0, total_degree, None, False)


def _label(
    a: Chem.Atom,
    t: tuple,
    isotope: int,
    atom_map: int,
    metal_nbrs: tuple,
    ring_nbr: bool,
    radicals: bool = True,
) -> tuple:
    """An atom's label: `_plain_label`'s fields, the isotope, map and ring-stereo neighbour, and
    for an atom the writer may bracket everything the bracket decision and the written
    hydrogens read."""
    key, total_degree, _, charge, degree, _ = t
    if (
        _maybe_bracketed(t)
        or isotope
        or atom_map
        or metal_nbrs
        or (radicals and a.GetNumRadicalElectrons())
    ):
        written = (
            total_degree - degree,  # getTotalNumHs()
            a.GetTotalValence(),
            a.GetNumRadicalElectrons(),
            a.GetNumExplicitHs(),
            metal_nbrs,
        )
    else:
        written = None
    return (key, charge, isotope, atom_map, total_degree, written, ring_nbr)


def _parse(smiles: str, index: int | None = None) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    if mol is None:
        try:
            return parse_smiles(smiles)  # raises with RDKit's reason
        except InvalidSmilesError as err:
            raise InvalidSmilesError(err.smiles, err.reason, index) from None
    return mol
