"""molkit.data.pairs: unordered pair keys, de-duplication, drug-cold splits and leak checks."""

import numpy as np
import pandas as pd
import pytest

from molkit.data.pairs import (
    PAIR_SPLITS,
    check_cold_split,
    deduplicate_pairs,
    drug_cold_split,
    make_pair_split,
    pair_key,
    split_overlap,
)


def _pairs(n_drugs=30, n_pairs=200, seed=0):
    rng = np.random.default_rng(seed)
    drugs = [f"D{i}" for i in range(n_drugs)]
    rows = set()
    while len(rows) < n_pairs:
        a, b = rng.choice(n_drugs, 2, replace=False)
        rows.add(pair_key(drugs[a], drugs[b]))
    frame = pd.DataFrame(sorted(rows), columns=["smiles_1", "smiles_2"])
    frame["label"] = rng.integers(0, 2, len(frame)).astype(float)
    return frame


def test_pair_key_is_unordered():
    assert pair_key("B", "A") == pair_key("A", "B") == ("A", "B")


def test_deduplicate_pairs_merges_swaps_and_drops_conflicts():
    df = pd.DataFrame(
        {
            "smiles_1": ["A", "B", "A", "C", "D", "C"],
            "smiles_2": ["B", "A", "C", "A", "E", "D"],
            "label": [1.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        }
    )
    out, report = deduplicate_pairs(df)
    # A-B twice with one label -> kept once; A-C with opposite labels -> dropped; D-E, C-D kept
    kept = sorted(map(tuple, out[["smiles_1", "smiles_2"]].to_numpy()))
    assert kept == [("A", "B"), ("C", "D"), ("D", "E")]
    assert report == {
        "rows": 6, "unique_pairs": 4, "duplicate_rows": 2, "conflicting_pairs": 1, "kept": 3
    }  # fmt: skip
    with pytest.raises(KeyError, match="pair columns"):
        deduplicate_pairs(df, cols=("a", "b"))


def test_drug_cold_split_is_cold_seeded_and_checked():
    df = _pairs()
    split = drug_cold_split(df, (0.8, 0.1, 0.1), seed=0)
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(df)))
    check_cold_split(df, split)  # does not raise
    train_mols = set(df.smiles_1.iloc[split["train"]]) | set(df.smiles_2.iloc[split["train"]])
    for i in split["test"]:
        assert df.smiles_1[i] not in train_mols or df.smiles_2[i] not in train_mols
    again = drug_cold_split(df, (0.8, 0.1, 0.1), seed=0)
    other = drug_cold_split(df, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not all(np.array_equal(split[k], other[k]) for k in split)
    # a random row split of the same pairs is not cold, and the check says so
    with pytest.raises(ValueError, match="not cold"):
        check_cold_split(df, make_pair_split(df, "random", seed=0))
    # both molecules unseen: straddling pairs are left out, and the stricter check holds
    both = make_pair_split(df, "drug_cold_both", seed=0)
    check_cold_split(df, both, unseen="both")
    assert 0 < sum(len(v) for v in both.values()) < len(df) and len(both["test"]) > 0
    with pytest.raises(ValueError, match="one molecule in train"):
        check_cold_split(df, split, unseen="both")
    # duplicated (swapped) pairs are refused
    swap = {"smiles_1": "smiles_2", "smiles_2": "smiles_1"}
    swapped = pd.concat([df, df.iloc[:1].rename(columns=swap)])
    with pytest.raises(ValueError, match="deduplicate_pairs"):
        drug_cold_split(swapped.reset_index(drop=True))
    with pytest.raises(ValueError, match="fractions"):
        drug_cold_split(df, (0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="unseen"):
        drug_cold_split(df, unseen="neither")


def test_split_overlap_counts_known_leaks():
    df = pd.DataFrame(
        {
            "smiles_1": ["A", "B", "A", "B", "A", "X"],
            "smiles_2": ["B", "A", "C", "A", "C", "Y"],
            "label": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
        }
    )
    split = {
        "train": np.array([0, 1, 2]),
        "valid": np.array([], dtype=int),
        "test": np.array([3, 4, 5]),
    }
    report = split_overlap(df, split).set_index("part")
    assert report.loc["train", "repeated_pairs"] == 1
    assert report.loc["train", "repeated_conflicting"] == 1
    test = report.loc["test"]
    assert test["pairs_in_train"] == 2  # B-A and A-C
    assert (
        test["opposite_label_in_train"] == 2
    )  # A-B has label 0 in train; A-C has label 1 in train
    assert test["new_molecule"] == 1 and test["both_molecules_in_train"] == 2
    assert test["positive_rate"] == pytest.approx(2 / 3)


def test_make_pair_split_by_name():
    df = _pairs(n_drugs=12, n_pairs=50)
    split = make_pair_split(df, "grouped", seed=3)
    parts = {k: set(df.smiles_1.iloc[v]) for k, v in split.items()}
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])
    df["split"] = ["train"] * 40 + ["valid"] * 5 + ["test"] * 5
    upstream = make_pair_split(df, "upstream")
    assert list(upstream["test"]) == list(range(45, 50))
    with pytest.raises(ValueError, match="upstream"):
        make_pair_split(df.drop(columns="split"), "upstream")
    with pytest.raises(ValueError, match="unknown split"):
        make_pair_split(df, "scaffold")
    assert set(PAIR_SPLITS) == {"upstream", "random", "grouped", "drug_cold", "drug_cold_both"}


def test_straddling_pairs_are_the_one_drug_unseen_pairs_of_a_both_unseen_split():
    from molkit.data.pairs import deduplicate_pairs, drug_cold_split, straddling_pairs

    rng = np.random.default_rng(0)
    drugs = [f"{'C' * (i + 1)}O" for i in range(30)]
    pairs = {tuple(sorted(rng.choice(drugs, 2, replace=False))) for _ in range(300)}
    df = pd.DataFrame(sorted(pairs), columns=["smiles_1", "smiles_2"]).assign(label=1.0)
    df, _ = deduplicate_pairs(df)
    split = drug_cold_split(df, seed=0, unseen="both")
    idx = straddling_pairs(df, split)
    train = set(df.smiles_1.iloc[split["train"]]) | set(df.smiles_2.iloc[split["train"]])
    test = set(df.smiles_1.iloc[split["test"]]) | set(df.smiles_2.iloc[split["test"]])
    assert len(idx) > 0 and not set(idx) & {i for part in split.values() for i in part}
    for a, b in zip(df.smiles_1.iloc[idx], df.smiles_2.iloc[idx], strict=True):
        assert (a in train and b in test) or (a in test and b in train)
    expected = [
        i for i, (a, b) in enumerate(zip(df.smiles_1, df.smiles_2, strict=True))
        if (a in train and b in test) or (a in test and b in train)
    ]  # fmt: skip
    assert idx.tolist() == expected
    with pytest.raises(ValueError, match="drug_cold_both"):
        straddling_pairs(df, drug_cold_split(df, seed=0, unseen="one"))
    with pytest.raises(KeyError, match="no part 'holdout'"):
        straddling_pairs(df, split, parts=("train", "holdout"))


def test_deduplicate_measurements_averages_repeats_of_ordered_pairs_and_context():
    from molkit.data.pairs import deduplicate_measurements

    df = pd.DataFrame(
        {
            "smiles_1": ["A", "A", "O", "A", "A", "B"],
            "smiles_2": ["O", "O", "A", "O", "X", "O"],
            "temperature": [298.0, 298.0, 298.0, 310.0, 298.0, 298.0],
            "logS": [1.0, 2.0, 5.0, 7.0, 3.0, -1.0],
            "note": ["first", "second", "", "", "", ""],
        }
    )
    out, report = deduplicate_measurements(df, "logS", ("temperature",))
    # (A, O, 298) twice -> one row, the mean, the first row's other columns; (O, A) is another
    # measurement (a solute in a solvent is not its swap) and so is (A, O) at 310 K
    assert out.logS.tolist() == [1.5, 5.0, 7.0, 3.0, -1.0]
    assert out.note.iloc[0] == "first" and len(out) == 5
    assert report == {"rows": 6, "kept": 5, "duplicate_rows": 1, "repeated_keys": 1,
                      "max_spread": 1.0}  # fmt: skip
    without_context, report = deduplicate_measurements(df, "logS")
    assert len(without_context) == 4 and report["repeated_keys"] == 1
    assert without_context.logS.iloc[0] == pytest.approx((1 + 2 + 7) / 3)
    assert report["max_spread"] == 6.0
    unique, report = deduplicate_measurements(df.iloc[[0, 4]], "logS", ("temperature",))
    assert len(unique) == 2 and report["duplicate_rows"] == 0 and report["max_spread"] == 0.0
    with pytest.raises(KeyError, match="pressure"):
        deduplicate_measurements(df, "logS", ("pressure",))


def test_unseen_split_keeps_every_second_molecule_in_one_part():
    from molkit.data.pairs import unseen_split

    rng = np.random.default_rng(0)
    solvents = [f"S{i}" for i in range(20)]
    df = pd.DataFrame({"smiles_1": [f"M{i}" for i in range(400)],
                       "smiles_2": rng.choice(solvents, 400)})  # fmt: skip
    split = unseen_split(df, seed=0)
    parts = {k: set(df.smiles_2.iloc[v]) for k, v in split.items()}
    assert not parts["train"] & parts["valid"] and not parts["train"] & parts["test"]
    assert not parts["valid"] & parts["test"]
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(400))
    assert len(split["test"]) > 0 and len(split["valid"]) > 0
    assert {k: v.tolist() for k, v in unseen_split(df, seed=0).items()} == {
        k: v.tolist() for k, v in split.items()
    }
    other = unseen_split(df, seed=1)
    assert parts["test"] != set(df.smiles_2.iloc[other["test"]])
    by_solute = unseen_split(df, "smiles_1", seed=0)  # any column: here every solute is unique
    assert len(by_solute["test"]) == 40
    with pytest.raises(KeyError, match="solvent_smiles"):
        unseen_split(df, "solvent_smiles")
