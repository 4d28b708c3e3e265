"""Explanation datasets (molkit.data.explain): ground-truth atoms, loading, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from molkit.data.explain import (
    EXPLAIN_DATASETS,
    GROUND_TRUTH_TYPES,
    explain_split,
    explain_splits,
    ground_truth_prevalence,
    group_type_enrichment,
    load_explain_dataset,
    tu_ground_truth,
)


def test_tu_ground_truth_maps_group_types_to_atoms():
    # 4-nitrotoluene: 0 C, ring 1-4 and 8-9, 5 N, 6 O, 7 O;
    # Group-SELFIES labels benzene (0), nitro (1)
    smiles = "Cc1ccc([N+](=O)[O-])cc1"
    nitro_only = tu_ground_truth(smiles, [0, 1], types=(1,), attached_benzene=False)
    assert nitro_only.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    # Lamole's definition: the group and the benzene ring it is attached to
    with_ring = tu_ground_truth(smiles, [0, 1], types=(1,))
    assert with_ring.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    # benzene not annotated in the row: the nitro group only
    assert tu_ground_truth(smiles, [1], types=(1,)).tolist() == nitro_only.tolist()
    assert tu_ground_truth(smiles, [0], types=(1,)) is None  # nitro not annotated
    both = tu_ground_truth("OC(=O)c1ccc(O)cc1", [0, 4, 6], types=(4, 6), attached_benzene=False)
    assert both.tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]


def test_explain_split_is_stratified_and_keeps_a_given_test_part():
    df = pd.DataFrame({"label": [0, 1] * 20})
    split = explain_split(df, seed=0, fractions=(0.6, 0.2, 0.2))
    parts = [set(split[k]) for k in ("train", "valid", "test")]
    assert sum(map(len, parts)) == 40 and not (
        parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]
    )
    assert df["label"].iloc[split["test"]].mean() == 0.5
    assert all(np.array_equal(split[k], np.sort(split[k])) for k in split)
    df["split"] = ["test"] * 10 + ["train"] * 30
    split = explain_split(df, seed=3, fractions=(0.7, 0.1, 0.2))
    assert split["test"].tolist() == list(range(10))
    assert len(split["valid"]) == 4 and split["valid"].min() >= 10
    with pytest.raises(ValueError, match="summing to 1"):
        explain_split(df, 0, (0.5, 0.5, 0.5))


def test_explain_splits_test_every_molecule_once_stratified():
    df = pd.DataFrame({"label": [0] * 30 + [1] * 20, "split": ["train"] * 50})
    splits = explain_splits(df, folds=5, seed=1, valid_fraction=0.1)
    assert len(splits) == 5
    tested = np.concatenate([sp["test"] for sp in splits])
    assert sorted(tested.tolist()) == list(range(50))  # a partition: each molecule once
    for sp in splits:
        parts = [set(sp[k]) for k in ("train", "valid", "test")]
        assert sum(map(len, parts)) == 50 and not (parts[0] & parts[1] or parts[0] & parts[2])
        assert parts[1].isdisjoint(parts[2])
        assert df["label"].iloc[sp["test"]].mean() == pytest.approx(0.4)  # stratified
        assert len(sp["valid"]) == 5  # 10 % of the whole, out of the training folds
    assert [sp["test"].tolist() for sp in explain_splits(df, 5, seed=1)] == [
        sp["test"].tolist() for sp in splits
    ]  # seeded
    with pytest.raises(ValueError, match="smallest class has 20"):
        explain_splits(df, folds=21)
    with pytest.raises(ValueError, match="valid_fraction"):
        explain_splits(df, folds=2, valid_fraction=0.6)


def test_group_type_enrichment_of_mutag(mirror):
    table = group_type_enrichment("mutag").set_index("group type")
    nitro = table.loc["nitro"]  # every MUTAG molecule has one, in both classes
    assert (nitro["share of positives"], nitro["share of negatives"], nitro["ratio"]) == (1, 1, 1)
    assert table["ground truth"].tolist() == [t == "nitro" for t in table.index]
    with pytest.raises(ValueError, match="no group-type ground truth"):
        group_type_enrichment("liver")


def test_ground_truth_types_cover_the_tu_datasets():
    assert set(GROUND_TRUTH_TYPES) == set(EXPLAIN_DATASETS) - {"liver"}
    assert GROUND_TRUTH_TYPES["mutag"] == (1,)  # nitro


def test_load_explain_dataset_mutag_ground_truth(mirror):
    df = load_explain_dataset("mutag")
    assert df.attrs["n_classes"] == 2 and df.attrs["explain_class"] == 1
    assert df.attrs["name"] == "mutag"
    assert df["truth"].isna().equals(df["label"] == 0)  # only mutagens carry a ground truth (nitro)
    first = df.iloc[0]  # a nitro-phenanthrene: the nitro group and the ring it sits on are marked
    assert first["truth"].sum() == 3 + 6 and len(first["truth"]) == 17
    assert not df["smiles"].duplicated().any()
    with pytest.raises(ValueError, match="choose one of"):
        load_explain_dataset("bbbp")


def test_load_explain_dataset_subset_is_seeded_and_stratified(mirror):
    full = load_explain_dataset("mutag")
    a = load_explain_dataset("mutag", max_molecules=40, seed=1)
    b = load_explain_dataset("mutag", max_molecules=40, seed=1)
    assert len(a) == 40 and a["smiles"].tolist() == b["smiles"].tolist()
    assert set(a["smiles"]) <= set(full["smiles"])
    assert abs(a["label"].mean() - full["label"].mean()) < 0.05


def test_ground_truth_prevalence_mutag(mirror):
    # every MUTAG molecule carries a nitro group, in both classes
    row = ground_truth_prevalence("mutag")
    assert row["positives with a ground-truth group"] == 1.0
    assert row["negatives with a ground-truth group"] == 1.0
    with pytest.raises(ValueError, match="no group-type ground truth"):
        ground_truth_prevalence("liver")
