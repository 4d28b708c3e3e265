"""molkit.chem on tiny molecules with known answers."""

import subprocess
import sys

import numpy as np
import pytest
from rdkit import Chem

from molkit import chem
from molkit.chem import (
    ATOM_FEATURE_BLOCKS,
    ATOM_FEATURE_DIM,
    BOND_FEATURE_DIM,
    DESCRIPTORS,
    InvalidSmilesError,
)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
NITROBENZENE = "c1ccccc1[N+](=O)[O-]"


# --- SMILES -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smiles", "reason_part"),
    [("C1CC", "unclosed ring"), ("CC(C", "parenthes"), ("c1cccc1", "kekulize"), ("", "empty")],
)
def test_invalid_smiles_error_names_smiles_and_reason(smiles, reason_part):
    with pytest.raises(InvalidSmilesError) as info:
        chem.parse_smiles(smiles)
    assert isinstance(info.value, ValueError)
    assert repr(smiles) in str(info.value)
    assert reason_part in info.value.reason.lower()
    assert "Fix:" in str(info.value)


def test_valence_error_reason():
    with pytest.raises(InvalidSmilesError, match="valence"):
        chem.parse_smiles("C(C)(C)(C)(C)C")


def test_standardize_smiles():
    assert chem.standardize_smiles("OCC") == "CCO"
    assert chem.standardize_smiles("N[C@@H](C)C(=O)O") == "C[C@H](N)C(=O)O"
    salt = "[Na+].[O-]C(=O)c1ccccc1"
    assert chem.standardize_smiles(salt) == "O=C([O-])c1ccccc1.[Na+]"
    assert chem.standardize_smiles(salt, largest_fragment=True) == "O=C([O-])c1ccccc1"


def test_standardize_many_keeps_positions_and_reports():
    out, invalid = chem.standardize_many(["OCC", "C1CC", "c1ccccc1", None], progress=False)
    assert out == ["CCO", None, "c1ccccc1", None]
    assert list(invalid.columns) == ["index", "smiles", "reason"]
    assert invalid["index"].tolist() == [1, 3]
    assert "unclosed ring" in invalid["reason"].iloc[0]


def test_import_chem_does_not_import_torch():
    code = (
        "import sys, molkit.chem; print('torch' in sys.modules, 'torch_geometric' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprint_shapes_and_dispatch():
    smiles = ["CCO", "c1ccccc1O", ASPIRIN]
    assert chem.morgan_bits(smiles, n_bits=1024).shape == (3, 1024)
    assert chem.maccs(smiles).shape == (3, chem.MACCS_N_BITS) == (3, 167)
    assert chem.rdkit_fp(smiles).shape == (3, 2048)
    counts = chem.morgan_counts(smiles)
    bits = chem.morgan_bits(smiles)
    assert counts.dtype == np.float32 and bits.dtype == np.uint8
    np.testing.assert_array_equal(counts > 0, bits > 0)
    assert counts.max() > 1  # aspirin repeats environments (aromatic CH)
    np.testing.assert_array_equal(chem.fingerprints(smiles, kind="maccs"), chem.maccs(smiles))
    np.testing.assert_array_equal(
        chem.fingerprints(smiles, kind="morgan", radius=1), chem.morgan_bits(smiles, radius=1)
    )
    # Ethanol, radius 2: 3 atoms give 6 distinct environments.
    assert int(chem.morgan_bits("CCO").sum()) == 6
    assert chem.fingerprints([], kind="rdkit").shape == (0, 2048)
    with pytest.raises(ValueError, match="Unknown fingerprint kind"):
        chem.fingerprints(smiles, kind="ecfp")


def test_fingerprint_invalid_names_position():
    with pytest.raises(InvalidSmilesError, match="position 1"):
        chem.morgan_bits(["CCO", "C1CC"])


@pytest.mark.parametrize("kind", ["morgan", "morgan_counts", "maccs", "rdkit"])
def test_tanimoto_self_is_one(kind):
    fps = chem.fingerprint_objects(["CCO", "c1ccccc1O", ASPIRIN], kind=kind)
    sim = chem.tanimoto_matrix(fps)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    np.testing.assert_allclose(sim, sim.T)
    assert (sim[~np.eye(3, dtype=bool)] < 1).all()
    assert chem.tanimoto_matrix(fps[:1], fps).shape == (1, 3)


def test_tanimoto_known_value():
    # Tanimoto of bit vectors = |A & B| / |A | B|.
    a, b = chem.morgan_bits(["CCO", "CO"])
    expected = (a & b).sum() / (a | b).sum()
    fps = chem.fingerprint_objects(["CCO", "CO"])
    assert chem.tanimoto_matrix(fps)[0, 1] == pytest.approx(expected)


# --- descriptors ------------------------------------------------------------------------------


def test_aspirin_descriptors():
    row = chem.compute_descriptors([ASPIRIN], progress=False).iloc[0]
    assert row["mol_weight"] == pytest.approx(180.159, abs=1e-3)
    assert row["logp"] == pytest.approx(1.3101, abs=1e-4)
    assert row["hbd"] == 1
    assert row["hba"] == 3
    assert row["tpsa"] == pytest.approx(63.6, abs=0.01)
    assert row["rotatable_bonds"] == 2
    assert row["ring_count"] == 1 and row["aromatic_rings"] == 1
    assert row["heavy_atoms"] == 13
    assert row["heteroatoms"] == 4
    assert row["fsp3"] == pytest.approx(1 / 9)
    assert row["formal_charge"] == 0
    assert row["stereocenters"] == 0
    assert row["lipinski_violations"] == 0
    assert row["exact_mass"] == pytest.approx(180.0423, abs=1e-4)
    assert 0 < row["qed"] < 1


def test_descriptor_table_shape_and_invalid_rows():
    df = chem.compute_descriptors(
        ["CCO", "C1CC", "C[C@H](N)C(=O)O"], names=["logp", "stereocenters"]
    )
    assert list(df.columns) == ["logp", "stereocenters"]
    assert df.shape == (3, 2)
    assert df.iloc[1].isna().all()
    assert df.loc[2, "stereocenters"] == 1
    assert chem.compute_descriptors("CCO").shape == (1, len(DESCRIPTORS))
    assert chem.compute_descriptors("[Na+].[Cl-]")["formal_charge"].item() == 0
    assert chem.descriptor_value("CC(=O)[O-]", "formal_charge") == -1
    with pytest.raises(KeyError, match="solubility"):
        chem.compute_descriptors(["CCO"], names=["solubility"])


def test_lipinski_violations_counts_rules():
    # Tetracontane C40H82: MW 563 > 500 and logP > 5; no donors or acceptors.
    long_chain = "C" * 40
    assert chem.descriptor_value(long_chain, "lipinski_violations") == 2


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Lipophilicity (LogP)", "logp"),
        ("LogP", "logp"),
        ("cLogP", "logp"),
        ("molecular weight", "mol_weight"),
        ("Molecular Weight (MW)", "mol_weight"),
        ("polar surface area", "tpsa"),
        ("TPSA", "tpsa"),
        ("hydrogen bond donors", "hbd"),
        ("Number of H-bond acceptors", "hba"),
        ("rotatable bonds", "rotatable_bonds"),
        ("number of rings", "ring_count"),
        ("Aromatic Rings", "aromatic_rings"),
        ("Fsp3", "fsp3"),
        ("drug-likeness", "qed"),
        ("Rule-of-five violations", "lipinski_violations"),
        ("exact mass", "exact_mass"),
        ("MolLogP", "logp"),
        ("solubility", None),
        ("Aqueous solubility (logS)", None),
        ("logD", None),
        ("pKa", None),
        ("colour", None),
    ],
)
def test_match_property(text, name):
    assert chem.match_property(text) == name


def test_every_descriptor_matches_its_own_name_and_synonyms():
    for name, desc in DESCRIPTORS.items():
        assert chem.match_property(name) == name
        for synonym in desc.synonyms:
            assert chem.match_property(synonym) == name, synonym


def test_format_descriptor():
    assert chem.format_descriptor("logp", 1.31012) == "1.310"
    assert chem.format_descriptor("mol_weight", 180.159) == "180.2"
    assert chem.format_descriptor("hbd", 1.0) == "1"
    assert chem.format_descriptor("qed", float("nan")) == "n/a"


# --- functional groups and tokens -------------------------------------------------------------


def names(groups):
    return [g.name for g in groups]


def test_nitro_group_owns_n_and_two_o():
    for smiles in (NITROBENZENE, "c1ccccc1N(=O)=O"):
        mol = Chem.MolFromSmiles(smiles)
        nitro = [g for g in chem.functional_groups(smiles) if g.name == "nitro"]
        assert len(nitro) == 1
        assert nitro[0].atoms == (6, 7, 8)
        assert sorted(mol.GetAtomWithIdx(i).GetSymbol() for i in nitro[0].atoms) == ["N", "O", "O"]
        assert "benzene" in names(chem.functional_groups(mol))


def test_specific_groups_hide_generic_ones():
    groups = chem.functional_groups(ASPIRIN)
    assert sorted(names(groups)) == ["benzene", "carboxylic_acid", "ester"]
    by_name = {g.name: g.atoms for g in groups}
    assert by_name["carboxylic_acid"] == (10, 11, 12)
    assert by_name["ester"] == (1, 2, 3)
    assert names(chem.functional_groups("CC(=O)C")) == ["ketone"]
    assert names(chem.functional_groups("CC(=O)N")) == ["amide"]
    assert names(chem.functional_groups("Oc1ccccc1")) == ["benzene", "phenolic_hydroxyl"]
    assert names(chem.functional_groups("CCO")) == ["hydroxyl"]
    assert names(chem.functional_groups("CCOCC")) == ["ether"]
    assert names(chem.functional_groups("CC#N")) == ["nitrile"]
    assert names(chem.functional_groups("CCN")) == ["primary_amine"]
    assert names(chem.functional_groups("Clc1ccncc1")) == ["pyridine", "chloro"]


def test_functional_group_is_frozen():
    group = chem.functional_groups("CCO")[0]
    with pytest.raises(AttributeError):
        group.name = "x"
    assert group == chem.FunctionalGroup("hydroxyl", (2,))


COVERAGE_CASES = [
    ASPIRIN,
    NITROBENZENE,
    "CCCC",  # no functional group
    "C",
    "CC(=O)[O-].[Na+]",  # salt
    "[Na+].[Cl-]",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",  # caffeine
    "OC[C@H]1O[C@H](O)[C@H](O)[C@@H](O)[C@@H]1O",
    "c1ccc2nc3ccccc3cc2c1",  # acridine: fused system not in the table
    "[Si](C)(C)(C)C",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
]


@pytest.mark.parametrize("smiles", COVERAGE_CASES)
def test_group_tokens_cover_every_atom_once(smiles):
    tokens = chem.group_tokens(smiles)
    atoms = [i for t in tokens for i in t.atoms]
    assert sorted(atoms) == list(range(Chem.MolFromSmiles(smiles).GetNumAtoms()))
    firsts = [t.atoms[0] for t in tokens]
    assert firsts == sorted(firsts)


def test_group_token_names():
    assert [(t.name, t.atoms, t.kind) for t in chem.group_tokens("CCCC")] == [
        ("alkyl_chain", (0, 1, 2, 3), "skeleton")
    ]
    assert [(t.name, t.atoms) for t in chem.group_tokens("CC(=O)[O-].[Na+]")] == [
        ("CH3", (0,)),
        ("carboxylic_acid", (1, 2, 3)),
        ("sodium_ion", (4,)),
    ]
    assert [t.name for t in chem.group_tokens(ASPIRIN)] == [
        "CH3",
        "ester",
        "benzene",
        "carboxylic_acid",
    ]


def test_group_ngrams():
    tokens = chem.group_tokens(ASPIRIN)
    grams = chem.group_ngrams(tokens, n_max=3)
    assert len(grams) == 4 + 3 + 2
    assert grams[0] == (("CH3",), frozenset({0}))
    assert (("ester", "benzene"), frozenset(range(1, 10))) in grams
    assert grams[-1] == (("ester", "benzene", "carboxylic_acid"), frozenset(range(1, 13)))
    assert chem.group_ngrams(tokens, n_max=1) == grams[:4]


# --- graphs -----------------------------------------------------------------------------------


def test_ethanol_graph():
    g = chem.smiles_to_graph("CCO")
    assert g.num_nodes == 3
    assert g.x.shape == (3, ATOM_FEATURE_DIM)
    assert g.edge_index.shape == (2, 4)
    assert g.edge_attr.shape == (4, BOND_FEATURE_DIM)
    assert sorted(map(tuple, g.edge_index.T.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    # one 1 per feature block
    assert (g.x.sum(1) == len(ATOM_FEATURE_BLOCKS)).all()
    assert g.smiles == "CCO"
    start = ATOM_FEATURE_BLOCKS["atomic_num"][0]
    assert g.x[2, start + 7] == 1  # oxygen: atomic number 8 -> slot 7


def test_graph_node_order_is_rdkit_order():
    smiles = "OC(=O)c1ccccc1N"  # non-canonical order on purpose
    g = chem.smiles_to_graph(smiles)
    mol = Chem.MolFromSmiles(smiles)
    assert g.z.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    assert {tuple(sorted(e)) for e in g.edge_index.T.tolist()} == bonds


def test_graph_without_bonds():
    g = chem.smiles_to_graph("[Na+].[Cl-]")
    assert g.num_nodes == 2
    assert tuple(g.edge_index.shape) == (2, 0)
    assert tuple(g.edge_attr.shape) == (0, BOND_FEATURE_DIM)


def test_graphs_from_smiles_labels_and_invalid():
    graphs = chem.graphs_from_smiles(
        ["CCO", "C1CC", "c1ccccc1"], y=[[1, 0], [0, 1], [np.nan, 1]], on_invalid="none"
    )
    assert graphs[1] is None
    assert graphs[0].y.tolist() == [[1.0, 0.0]]
    assert np.isnan(graphs[2].y[0, 0].item())
    with pytest.raises(InvalidSmilesError, match="position 1"):
        chem.graphs_from_smiles(["CCO", "C1CC"])
