"""The deployed MoleX path (molkit.methods.molex.inference) and the pre-filtered group matching
(molkit.chem.groups): exactly the results of the plain implementations, on hand-made edge cases
and on every molecule of the six explanation datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from molkit import chem
from molkit.chem import groups as groups_module
from molkit.chem.smiles import InvalidSmilesError, as_mol
from molkit.methods.molex.inference import NgramPredictor, NgramTexts, ngram_atom_sets
from molkit.methods.molex.ngrams import build_ngram_table, molex_features, ngram_text

# ------------------------------------------------------------------ the reference implementation
# The group matching before the pre-filter, copied verbatim: every pattern searched in order
# (the skeleton naming did not change and is the module's own).

_skeleton_name = groups_module._skeleton_name
_REF_PATTERNS: list = []


def _ref_compiled():
    if not _REF_PATTERNS:
        for name, smarts in chem.FUNCTIONAL_GROUP_SMARTS:
            patt = Chem.MolFromSmarts(smarts)
            mapped = tuple(a.GetIdx() for a in patt.GetAtoms() if a.GetAtomMapNum() > 0)
            _REF_PATTERNS.append((name, patt, mapped or None))
    return _REF_PATTERNS


def ref_functional_groups(smiles_or_mol):
    mol = as_mol(smiles_or_mol)
    claimed: set[int] = set()
    found = []
    for name, patt, owned_positions in _ref_compiled():
        matches = []
        for match in mol.GetSubstructMatches(patt, uniquify=True, maxMatches=10_000):
            owned = match if owned_positions is None else tuple(match[i] for i in owned_positions)
            matches.append(tuple(sorted(owned)))
        for owned in sorted(set(matches)):
            if claimed.isdisjoint(owned):
                claimed.update(owned)
                found.append(chem.FunctionalGroup(name, owned))
    return found


def _ref_skeleton_class(atom):
    if atom.GetAtomicNum() != 6:
        return None
    return ("C", atom.GetIsAromatic())


def ref_group_tokens(smiles_or_mol):
    mol = as_mol(smiles_or_mol)
    tokens = [chem.GroupToken(g.name, g.atoms) for g in ref_functional_groups(mol)]
    covered = {i for t in tokens for i in t.atoms}
    for start in range(mol.GetNumAtoms()):
        if start in covered:
            continue
        cls = _ref_skeleton_class(mol.GetAtomWithIdx(start))
        fragment, stack = {start}, [start]
        while stack and cls is not None:
            for nb in mol.GetAtomWithIdx(stack.pop()).GetNeighbors():
                j = nb.GetIdx()
                if j not in covered and j not in fragment and _ref_skeleton_class(nb) == cls:
                    fragment.add(j)
                    stack.append(j)
        atoms = tuple(sorted(fragment))
        covered.update(atoms)
        tokens.append(chem.GroupToken(_skeleton_name(mol, atoms), atoms, "skeleton"))
    return sorted(tokens, key=lambda t: t.atoms[0])


# ------------------------------------------------------------------ molecules

EDGE_CASES = [
    "CCCC",  # no functional group
    "C",
    "[Na+].[Cl-]",  # ions
    "CC(=O)[O-].[Na+]",  # salt
    "C[N+](C)(C)C.[Br-]",  # ammonium salt
    "[O-][N+](=O)c1ccccc1",
    "O=[N+]([O-])c1ccc2ccccc2c1",  # fused rings
    "c1ccc2c(c1)[nH]c1ccccc12",  # carbazole: fused, not in the table
    "c1ccc2nc3ccccc3cc2c1",  # acridine
    "C1CC2CCC1C2",  # bridged aliphatic rings
    "C12C3C4C1C5C2C3C45",  # cubane
    "OC[C@H]1O[C@H](O)[C@H](O)[C@@H](O)[C@@H]1O",  # chirality
    "C/C=C/C(=O)O",  # double-bond stereo
    "F/C=C\\Cl",
    "[13CH3]C(=O)O",  # isotope
    "[2H]OC",
    "[CH3:1]C(=O)[OH:2]",  # atom maps
    "[CH2]CC",  # radical
    "[NH3+]CC([O-])=O",  # zwitterion
    "c1ccoc1.c1ccsc1.c1cc[se]c1",  # aromatic O, S, Se
    "*C(=O)O",  # dummy atom
    "N#N",
    "O=S(=O)(O)c1ccccc1",
    "OP(=O)(O)OCC",
    "C[S+]([O-])C",
    "[Cu+2].[O-]S(=O)(=O)[O-]",
    "c1ccccc1-c1ccccc1",  # single bond between aromatic atoms
    "C1=CC=CC=C1",  # Kekulé input
    "CC(C)(C)c1cc(O)ccc1O",
    "[nH]1cccc1",
    "CCN(CC)C(=O)N1CCN(C)CC1",
]


def _explain_smiles() -> dict[str, list[str]]:
    mirror = Path(os.environ.get("MOLKIT_DATA_MIRROR", ""))
    if not mirror.joinpath("MANIFEST.csv").exists():
        pytest.skip("no offline data mirror (set MOLKIT_DATA_MIRROR)")
    from molkit.data.explain import EXPLAIN_DATASETS, load_explain_dataset

    return {n: load_explain_dataset(n)["smiles"].tolist() for n in EXPLAIN_DATASETS}


@pytest.fixture(scope="module")
def explain_smiles() -> dict[str, list[str]]:
    return _explain_smiles()


def _all(explain_smiles) -> list[str]:
    return [s for smiles in explain_smiles.values() for s in smiles]


# ------------------------------------------------------------------ group matching


@pytest.mark.parametrize("smiles", EDGE_CASES)
def test_groups_equal_the_reference_on_edge_cases(smiles):
    assert chem.functional_groups(smiles) == ref_functional_groups(smiles)
    assert chem.group_tokens(smiles) == ref_group_tokens(smiles)
    mol = Chem.MolFromSmiles(smiles)
    assert chem.group_tokens(mol) == ref_group_tokens(mol)


def test_groups_equal_the_reference_on_every_explanation_molecule(explain_smiles):
    smiles = _all(explain_smiles)
    assert len(smiles) > 2000
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        assert chem.functional_groups(mol) == ref_functional_groups(mol), s
        assert chem.group_tokens(mol) == ref_group_tokens(mol), s


def test_prefilter_never_skips_a_pattern_that_matches(explain_smiles):
    """The pre-filter's premise, match by match: every pattern atom is mapped onto a molecule
    atom whose type its classes allow, so a skipped pattern has no match."""
    table = groups_module._compiled()
    mols = [Chem.MolFromSmiles(s) for s in EDGE_CASES]
    mols += [Chem.MolFromSmiles(s) for s in _all(explain_smiles)[::10]]
    pattern_atoms = []
    for pattern in table.patterns:
        rings = Chem.Mol(pattern.query)
        Chem.FastFindRings(rings)
        pattern_atoms.append(
            [
                (
                    a,
                    groups_module._query(a),
                    rings.GetRingInfo().NumAtomRings(a.GetIdx()) > 0,
                    groups_module._possible_keys(a),
                )
                for a in pattern.query.GetAtoms()
            ]
        )
    n_candidates = seen = 0
    for mol in mols:
        types = groups_module._atom_types(mol)
        candidates = set(table.candidates(types))
        n_candidates += len(candidates)
        for p, pattern in enumerate(table.patterns):
            matches = mol.GetSubstructMatches(pattern.query, uniquify=False, maxMatches=1000)
            if matches:
                assert p in candidates, (pattern.name, Chem.MolToSmiles(mol))
            for match in matches:
                for (_, tree, on_ring, keys), i in zip(pattern_atoms[p], match, strict=True):
                    seen += 1
                    t = types[i]
                    assert t[0] in keys
                    assert groups_module._may_match(tree, t) is not False
                    assert not (on_ring and t[5] is False)
    assert seen > 1000
    assert n_candidates / len(mols) < 0.4 * len(table.patterns)  # the filter does skip
    benzene = next(i for i, p in enumerate(table.patterns) if p.name == "benzene")
    assert benzene not in table.candidates(groups_module._atom_types(Chem.MolFromSmiles("CCO")))


# ------------------------------------------------------------------ n-gram texts


def _reference_texts(mol, n_max=3):
    return [ngram_text(mol, atoms) for _, atoms in chem.group_ngrams(chem.group_tokens(mol), n_max)]


@pytest.mark.parametrize("n_max", [1, 3])
def test_ngram_atom_sets_are_group_ngrams(n_max):
    for s in EDGE_CASES:
        expected = [
            tuple(sorted(a)) for _, a in chem.group_ngrams(ref_group_tokens(s), n_max=n_max)
        ]
        assert ngram_atom_sets(s, n_max) == expected


def test_fast_texts_equal_ngram_text_on_edge_cases():
    texts = NgramTexts()
    for _ in range(2):  # first pass fills the memo, the second reads it
        for s in EDGE_CASES:
            assert texts.texts(s) == _reference_texts(Chem.MolFromSmiles(s)), s
    # each text RDKit wrote is remembered under its canonical key (stereo fragments: only the
    # ordered one); the second pass reads every text from the memo
    canonical = sum(1 for key in texts._memo if key[0] == "canonical")
    assert 0 < canonical <= texts.misses < len(texts) and texts.hits > texts.misses
    before = texts.misses
    for s in EDGE_CASES:
        texts.texts(s)
    assert texts.misses == before
    mol = Chem.MolFromSmiles(EDGE_CASES[11])
    assert NgramTexts().texts(mol) == _reference_texts(mol)  # a Mol: every label read


def test_fast_texts_equal_ngram_text_on_every_explanation_molecule(explain_smiles):
    texts = NgramTexts()
    n_ngrams = 0
    for s in _all(explain_smiles):
        expected = _reference_texts(Chem.MolFromSmiles(s))
        assert texts.texts(s) == expected, s
        n_ngrams += len(expected)
    assert texts.hits + texts.misses == n_ngrams > 25_000
    assert texts.hits > texts.misses  # the memo is worth having
    assert texts.canonical_hits > 0  # fragments met in another atom order


def test_fast_texts_from_a_memo_filled_by_other_datasets(explain_smiles):
    """A memo filled on five datasets, read on the sixth: every text still exact."""
    names = list(explain_smiles)
    texts = NgramTexts()
    for name in names[1:]:
        for s in explain_smiles[name]:
            texts.texts(s)
    before = texts.hits
    for s in explain_smiles[names[0]]:
        assert texts.texts(s) == _reference_texts(Chem.MolFromSmiles(s)), s
    assert texts.hits > before


# ------------------------------------------------------------------ the predictor

TABLE_SMILES = [
    "c1ccccc1[N+](=O)[O-]",
    "Cc1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1ccc(Cl)cc1",
    "Nc1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1cccc2ccccc12",
    "CC(=O)O",
    "CCO",
    "CCCCO",
    "OC(=O)c1ccccc1",
    "CC(N)=O",
    "Oc1ccccc1",
    "CCOC(C)=O",
    "CC(C)O",
    "CCCC(=O)O",
    "O=[N+]([O-])c1ccc(O)cc1",
    "C[C@H](N)C(=O)O",
    "C/C=C/C(=O)O",
    "CC(=O)[O-].[Na+]",
]


def _model(smiles, n_out=2, d=5, seed=0):
    table = build_ngram_table(smiles, progress=False)
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(table.texts), d))
    _, centred = molex_features(table, emb, np.arange(len(smiles)))
    W, c = rng.normal(size=(d, n_out)), rng.normal(size=n_out)
    return table, centred, W, c


def test_predictor_equals_the_table_computation():
    table, centred, W, c = _model(TABLE_SMILES)
    predictor = NgramPredictor.from_linear(table.texts, centred, W, c)
    expected = np.asarray(table.counts @ (centred @ W)) + c
    logits, unknown = predictor.decision_function(TABLE_SMILES, return_unknown=True)
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-12)
    assert logits.shape == (len(TABLE_SMILES), 2) and not unknown.any()
    idx = [3, 0, 17, 3]
    np.testing.assert_allclose(
        predictor.decision_function([TABLE_SMILES[i] for i in idx]),
        np.asarray(table.counts[idx] @ (centred @ W)) + c,
        rtol=1e-12,
        atol=1e-12,
    )
    assert predictor.n_parameters == len(table.texts) * 2 + 2
    assert predictor.unknown_ngrams(TABLE_SMILES[:2]) == [[], []]


def test_predictor_equals_the_table_on_explanation_molecules(explain_smiles):
    smiles = explain_smiles["liver"][:200] + explain_smiles["mutag"][:100]
    table, centred, W, c = _model(smiles, n_out=1, d=8, seed=1)
    predictor = NgramPredictor.from_linear(table.texts, centred, W, c)
    predictor.warm(smiles[::2])
    expected = np.asarray(table.counts @ (centred @ W)) + c
    np.testing.assert_allclose(predictor.decision_function(smiles), expected, rtol=1e-10)


def test_unknown_ngrams_contribute_zero_and_are_reported():
    known, new = TABLE_SMILES[:10], ["CCOc1ccccc1", "c1ccccc1C(=O)O"]
    table, centred, W, c = _model(known)
    predictor = NgramPredictor.from_linear(table.texts, centred, W, c)
    full = build_ngram_table(known + new, progress=False)
    logits, n_unknown = predictor.decision_function(new, return_unknown=True)
    contributions = dict(zip(table.texts, centred @ W, strict=True))
    for k, s in enumerate(new):
        texts = [full.texts[j] for j, _ in full.occurrences[len(known) + k]]
        missing = [t for t in texts if t not in contributions]
        assert n_unknown[k] == len(missing)
        assert predictor.unknown_ngrams([s])[0] == missing
        expected = c + sum((contributions[t] for t in texts if t in contributions), 0)
        np.testing.assert_allclose(logits[k], expected, rtol=1e-12)
    assert n_unknown[0] > 0 and n_unknown[1] == 0  # benzoic acid (atoms reordered) is known
    # cold start: give the unknown n-grams contributions, and they count
    missing = sorted({t for u in predictor.unknown_ngrams(new) for t in u})
    extra = np.ones((len(missing), 2))
    predictor.add_ngrams(missing, extra)
    after, n_after = predictor.decision_function(new, return_unknown=True)
    assert not n_after.any()
    np.testing.assert_allclose(after[0] - logits[0], n_unknown[0] * np.ones(2), rtol=1e-12)
    assert predictor.n_parameters == (len(table.texts) + len(missing)) * 2 + 2


def test_predictor_workers_give_the_same_logits():
    table, centred, W, c = _model(TABLE_SMILES)
    one = NgramPredictor.from_linear(table.texts, centred, W, c)
    two = NgramPredictor.from_linear(table.texts, centred, W, c, workers=2, min_batch=4)
    batch = TABLE_SMILES * 3
    try:
        np.testing.assert_allclose(
            two.decision_function(batch), one.decision_function(batch), rtol=1e-12
        )
        assert two._pool is not None
    finally:
        two.close()


def test_predictor_rejects_bad_input():
    table, centred, W, c = _model(TABLE_SMILES[:3])
    predictor = NgramPredictor.from_linear(table.texts, centred, W, c)
    with pytest.raises(InvalidSmilesError, match="position 1"):
        predictor.decision_function(["CCO", "C1CC"])
    with pytest.raises(TypeError):
        predictor.decision_function("CCO")
    with pytest.raises(ValueError, match="contribution rows"):
        NgramPredictor(["C"], np.zeros((2, 1)), 0.0)
