"""Your own CSV wherever a dataset name is accepted (molkit.data.user_csv, `molkit data check`)."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molkit.cli import main
from molkit.data import (
    DataCheckError,
    DataError,
    DatasetSpec,
    check_csv,
    get_spec,
    is_csv_path,
    load_dataset,
    scaffold_split,
)
from molkit.data.user_csv import MIN_ROWS

FIXTURES = Path(__file__).parent / "data" / "user_csv"
GOOD = FIXTURES / "good_classification.csv"
SMILES = ["CCO", "c1ccccc1", "CCCO", "Cc1ccccc1", "CC(C)O", "Oc1ccccc1", "CCCCO", "Nc1ccccc1",
          "OCCO", "OC(=O)c1ccccc1", "CC(=O)O", "c1ccncc1", "CCC(=O)O", "c1ccc2ccccc2c1",
          "CC(C)=O", "Clc1ccccc1", "CCOCC", "Cc1ccc(C)cc1", "C1CCCCC1", "O=Cc1ccccc1",
          "OC1CCCCC1", "c1ccoc1", "C1CCOC1", "c1ccsc1", "CCN"]  # fmt: skip


def load(path, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(path, **kw)


def write(tmp_path: Path, text: str, name: str = "mine.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def binary_rows(n: int = 24, label=lambda i: i % 2) -> str:
    return "".join(f"{SMILES[i % len(SMILES)]},{label(i)}\n" for i in range(n))


def fatal(path, **kw) -> str:
    with pytest.raises(DataCheckError) as info:
        load(path, **kw)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    assert not info.value.report.ok
    return str(info.value)


# ---------------------------------------------------------------- schema and inference


def test_good_classification_file_reads_in_the_property_schema():
    df = load(GOOD)
    a = df.attrs
    assert (a["kind"], a["task"], a["targets"]) == ("property", "classification", ["Aromatic"])
    assert list(df.columns) == [
        "smiles",
        "smiles_raw",
        "Aromatic",
        "name",
    ]  # SMILES, name: any case
    assert len(df) == 40 and df["smiles"].notna().all()
    assert pd.api.types.is_float_dtype(df["Aromatic"])
    assert sorted(df["Aromatic"].unique()) == [0.0, 1.0] and a["classes"] == {
        "Aromatic": ["0", "1"]
    }
    assert a["dropped"] == {} and a["n_invalid_rows"] == 0 and a["invalid"] == []
    assert a["name"] == "good_classification.csv" and len(a["sha256"]) == 64
    assert "usable: 40 of 40 rows" in a["report"]
    # canonical SMILES beside the file's own (the atom order of explanations follows smiles_raw)
    assert df.loc[df["name"] == "aspirin", "smiles"].item() == "CC(=O)Oc1ccccc1C(=O)O"


def test_good_file_is_big_enough_for_a_smoke_run():
    df = load(GOOD)
    split = scaffold_split(df["smiles"].tolist(), (0.8, 0.1, 0.1))
    assert all(len(v) for v in split.values())
    assert (
        df["Aromatic"].value_counts().min() >= 16
    )  # MoleX smoke: 2 stratified folds, 16 LLM items


def test_regression_pair_and_text_files():
    reg = load(FIXTURES / "good_regression.csv")
    assert (reg.attrs["kind"], reg.attrs["task"], reg.attrs["targets"]) == (
        "property", "regression", ["logp"],
    )  # fmt: skip
    assert list(reg.columns) == ["smiles", "smiles_raw", "logp"] and len(reg) == 30
    pairs = load(FIXTURES / "good_pairs.csv")
    assert (pairs.attrs["kind"], pairs.attrs["task"]) == ("pair", "regression")
    assert pairs.attrs["targets"] == ["logS"] and pairs.attrs["context"] == [
        "temperature",
        "solvent",
    ]
    assert list(pairs.columns) == ["id_1", "id_2", "smiles_1", "smiles_2", "smiles_raw_1",
                                   "smiles_raw_2", "logS", "temperature", "solvent"]  # fmt: skip
    assert pd.api.types.is_float_dtype(pairs["temperature"]) and pairs["solvent"].iloc[0] == "water"
    assert (pairs["id_1"] == pairs["smiles_raw_1"]).all()  # no names: the SMILES, as upstream
    text = load(FIXTURES / "good_text.csv")
    assert (text.attrs["kind"], text.attrs["task"], text.attrs["targets"]) == (
        "text", "generation", [],
    )  # fmt: skip
    assert list(text.columns) == ["id", "smiles", "smiles_raw", "text", "split"]
    assert text["id"].iloc[0] == "2"  # the file line
    assert set(text["split"]) == {"train", "valid", "test"}  # seeded, the same every time
    assert text["split"].tolist() == load(FIXTURES / "good_text.csv")["split"].tolist()
    assert "seeded random 80/10/10 split" in text.attrs["report"]


@pytest.mark.parametrize(
    ("name", "fixture"),
    [("bbbp", "good_classification.csv"), ("freesolv-pairs", "good_pairs.csv"),
     ("chebi20", "good_text.csv")],
)  # fmt: skip
def test_frames_have_the_registered_loaders_schema(mirror, name, fixture):
    registered, mine = load(name), load(FIXTURES / fixture)
    assert registered.attrs["kind"] == mine.attrs["kind"]
    assert set(registered.attrs) <= set(mine.attrs)
    schema = [c for c in registered.columns if c not in registered.attrs["targets"]]
    schema = [c for c in schema if c not in ("split",) or mine.attrs["kind"] == "text"]
    assert [c for c in mine.columns if c in schema] == schema
    for column in schema:
        assert registered[column].dtype == mine[column].dtype, column
    for target in mine.attrs["targets"]:
        assert mine[target].dtype == registered[registered.attrs["targets"][0]].dtype


def test_overrides_kind_task_targets(tmp_path):
    df = load(GOOD, task="regression")
    assert df.attrs["task"] == "regression" and "classes" not in df.attrs["report"]
    rows = "".join(f"{s},{i % 2},{i * 0.5}\n" for i, s in enumerate(SMILES))
    path = write(tmp_path, "smiles,toxic,logp\n" + rows)
    assert load(path).attrs["task"] == "regression"  # one continuous column: regression
    one = load(path, targets=["TOXIC"])
    assert one.attrs["targets"] == ["toxic"] and one.attrs["task"] == "classification"
    assert "logp" in one.columns  # other columns stay, under their own names
    spec = get_spec(path, targets="logp")
    assert isinstance(spec, DatasetSpec) and (spec.kind, spec.task) == ("property", "regression")
    assert spec.targets == ("logp",) and spec.extra["sha256"] == one.attrs["sha256"]
    assert spec.reader(spec).attrs["targets"] == ["logp"]
    text = write(tmp_path, "smiles,text\n" + "".join(f"{s},a molecule {s}\n" for s in SMILES))
    assert "not a label" in fatal(text, kind="property")  # text is no label
    assert "missing 'smiles_1', 'smiles_2'" in fatal(text, kind="pair")
    assert "wrong task" in fatal(GOOD, task="generation")


def test_columns_match_case_insensitively_and_labels_may_be_words(tmp_path):
    rows = "".join(
        f"{s},{SMILES[-1 - i]},{'Active' if i % 3 else 'inactive'},{300 + i}\n"
        for i, s in enumerate(SMILES)
    )
    df = load(write(tmp_path, "Smiles_1,SMILES_2,Label,Temperature\n" + rows))
    assert (df.attrs["kind"], df.attrs["task"], df.attrs["targets"]) == (
        "pair", "classification", ["Label"],
    )  # fmt: skip
    assert df.attrs["classes"] == {"Label": ["inactive", "Active"]}  # active is class 1
    assert df["Label"].tolist()[:3] == [0.0, 1.0, 1.0]
    assert df.attrs["context"] == ["Temperature"]
    minus = write(tmp_path, "smiles,y\n" + binary_rows(label=lambda i: 2 * (i % 2) - 1), "pm.csv")
    coded = load(minus)
    assert coded.attrs["classes"] == {"y": ["-1", "1"]} and set(coded["y"]) == {0.0, 1.0}
    assert "coded 0..1" in coded.attrs["report"]


def test_registered_names_and_paths_are_told_apart(tmp_path):
    assert not is_csv_path("bbbp") and not is_csv_path("BBBP ")
    assert is_csv_path("bbbp.csv") and is_csv_path(tmp_path / "x.txt")
    plain = write(tmp_path, "smiles,y\n", "mydata")
    assert is_csv_path(str(plain)) and not is_csv_path(str(tmp_path / "nothing_here"))
    with pytest.raises(KeyError, match="Did you mean 'bbbp'"):
        get_spec("bbpb")
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        load_dataset("bbbp.csv")
    with pytest.raises(ValueError, match="kind apply to CSV files only"):
        load_dataset("bbbp", kind="pair")


# ---------------------------------------------------------------- bad input, explained


def test_invalid_smiles_are_dropped_with_lines_and_reasons():
    with pytest.warns(UserWarning, match=r"3 of 30 rows dropped \(3 invalid SMILES\)"):
        df = load_dataset(FIXTURES / "bad_invalid_smiles.csv")
    assert len(df) == 27 and df.attrs["dropped"] == {"invalid SMILES": 3}
    assert [r["line"] for r in df.attrs["invalid"]] == [5, 9, 13]
    assert df.attrs["invalid"][0]["row"] == 3 and df.attrs["invalid"][0]["column"] == "smiles_raw"
    report = df.attrs["report"]
    assert "invalid SMILES (3 rows on lines 5, 9, 13)" in report
    assert "line 5 'C1CC' (unclosed ring" in report and "'Xyz'" in report
    assert "usable: 27 of 30 rows (3 dropped: 3 invalid SMILES)" in report
    kept = load(FIXTURES / "bad_invalid_smiles.csv", on_invalid="keep")
    assert len(kept) == 30 and kept["smiles"].isna().sum() == 3
    assert "invalid SMILES" in fatal(FIXTURES / "bad_invalid_smiles.csv", on_invalid="raise")


def test_empty_labels_are_dropped_and_partial_labels_kept(tmp_path):
    df = load(FIXTURES / "bad_empty_labels.csv")
    assert len(df) == 28 and df.attrs["dropped"] == {"empty label": 2}
    assert "empty label (2 rows on lines 4, 7)" in df.attrs["report"]
    assert "line 4 'CCCO'" in df.attrs["report"]
    rows = "".join(f"{s},{i % 2},{'' if i < 3 else i % 3 % 2}\n" for i, s in enumerate(SMILES))
    two = load(write(tmp_path, "smiles,a,b\n" + rows))
    assert len(two) == 25 and two["b"].isna().sum() == 3  # NaN = missing label, as in Tox21
    assert "3 rows miss some of their labels" in two.attrs["report"]
    words = write(tmp_path, "smiles,y\n" + binary_rows(24, lambda i: "oops" if i == 5 else i * 0.3))
    report = load(words).attrs["report"]
    assert "non-numeric label (1 row on line 7)" in report and "'oops'" in report


def test_conflicting_duplicates_are_dropped_consistent_ones_kept():
    df = load(FIXTURES / "bad_conflicting_duplicates.csv")
    assert df.attrs["dropped"] == {"conflicting duplicate": 2} and len(df) == 31
    assert "CCO" not in set(df["smiles"])  # ethanol (CCO, OCC) has labels 0 and 1: both dropped
    report = df.attrs["report"]
    assert "conflicting duplicate (2 rows on lines 2, 32)" in report
    assert "'CCO' on lines 2, 32: active 0 / 1" in report
    assert "duplicate molecule (4 rows on lines 3, 16, 33, 34)" in report  # kept, with a warning
    assert (df["smiles"] == "c1ccccc1").sum() == 2


def test_pair_duplicates_differ_by_context(tmp_path):
    rows = "".join(f"{s},O,{i * 0.1:.1f},298\n" for i, s in enumerate(SMILES[:22]))
    rows += "CCO,O,5.0,350\nCCO,O,7.0,298\n"  # another temperature: no conflict; same: conflict
    df = load(write(tmp_path, "smiles_1,smiles_2,logS,temperature\n" + rows))
    assert df.attrs["dropped"] == {"conflicting duplicate": 2}
    assert df.loc[df["smiles_1"] == "CCO", "temperature"].tolist() == [350.0]


def test_single_class_is_fatal():
    message = fatal(FIXTURES / "bad_single_class.csv")
    assert "single class: column 'active' has only the class '1' in its 25 usable rows" in message


def test_too_few_rows_is_fatal_and_min_rows_adjustable():
    message = fatal(FIXTURES / "bad_too_few_rows.csv")
    assert "8 usable rows of 8" in message and f"min_rows={MIN_ROWS}" in message
    assert len(load(FIXTURES / "bad_too_few_rows.csv", min_rows=5)) == 8


def test_not_utf8_names_the_lines_and_bytes():
    message = fatal(FIXTURES / "bad_not_utf8.csv")
    assert "not UTF-8 (lines 2, 7)" in message and "byte 0xe9" in message
    assert "'CSV UTF-8'" in message


def test_binary_and_single_column_files_are_not_csvs():
    assert "gzip-compressed, not comma-separated text" in fatal(FIXTURES / "bad_binary.csv")
    message = fatal(FIXTURES / "bad_single_column.csv")
    assert "missing columns" in message and "found the columns ['CCO']" in message
    assert "single column" in message


def test_missing_columns_name_what_was_found_and_expected(tmp_path):
    message = fatal(FIXTURES / "bad_missing_columns.csv")
    assert "missing 'smiles': expected 'smiles'" in message
    assert "found the columns ['smile', 'activity']" in message
    assert "Rename 'smile' to 'smiles'?" in message
    only = tmp_path / "only.csv"
    only.write_text("SMILES,id\n" + "".join(f"{s},{i}\n" for i, s in enumerate(SMILES)))
    assert "missing a label column: expected 'smiles' + one or more label columns" in fatal(only)


def test_every_problem_in_one_message(tmp_path):
    body = "smiles,active,split\n" + "".join(f"{s},1,train\n" for s in SMILES[:6])
    body += "C1CC,1,train\nCCO,1,train,extra\nCCN,1,holdout\n"
    path = tmp_path / "messy.csv"
    path.write_bytes(body.encode() + "CCCl,1,tést\n".encode("latin-1"))
    message = fatal(path)
    for reason in ("not UTF-8 (line 11)", "invalid SMILES (1 row on line 8)",
                   "malformed row (1 row on line 9)", "single class", "unknown split",
                   "too few rows"):  # fmt: skip
        assert reason in message, reason
    assert "line 10 'holdout'" in message
    assert message.count("FATAL") == 4


def test_other_files_that_are_no_csv(tmp_path):
    assert "the file is empty" in fatal(write(tmp_path, "\n\n", "empty.csv"))
    (tmp_path / "u16.csv").write_bytes("smiles,y\nCCO,1\n".encode("utf-16"))
    assert "UTF-16" in fatal(tmp_path / "u16.csv")
    quote = write(tmp_path, 'smiles,y\n"CCO,1\nCCN,0\n', "quote.csv")
    assert "unclosed quote" in fatal(quote)
    same = write(tmp_path, "smiles,SMILES,y\n" + "CCO,CCO,1\n" * 3, "same.csv")
    assert "'smiles' and 'SMILES' clash" in fatal(same)


def test_semicolons_and_an_unnamed_index_are_handled(tmp_path):
    rows = "".join(f"{i};{s};{i % 2}\n" for i, s in enumerate(SMILES))
    df = load(write(tmp_path, ";smiles;active\n" + rows))
    assert df.attrs["targets"] == ["active"] and len(df) == 25
    assert "delimiter is ';'" in df.attrs["report"] and "no name: ignored" in df.attrs["report"]


# ---------------------------------------------------------------- read only


def test_the_users_folder_is_left_unchanged(tmp_path, capsys):
    folder = tmp_path / "my data"
    folder.mkdir()
    for name in ("good_classification.csv", "bad_invalid_smiles.csv", "bad_single_class.csv"):
        shutil.copy(FIXTURES / name, folder / name)

    def snapshot():
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}

    before = snapshot()
    load(folder / "good_classification.csv")
    load(folder / "bad_invalid_smiles.csv")
    get_spec(folder / "good_classification.csv")
    check_csv(folder / "bad_single_class.csv")
    main(["data", "check", str(folder / "bad_invalid_smiles.csv")])
    assert snapshot() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my data"]


# ---------------------------------------------------------------- molkit data check


def test_cli_check_usable_file_exits_0(capsys):
    assert main(["data", "check", str(GOOD)]) == 0
    out = capsys.readouterr().out
    assert "read as: property (single molecule), task classification, targets Aromatic" in out
    assert "usable: 40 of 40 rows" in out
    assert main(["data", "check", str(FIXTURES / "bad_invalid_smiles.csv")]) == 0
    out = capsys.readouterr().out
    assert "dropped: invalid SMILES (3 rows on lines 5, 9, 13)" in out and "usable: 27" in out


def test_cli_check_fatal_file_exits_2(capsys):
    assert main(["data", "check", str(FIXTURES / "bad_single_class.csv")]) == 2
    out = capsys.readouterr().out
    assert "FATAL: single class" in out and "not usable: 1 fatal problem(s)" in out
    assert main(["data", "check", str(FIXTURES / "bad_too_few_rows.csv"), "--min-rows", "5"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(GOOD), "--task", "regression"]) == 0
    assert "task regression" in capsys.readouterr().out
    assert main(["data", "check", str(GOOD), "--kind", "pair"]) == 2
    assert "missing 'smiles_1', 'smiles_2'" in capsys.readouterr().out
    assert main(["data", "check", "no_such_file.csv"]) == 2
    assert "no such CSV file" in capsys.readouterr().err


def test_cli_info_and_fetch_take_a_csv(capsys):
    assert main(["data", "info", str(FIXTURES / "good_pairs.csv")]) == 0
    assert "kind: pair, task: regression" in capsys.readouterr().out
    assert main(["data", "info", str(FIXTURES / "bad_single_class.csv")]) == 2
    assert "single class" in capsys.readouterr().err
    assert main(["data", "fetch", str(GOOD)]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    assert np.isfinite(load(GOOD)["Aromatic"]).all()


#: Every bad file in tests/data/user_csv, what `molkit data check` must say about it, and its exit
#: status (0: usable, the unusable rows dropped; 2: not usable).
EXPLAINED = {
    "bad_binary.csv": ("gzip-compressed, not comma-separated text", 2),
    "bad_conflicting_duplicates.csv": ("conflicting duplicate (2 rows on lines 2, 32)", 0),
    "bad_empty_labels.csv": ("empty label (2 rows on lines 4, 7)", 0),
    "bad_invalid_smiles.csv": ("invalid SMILES (3 rows on lines 5, 9, 13)", 0),
    "bad_missing_columns.csv": ("missing 'smiles'", 2),
    "bad_not_utf8.csv": ("not UTF-8 (lines 2, 7)", 2),
    "bad_single_class.csv": ("has only the class '1'", 2),
    "bad_single_column.csv": ("missing 'smiles'", 2),
    "bad_too_few_rows.csv": ("needs at least min_rows=20", 2),
}


def test_every_bad_file_is_listed():
    assert sorted(EXPLAINED) == sorted(p.name for p in FIXTURES.glob("bad_*.csv"))


@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_data_check_explains_each_bad_file(name, capsys):
    phrase, status = EXPLAINED[name]
    assert main(["data", "check", str(FIXTURES / name)]) == status
    out = capsys.readouterr()
    assert phrase in out.out + out.err
