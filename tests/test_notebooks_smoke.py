"""Every notebook, executed top to bottom in the smoke profile through papermill."""

import os
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(path, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("MOLKIT_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("MOLKIT_CACHE", os.environ.get("MOLKIT_CACHE", str(Path.home() / ".cache" / "molkit")))
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"profile": "smoke"}, cwd=str(ROOT),
                        kernel_name="python3", progress_bar=False)
    results = pd.read_csv(tmp_path / "results" / f"{path.stem}.csv", keep_default_na=False)
    assert len(results) > 0
    assert set(results["notebook"]) == {path.stem} and set(results["profile"]) == {"smoke"}
    assert results["value"].notna().all()
    assert list((tmp_path / "figures").glob(f"{path.stem}__*.png")), "the notebook saved no figure"
