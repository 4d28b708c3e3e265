"""Every notebook, executed top to bottom in the smoke profile through papermill."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _run_smoke(path: Path, out: Path, monkeypatch) -> None:
    import papermill as pm

    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MOLKIT_RUN_DIR", str(out))
    monkeypatch.setenv("MOLKIT_CACHE", os.environ.get("MOLKIT_CACHE", str(Path.home() / ".cache" / "molkit")))
    pm.execute_notebook(str(path), str(out / path.name), parameters={"profile": "smoke"}, cwd=str(ROOT),
                        kernel_name="python3", progress_bar=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(path, tmp_path, monkeypatch):
    _run_smoke(path, tmp_path, monkeypatch)
    results = pd.read_csv(tmp_path / "results" / f"{path.stem}.csv", keep_default_na=False)
    assert len(results) > 0
    assert set(results["notebook"]) == {path.stem} and set(results["profile"]) == {"smoke"}
    assert results["value"].notna().all()
    assert list((tmp_path / "figures").glob(f"{path.stem}__*.png")), "the notebook saved no figure"
    settings = json.loads((tmp_path / "settings" / f"{path.stem}.json").read_text())
    assert settings["precision"] == "fp32"  # the suite's policy reaches the kernel
    executed = (tmp_path / path.name).read_text()
    assert "IProgress not found" not in executed and "DEBUG:" not in executed


@pytest.mark.slow
def test_a_smoke_rerun_reproduces_the_results_exactly(tmp_path, monkeypatch):
    """Same seeds, same precision: the same numbers, to the last digit (03_lardo trains GNNs, embeds
    texts and fine-tunes; it is the notebook whose bf16 re-run moved most)."""
    path = ROOT / "notebooks" / "03_lardo.ipynb"
    first, second = tmp_path / "first", tmp_path / "second"
    _run_smoke(path, first, monkeypatch)
    _run_smoke(path, second, monkeypatch)
    a = (first / "results" / f"{path.stem}.csv").read_bytes()
    b = (second / "results" / f"{path.stem}.csv").read_bytes()
    assert a == b, "a re-run of 03_lardo (smoke, float32) changed its results"
