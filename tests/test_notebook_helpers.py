import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import molkit


def test_setup_reads_profile_and_seed_from_the_settings(run_dir):
    from molkit.methods.molex import Settings

    settings = Settings.for_profile("smoke", seed=3)
    cfg = molkit.setup(settings, notebook="99_test")
    assert (cfg.profile, cfg.seed, cfg.settings) == ("smoke", 3, settings)  # one home: settings
    assert cfg.run_dir == run_dir and (run_dir / "results").is_dir()
    a = np.random.rand()
    molkit.setup(molkit.RunSettings("smoke", 3), notebook="99_test")
    assert np.random.rand() == a  # seeded
    with pytest.raises(ValueError, match="unknown profile"):
        molkit.setup(molkit.RunSettings("fast"))
    with pytest.raises(TypeError):
        molkit.setup(profile="smoke")  # the profile enters through the settings only


def test_record_writes_tidy_rows(run_dir):
    molkit.setup(molkit.RunSettings("default", 7), notebook="99_test")
    molkit.record("bbbp", "logreg", "roc_auc", 0.9)
    molkit.record("bbbp", "logreg", "roc_auc", 0.8, seed=1, split="scaffold")
    df = pd.read_csv(run_dir / "results" / "99_test.csv", keep_default_na=False)
    assert list(df.columns) == molkit.notebook.RESULT_COLUMNS
    assert df["seed"].tolist() == [7, 1] and df["value"].tolist() == [0.9, 0.8]
    assert set(df["notebook"]) == {"99_test"} and set(df["profile"]) == {"default"}
    assert len(molkit.results()) == 2
    # a fresh setup of the same notebook starts its results afresh
    molkit.setup(molkit.RunSettings("default", 7), notebook="99_test")
    assert len(molkit.results()) == 0


def test_savefig_names_file_by_notebook(run_dir):
    molkit.setup(molkit.RunSettings("smoke"), notebook="99_test")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert molkit.savefig(fig, "roc curve") is None  # a cell ending with it shows no path
    path = molkit.notebook.figure_path("roc curve")
    assert path == run_dir / "figures" / "99_test__roc_curve.png"
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_import_molkit_is_light():
    import subprocess
    import sys

    code = (
        "import sys, molkit, molkit.data; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_show_table_keeps_every_claim_whole(monkeypatch):
    """A claim longer than pandas' 50-character cell limit is shown whole, in the HTML that
    Jupyter and the record's website render, with the Results columns only."""
    import IPython.display

    from molkit.methods.experiment import SHOWN_CLAIM_COLUMNS, UNDECIDED, Claim, Results

    text = "mol2cap: ICMA beats direct fine-tuning of the same LM on the same training pairs"
    res = Results(claims=[Claim("P", text, "+0.1", "rougeL", 0.12345, -0.2, 0.4, UNDECIDED, 100)])
    table = res.claims_table()
    assert tuple(table.columns) == SHOWN_CLAIM_COLUMNS and table.loc[0, "ours"] == 0.123
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda f: shown.append(f._repr_html_()))
    molkit.show_table(table)
    assert text in shown[0]
    assert text not in table._repr_html_()  # what a bare display cuts
