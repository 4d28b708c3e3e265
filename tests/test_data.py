import csv
import time

import numpy as np
import pandas as pd
import pytest

from molkit.data import (
    DataHashError,
    DataUnavailableError,
    fetch_file,
    get_spec,
    list_datasets,
    load_dataset,
    predefined_split,
    random_split,
    registered_files,
    scaffold_split,
)
from molkit.data import registry as reg
from molkit.data.datasets import _SPECS


def test_every_manifest_file_is_registered_with_its_hash(mirror):
    files = registered_files()
    with open(mirror / "MANIFEST.csv", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert manifest
    for row in manifest:
        entry = files[row["file"]]
        assert entry.sha256 == row["sha256"]
        assert entry.url == row["upstream_url"]
        assert entry.mirrored


def test_upstream_only_files_are_registered():
    files = registered_files()
    assert "chebi20/train.txt" in files and not files["chebi20/train.txt"].mirrored
    assert files["chebi20/train.txt"].url.startswith(
        "https://raw.githubusercontent.com/blender-nlp/MolT5/"
    )


def test_every_manifest_file_resolves_from_the_mirror(mirror):
    for key, entry in registered_files().items():
        if entry.mirrored:
            assert fetch_file(key) == mirror / key


@pytest.mark.parametrize("name", sorted(n for n in _SPECS if n != "chebi20-full"))
def test_every_registered_dataset_loads(mirror, name):
    df = load_dataset(name)
    spec = get_spec(name)
    assert len(df) > 100
    assert df.attrs["kind"] == spec.kind and df.attrs["citation"] and df.attrs["licence"]
    if spec.kind == "pair":
        assert {"smiles_1", "smiles_2", "id_1", "id_2"} <= set(df.columns)
        assert df["smiles_1"].notna().all() and df["smiles_2"].notna().all()
    else:
        assert df["smiles"].notna().all()
    for target in df.attrs["targets"]:
        assert pd.api.types.is_float_dtype(df[target])


def test_property_schema_and_upstream_split(mirror):
    liver = load_dataset("liver")
    assert len(liver) == 587
    assert liver["split"].value_counts().to_dict() == {"train": 469, "test": 118}
    assert set(liver["label"].unique()) == {0.0, 1.0, 2.0}
    assert (liver["n_alerts"] > 0).sum() == 187
    chebi = load_dataset("chebi20")
    assert chebi["split"].value_counts().to_dict() == {"test": 3300, "valid": 3301}
    assert list(chebi.columns[:2]) == ["id", "smiles"]
    tox21 = load_dataset("tox21")
    assert len(tox21.attrs["targets"]) == 12 and tox21[tox21.attrs["targets"]].isna().any().any()


def test_every_row_reaches_the_loader(mirror):
    # the official LarDo CSV reader dropped the first data row; ours keeps all of them
    raw = pd.read_csv(mirror / "moleculenet" / "bace.csv")
    df = load_dataset("bace", on_invalid="keep")
    assert len(df) == len(raw)
    assert df["smiles_raw"].iloc[0] == raw["smiles"].iloc[0]


def test_invalid_smiles_are_reported_not_silently_dropped(mirror):
    with pytest.warns(UserWarning, match="cannot parse"):
        df = load_dataset("chromophore-abs")
    report = df.attrs["invalid"]
    assert df.attrs["n_invalid_rows"] >= 19  # 'gas' solvents at least
    assert any(r["smiles"] == "gas" for r in report)
    assert all(r["reason"] for r in report)
    kept = load_dataset("chromophore-abs", on_invalid="keep")
    assert len(kept) == len(df) + df.attrs["n_invalid_rows"]
    with pytest.raises(ValueError, match="on_invalid='drop'"):
        load_dataset("chromophore-abs", on_invalid="raise")


def test_unknown_dataset_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean 'bbbp'|Did you mean 'bbbp'"):
        get_spec("bbpb")
    assert "bbbp" in set(list_datasets()["name"])


def test_hash_mismatch_names_file_and_fix(tmp_path, monkeypatch):
    (tmp_path / "moleculenet").mkdir()
    (tmp_path / "moleculenet" / "bbbp.csv").write_text("smiles,bbbp\nCCO,1\n")
    monkeypatch.setenv("MOLKIT_DATA_MIRROR", str(tmp_path))
    with pytest.raises(DataHashError, match="sha256 mismatch for moleculenet/bbbp.csv"):
        fetch_file("moleculenet/bbbp.csv")


def test_offline_without_mirror_fails_fast_with_url_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MOLKIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MOLKIT_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(reg, "DOWNLOAD_TIMEOUT_S", 3)
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as info:
        fetch_file("moleculenet/bbbp.csv")
    assert time.perf_counter() - t0 < 30
    message = str(info.value)
    assert "https://raw.githubusercontent.com/cxy0206/ChemSpaceAlign" in message
    assert "MOLKIT_DATA_MIRROR" in message
    monkeypatch.setenv("MOLKIT_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="MOLKIT_OFFLINE"):
        fetch_file("moleculenet/bbbp.csv")


def test_random_split_is_seeded_and_complete():
    a, b = random_split(100, seed=1), random_split(100, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert [len(a[k]) for k in ("train", "valid", "test")] == [80, 10, 10]
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(10, (0.5, 0.2, 0.2))


def test_scaffold_split_keeps_scaffolds_apart_and_is_deterministic():
    smiles = [
        "c1ccccc1CC",
        "c1ccccc1CCC",
        "c1ccccc1O",
        "C1CCCCC1N",
        "C1CCCCC1O",
        "CCO",
        "CCN",
        "c1ccncc1C",
        "C1CC1C",
        "c1ccoc1",
    ]
    split = scaffold_split(smiles, (0.6, 0.2, 0.2))
    again = scaffold_split(list(smiles), (0.6, 0.2, 0.2))
    assert all(np.array_equal(split[k], again[k]) for k in split)
    from molkit.data import murcko_scaffold

    parts = {k: {murcko_scaffold(smiles[i]) for i in v} for k, v in split.items()}
    assert (
        not (parts["train"] & parts["valid"])
        and not (parts["train"] & parts["test"])
        and not (parts["valid"] & parts["test"])
    )
    # the biggest scaffold set (benzene, 3 molecules) goes to train first
    assert set(split["train"]) >= {0, 1, 2}


def test_predefined_split_and_valid_carving():
    labels = ["train"] * 8 + ["test"] * 2
    split = predefined_split(labels, valid_from_train=0.25, seed=0)
    assert (
        len(split["valid"]) == 2 and len(split["train"]) == 6 and split["test"].tolist() == [8, 9]
    )
    with pytest.raises(ValueError, match="train/valid/test"):
        predefined_split(["train", "holdout"])


def test_balanced_scaffold_split_varies_with_seed_but_keeps_scaffolds_apart():
    from molkit.data import murcko_scaffold

    smiles = (
        [f"c1ccccc1{'C' * k}" for k in range(1, 6)]
        + [f"C1CCCCC1{'C' * k}" for k in range(1, 4)]
        + [
            "c1ccncc1",
            "c1ccoc1",
            "c1ccsc1",
            "C1CC1",
            "C1CCC1",
            "C1CCCC1",
            "c1cnccn1",
            "c1ccc2ccccc2c1",
            "CCO",
            "CCCN",
        ]
    )
    a = scaffold_split(smiles, (0.6, 0.2, 0.2), balanced=True, seed=0)
    b = scaffold_split(smiles, (0.6, 0.2, 0.2), balanced=True, seed=0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    others = [scaffold_split(smiles, (0.6, 0.2, 0.2), balanced=True, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(a["test"], o["test"]) for o in others)
    for split in [a, *others]:
        parts = {k: {murcko_scaffold(smiles[i]) for i in v} for k, v in split.items()}
        assert not (parts["train"] & parts["test"]) and not (parts["valid"] & parts["test"])
