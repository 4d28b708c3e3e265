"""Deployed MoleX prediction: SMILES -> group n-grams -> stored n-gram contributions -> logits.

A fitted MoleX model is one affine map of summed n-gram features, so every known n-gram text has a
fixed contribution vector and a molecule's logits are ``intercept + sum of its n-grams'
contributions``. `NgramPredictor` computes exactly that, one pass per molecule: parse, functional
groups (the pre-filtered, precompiled table of `molkit.chem.groups`), leftover skeleton tokens,
contiguous token n-grams, their texts, a table look-up and a sum.

The n-gram text (``Chem.MolFragmentToSmiles(mol, atomsToUse=sorted(atoms), canonical=True)``, see
`molkit.methods.molex.ngrams.ngram_text`) is the n-gram's identity and the slowest step: RDKit
copies and re-rings the whole molecule on every call. `NgramTexts` memoises it by a key of the
fragment that holds everything RDKit's fragment writer reads (RDKit 2026.09 source:
``MolFragmentToSmiles``, ``Canon::rankFragmentAtoms``, ``canonicalizeFragment``,
``GetAtomSmiles``): the subgraph its atoms induce, in atom-index order, with per atom the
element, aromaticity, charge and total degree in the molecule (the ranking counts neighbours
outside the fragment as hydrogens), and for an atom the writer may bracket its hydrogens,
valence, radicals, explicit hydrogens and metal neighbours; isotopes and atom maps where the
SMILES has them; per bond its type and whether it lies on a ring of the molecule (the order of
branches reads it); for chiral atoms and stereo double bonds their tags, neighbours in bond
order, CIP codes and ring-stereo marks; and, where RDKit's ring-symmetry tie breaking can run
(a molecule with an atom on two rings, a fragment with a ring atom) or for stereo, each atom's
ring membership. A fragment whose key was seen before gets the text RDKit wrote for that key;
any other is written by RDKit and its key remembered. Molecules given as ``Mol`` objects, or
parsed from CXSMILES or SMILES with dative bonds, skip the memo. The tests check that the texts
equal `ngram_text` for every n-gram of the six explanation datasets, with the memo filled on
other molecules. One dependence is not in the key: whether the ring-symmetry tie breaking runs
also depends on ring statistics of the whole molecule; it can only change a text when RDKit's
refinement leaves non-equivalent ring atoms of the fragment tied (the tests found no such
n-gram in the six datasets).

Unknown n-grams (texts the predictor has no contribution for) contribute 0: for MoleX's centred
features that is an n-gram embedded at the training mean. `NgramPredictor.decision_function`
can return how many a molecule had, `unknown_ngrams` lists them so that a cold-start caller can
embed them with the LM and `add_ngrams` their contributions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdqueries
from scipy import sparse

from molkit.chem.groups import _atom_types, _match_groups, _skeleton_fragments
from molkit.chem.smiles import InvalidSmilesError, parse_smiles

__all__ = ["NgramPredictor", "NgramTexts", "ngram_atom_sets"]

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

    def key(self, atoms: tuple[int, ...]) -> tuple:
        """The exact key of the fragment of sorted ``atoms``."""
        pos = dict(zip(atoms, range(len(atoms)), strict=True))
        up = self.up
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
            chiral = tuple(
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
            )
            stereo = tuple(
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
            )
            key = (*key, chiral, stereo)
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


class NgramTexts:
    """Exact n-gram texts with a memo keyed by the fragment's labelled subgraph (module doc).

    ``texts(mol)`` equals ``[ngram_text(mol, atoms) for _, atoms in group_ngrams(group_tokens(
    mol), n_max)]``. ``hits`` / ``misses`` count memo look-ups; ``len`` is the number of keys.
    """

    def __init__(self, n_max: int = 3):
        self.n_max = n_max
        self._memo: dict[tuple, str] = {}
        self._labels: dict[tuple, int] = {}
        self._type_labels: dict[tuple, int] = {}  # atom type -> label code (-1: read the atom)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def _analyse(
        self, mol: Chem.Mol, smiles: str | None
    ) -> tuple[list[tuple[int, ...]], list[tuple] | None]:
        """The molecule's n-gram atoms and their keys (None: texts written by RDKit)."""
        types, rings = _atom_types(mol, with_rings=True)
        if not _plain(smiles) or rings is None:
            return _windows(_token_atoms(mol, types), self.n_max), None
        context = _Context(mol, types, rings, smiles, self._labels, self._type_labels)
        atom_sets = _windows(_token_atoms(mol, types, context.neighbours), self.n_max)
        if not context.ok:
            return atom_sets, None
        return atom_sets, [context.key(atoms) for atoms in atom_sets]

    def _lookup(self, mol: Chem.Mol, atom_sets, keys) -> list[str]:
        if keys is None:
            return [
                Chem.MolFragmentToSmiles(mol, atomsToUse=list(atoms), canonical=True)
                for atoms in atom_sets
            ]
        memo = self._memo
        out = []
        for atoms, key in zip(atom_sets, keys, strict=True):
            text = memo.get(key)
            if text is None:
                text = Chem.MolFragmentToSmiles(mol, atomsToUse=list(atoms), canonical=True)
                memo[key] = text
                self.misses += 1
            else:
                self.hits += 1
            out.append(text)
        return out

    def texts(self, smiles_or_mol: str | Chem.Mol) -> list[str]:
        """The molecule's n-gram texts, in `group_ngrams` order."""
        if isinstance(smiles_or_mol, str):
            mol, smiles = _parse(smiles_or_mol), smiles_or_mol
        else:
            mol, smiles = smiles_or_mol, None
        atom_sets, keys = self._analyse(mol, smiles)
        return self._lookup(mol, atom_sets, keys)


_WORKER: NgramPredictor | None = None


def _worker_init(predictor: NgramPredictor) -> None:
    global _WORKER
    _WORKER = predictor


def _worker_run(smiles: list[str], offset: int, texts: bool):
    assert _WORKER is not None
    return _WORKER._run(smiles, offset, texts)


class NgramPredictor:
    """A deployed MoleX model: ``logits = intercept + sum of the molecule's n-grams'
    contributions``.

    ``texts`` (n_texts,): the known n-gram texts; ``contributions`` (n_texts, n_out): each text's
    contribution to the logits (for `MolexModel`: ``centred_embeddings @ W``, see
    `from_linear`); ``intercept`` (n_out,); ``n_max``: the longest n-gram. Unknown n-grams
    contribute 0 (module doc). ``ngram_texts``: the memo of fragment keys (`NgramTexts`), filled
    as molecules come and by `warm` (e.g. with the training molecules). ``workers`` > 1 splits
    batches of at least ``min_batch`` molecules over a process pool (started on first use with
    a copy of the predictor, memo included; what the workers' memos learn stays with them;
    `close` ends it). On 2 cores, 2 workers predicted 2,048 Liver molecules about 1.7-2x faster
    than 1; a pool does not pay for a few hundred molecules.
    """

    def __init__(
        self,
        texts: Sequence[str],
        contributions: np.ndarray,
        intercept: np.ndarray | float,
        n_max: int = 3,
        workers: int = 1,
        min_batch: int = 2048,
    ):
        contributions = np.asarray(contributions, dtype=np.float64)
        if contributions.ndim == 1:
            contributions = contributions[:, None]
        if contributions.shape[0] != len(texts):
            raise ValueError(f"{contributions.shape[0]} contribution rows for {len(texts)} texts")
        self.texts = list(texts)
        self.index = {t: i for i, t in enumerate(self.texts)}
        if len(self.index) != len(self.texts):
            raise ValueError("n-gram texts must be unique")
        self.contributions = contributions
        self.intercept = np.broadcast_to(
            np.asarray(intercept, dtype=np.float64), (contributions.shape[1],)
        ).copy()
        self.n_max = n_max
        self.workers = max(1, int(workers))
        self.min_batch = min_batch
        self.ngram_texts = NgramTexts(n_max)
        self._pool: ProcessPoolExecutor | None = None

    @classmethod
    def from_linear(
        cls,
        texts: Sequence[str],
        centred_embeddings: np.ndarray,
        W: np.ndarray,
        c: np.ndarray,
        n_max: int = 3,
        **kwargs,
    ) -> NgramPredictor:
        """From MoleX's affine map (``MolexModel.weights()``) over summed centred n-gram
        embeddings (``molex_features``): contributions ``centred_embeddings @ W``."""
        return cls(texts, np.asarray(centred_embeddings) @ np.asarray(W), c, n_max, **kwargs)

    @property
    def n_outputs(self) -> int:
        return self.contributions.shape[1]

    @property
    def n_parameters(self) -> int:
        """Stored numbers the deployed model needs: the contribution table and the intercept
        (the memo of fragment keys only speeds texts up and is not counted)."""
        return int(self.contributions.size + self.intercept.size)

    def add_ngrams(self, texts: Sequence[str], contributions: np.ndarray) -> None:
        """Add new n-gram texts (e.g. embedded by the LM at cold start) and their contributions;
        a text already known gets the new contribution."""
        contributions = np.asarray(contributions, dtype=np.float64).reshape(len(texts), -1)
        if contributions.shape[1] != self.n_outputs:
            raise ValueError(f"contributions need {self.n_outputs} columns")
        rows = []
        for text, row in zip(texts, contributions, strict=True):
            if text in self.index:
                self.contributions[self.index[text]] = row
            else:
                self.index[text] = len(self.texts)
                self.texts.append(text)
                rows.append(row)
        if rows:
            self.contributions = np.vstack([self.contributions, np.asarray(rows)])
        self.close()  # workers hold the old table

    def warm(self, smiles: Sequence[str]) -> None:
        """Remember the fragment keys of these molecules (e.g. the training set the table came
        from), so that later molecules sharing their fragments skip RDKit's writer."""
        for s in smiles:
            self.ngram_texts.texts(s)

    def _ids(self, smiles: Sequence[str], offset: int = 0):
        """Per molecule: the table rows of its known n-grams and the texts of its unknown ones."""
        ngram_texts, index = self.ngram_texts, self.index
        ids_out, unknown_out = [], []
        with rdBase.BlockLogs():
            for k, s in enumerate(smiles):
                mol = _parse(s, offset + k)
                atom_sets, keys = ngram_texts._analyse(mol, s)
                ids, unknown = [], []
                for text in ngram_texts._lookup(mol, atom_sets, keys):
                    j = index.get(text)
                    if j is None:
                        unknown.append(text)
                    else:
                        ids.append(j)
                ids_out.append(ids)
                unknown_out.append(unknown)
        return ids_out, unknown_out

    def _run(self, smiles: Sequence[str], offset: int = 0, texts: bool = False):
        """(logits (n, n_out), unknown n-gram occurrences (n,), their texts or None)."""
        ids, unknown = self._ids(smiles, offset)
        indptr = np.cumsum([0] + [len(i) for i in ids])
        flat = np.fromiter((j for i in ids for j in i), dtype=np.int64, count=indptr[-1])
        counts = sparse.csr_matrix(
            (np.ones(len(flat)), flat, indptr), shape=(len(ids), len(self.texts))
        )
        counts.sum_duplicates()
        logits = np.asarray(counts @ self.contributions) + self.intercept
        n_unknown = np.array([len(u) for u in unknown], dtype=np.int64)
        return logits, n_unknown, unknown if texts else None

    def _run_all(self, smiles: Sequence[str], texts: bool = False):
        smiles = list(smiles)
        if self.workers == 1 or len(smiles) < self.min_batch:
            return self._run(smiles, 0, texts)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, initializer=_worker_init, initargs=(self,)
            )
        size = -(-len(smiles) // self.workers)
        parts = [
            f.result()
            for f in [
                self._pool.submit(_worker_run, smiles[s : s + size], s, texts)
                for s in range(0, len(smiles), size)
            ]
        ]
        logits = np.concatenate([p[0] for p in parts])
        n_unknown = np.concatenate([p[1] for p in parts])
        return logits, n_unknown, [u for p in parts for u in p[2]] if texts else None

    def decision_function(
        self, smiles: Sequence[str], return_unknown: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Logits (n, n_out) of SMILES; with ``return_unknown`` also the number of unknown
        n-gram occurrences per molecule (n,), each of which contributed 0."""
        if isinstance(smiles, str):
            raise TypeError("decision_function takes a sequence of SMILES, not one string")
        logits, n_unknown, _ = self._run_all(smiles)
        return (logits, n_unknown) if return_unknown else logits

    def unknown_ngrams(self, smiles: Sequence[str]) -> list[list[str]]:
        """Per molecule, the texts of its n-gram occurrences the predictor has no contribution
        for (in `group_ngrams` order, repeats kept)."""
        return self._run_all(smiles, texts=True)[2]

    def close(self) -> None:
        """Shut the worker pool down (a later large batch starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False)
