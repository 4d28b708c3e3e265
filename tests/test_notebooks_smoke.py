"""Every notebook, executed top to bottom in the smoke profile through papermill."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


#: The smoke runs pin torch's kernel paths to AVX2, which every x86 machine here has (AVX2-only,
#: AVX512-BF16, AMX): ATen's vector kernels, MKL's (conditional numerical reproducibility) and
#: oneDNN's. Training amplifies last-bit differences between kernels, so without this the same
#: float32 smoke run gives other numbers on another CPU. (OPENBLAS_CORETYPE is left as the machine
#: sets it.)
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _run_smoke(path: Path, out: Path, monkeypatch, precision: str | None = None) -> None:
    import papermill as pm

    for key, value in PINNED_KERNELS.items():
        monkeypatch.setenv(key, value)
    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MOLKIT_RUN_DIR", str(out))
    monkeypatch.setenv(
        "MOLKIT_CACHE", os.environ.get("MOLKIT_CACHE", str(Path.home() / ".cache" / "molkit"))
    )
    pm.execute_notebook(
        str(path),
        str(out / path.name),
        parameters={"profile": "smoke", **({"precision": precision} if precision else {})},
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )


SNAPSHOTS = ROOT / "tests" / "snapshots" / "smoke"
#: metrics that measure this machine's speed, not the method: their rows must exist,
#: their values vary
TIMING = re.compile(r"second|per_s|/s\b|tokens_per|speedup|minutes")
KEYS = ["dataset", "method", "metric", "seed", "split", "note"]


def machine_key() -> dict[str, str]:
    """What decides float32 results beyond the pinned kernels: the CPU model and OpenBLAS's
    kernel."""
    from molkit.models.runtime import cpu_name

    return {"cpu_model": cpu_name(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "")}


def compare_with_snapshot(results: pd.DataFrame, stem: str) -> None:
    """The smoke results equal the committed snapshot (float32, pinned kernels): the same rows, the
    same values to rtol 1e-6, timings excepted. On the machine the snapshot was made on
    (``MACHINE.json``) a changed value fails; on another machine it skips with the reason (its
    kernels may round differently) after the rows were checked. MOLKIT_UPDATE_SNAPSHOTS=1 rewrites
    the snapshot instead: do that only when a change of numbers is meant, or before a refactor on a
    new machine."""
    path = SNAPSHOTS / f"{stem}.csv"
    if os.environ.get("MOLKIT_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        results.to_csv(path, index=False)
        (SNAPSHOTS / "MACHINE.json").write_text(json.dumps(machine_key(), indent=1) + "\n")
        return
    assert path.exists(), f"no smoke snapshot {path}: run with MOLKIT_UPDATE_SNAPSHOTS=1 once"
    expected = pd.read_csv(path, keep_default_na=False)
    got = results[list(expected.columns)].reset_index(drop=True)
    assert got[KEYS].astype(str).values.tolist() == expected[KEYS].astype(str).values.tolist(), (
        f"{stem}: the smoke run's rows differ from {path.name}"
    )
    timing = expected["metric"].astype(str).str.contains(TIMING)
    # an empty value is NaN (e.g. an FTS over zero valid molecules); NaN equals NaN below
    a = got.loc[~timing, "value"].replace("", np.nan).astype(float).to_numpy()
    b = expected.loc[~timing, "value"].replace("", np.nan).astype(float).to_numpy()
    bad = ~np.isclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True)
    if not bad.any():
        return
    report = (
        f"{stem}: values changed:\n" + got.loc[~timing][bad].assign(expected=b[bad]).to_string()
    )
    made_on = json.loads((SNAPSHOTS / "MACHINE.json").read_text())
    if made_on != machine_key():
        pytest.skip(
            f"snapshot made on {made_on}, this is {machine_key()}: values differ here, so the "
            f"exact check needs a snapshot of this machine (MOLKIT_UPDATE_SNAPSHOTS=1). {report}"
        )
    raise AssertionError(report)


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
    compare_with_snapshot(results, path.stem)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile_at_bf16(path, tmp_path, monkeypatch):
    """The bf16 path of every notebook (bf16 autocast for training and embedding, bf16 weights for
    generation), forced on any CPU (emulated where bf16 is not native, as on AVX2-only machines):
    `auto` resolves to it on AVX512-BF16 and AMX CPUs, where a default run met a numerical failure
    that the float32 smoke run could not (issue #39). Its values differ from the float32 snapshot
    in the last digits and, through greedy decoding, in whole answers; its rows do not."""
    _run_smoke(path, tmp_path, monkeypatch, precision="bf16")
    settings = json.loads((tmp_path / "settings" / f"{path.stem}.json").read_text())
    assert settings["precision"] == "bf16"
    results = pd.read_csv(tmp_path / "results" / f"{path.stem}.csv", keep_default_na=False)
    expected = pd.read_csv(SNAPSHOTS / f"{path.stem}.csv", keep_default_na=False)
    got = results[KEYS].astype(str).values.tolist()
    assert got == expected[KEYS].astype(str).values.tolist(), (
        f"{path.stem}: the bf16 smoke run's rows differ from the float32 snapshot's"
    )
    values = results["value"].replace("", np.nan).astype(float)
    reference = expected["value"].replace("", np.nan).astype(float)
    assert (values.isna() == reference.isna()).all(), "bf16 produced NaN where float32 did not"


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
