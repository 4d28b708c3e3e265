"""The papermill pipeline: injection of the profile, atomic commit of one notebook's outputs,
failures."""

import json

import nbformat
import pandas as pd
import pytest

from molkit.run import NotebookFailed, remove_stale_staging, resolve_notebooks, run_notebook


def _write_notebook(tmp_path, stem: str, params: str, cells: list[str]) -> None:
    """A project folder with ``notebooks/<stem>.ipynb``: a parameters cell, then ``cells``."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "notebooks" / f"{stem}.ipynb")


def _make_project(tmp_path, fail: bool = False):
    body = (
        "import molkit, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "cfg = molkit.setup(molkit.RunSettings(profile, seed), notebook='50_tiny')\n"
        "molkit.record('toy', 'm', 'score', value)\n"
        "fig, ax = plt.subplots(); ax.plot([1, 2]); molkit.savefig(fig, 'line')\n"
    )
    cells = [body, "raise RuntimeError('boom')"] if fail else [body]
    _write_notebook(tmp_path, "50_tiny", "profile = 'default'\nseed = 0\nvalue = 1.0", cells)
    (tmp_path / "notebooks" / "51_other.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook())
    )


@pytest.mark.slow
def test_run_commits_outputs_and_failure_keeps_previous_record(tmp_path):
    _make_project(tmp_path)
    record = tmp_path / "papermill_runs" / "smoke"
    (record / "results").mkdir(parents=True)
    (record / "results" / "51_other.csv").write_text("untouched\n")
    run = run_notebook("50_tiny", "smoke", tmp_path, parameters={"value": 2.5})
    assert run.status == "ok" and run.wall_time_s > 0 and run.peak_memory_mb > 0
    rows = pd.read_csv(record / "results" / "50_tiny.csv")
    assert rows[["notebook", "profile", "value"]].values.tolist() == [["50_tiny", "smoke", 2.5]]
    assert (record / "figures" / "50_tiny__line.png").exists()
    executed = nbformat.read(record / "50_tiny.ipynb", as_version=4)
    assert any(
        'profile = "smoke"' in "".join(c.source) for c in executed.cells
    )  # papermill injected it
    meta = json.loads((record / "run.json").read_text())
    assert meta["notebooks"]["50_tiny"]["status"] == "ok"
    assert meta["machine"]["cpu_count"] >= 1 and "torch" in meta["packages"]
    assert (record / "results" / "51_other.csv").read_text() == "untouched\n"
    assert not list(record.glob(".staging-*"))

    # now a failing version: the record above must survive untouched
    _make_project(tmp_path, fail=True)
    with pytest.raises(NotebookFailed, match=r"50_tiny failed .*cell .*RuntimeError: boom"):
        run_notebook("50_tiny", "smoke", tmp_path, parameters={"value": 9.0})
    rows = pd.read_csv(record / "results" / "50_tiny.csv")
    assert rows["value"].tolist() == [2.5]
    assert json.loads((record / "run.json").read_text())["notebooks"]["50_tiny"]["status"] == "ok"
    assert (record / "failed" / "50_tiny.ipynb").exists()
    assert not list(record.glob(".staging-*"))


def test_resolve_notebooks(tmp_path):
    _make_project(tmp_path)
    assert resolve_notebooks(None, tmp_path) == ["50_tiny", "51_other"]
    assert resolve_notebooks(["50"], tmp_path) == ["50_tiny"]
    assert resolve_notebooks(["tiny"], tmp_path) == ["50_tiny"]
    with pytest.raises(ValueError, match="available: 50_tiny, 51_other"):
        resolve_notebooks(["99_nope"], tmp_path)


def test_stale_staging_of_dead_runs_is_removed(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # that process has exited
    stale = tmp_path / f".staging-04_moltc-{dead_pid}"
    live = tmp_path / f".staging-02_icma-{os.getpid()}"
    for folder in (stale, live):
        (folder / "results").mkdir(parents=True)
    (tmp_path / "01_molex.ipynb").write_text("{}")
    assert remove_stale_staging(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and (tmp_path / "01_molex.ipynb").exists()


def test_git_commit_of_a_clone_and_its_dirty_flag(tmp_path):
    """In a fresh clone the record names HEAD, clean; a code change makes it dirty, a change to the
    record does not (and git never runs a notebook filter over the executed record)."""
    import shutil
    import subprocess
    from pathlib import Path

    from molkit.provenance import git_commit

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(clone) == {"commit": head, "dirty": False}
    (clone / "papermill_runs" / "default" / "run.json").write_text("{}\n")
    assert git_commit(clone)["dirty"] is False  # the record is not code
    (clone / "molkit" / "notebook.py").write_text(
        (clone / "molkit" / "notebook.py").read_text() + "\n# edited\n"
    )
    assert git_commit(clone) == {"commit": head, "dirty": True}
    assert git_commit(tmp_path / "nowhere") == {"commit": "unknown", "dirty": None}


def _ranks_project(tmp_path, fail_rank: int | None = None):
    """A notebook that sums each process's rank + 1 over the process group of its kernels."""
    body = (
        "import os, torch, molkit\n"
        "from molkit.models.lm import data_parallel\n"
        "cfg = molkit.setup(molkit.RunSettings(profile, seed), notebook='52_ranks')\n"
        "acc = data_parallel()\n"
        "rank = int(os.environ.get('RANK', '0'))\n"
        f"if rank == {fail_rank}:\n"
        "    raise RuntimeError('rank boom')\n"
        "total = acc.reduce(torch.tensor([rank + 1.0]), 'sum') if acc is not None else 1.0\n"
        "molkit.record('toy', 'm', 'processes', acc.num_processes if acc is not None else 1)\n"
        "molkit.record('toy', 'm', 'rank sum', float(total))\n"
        "molkit.record('toy', 'm', 'rank', rank)\n"
    )
    _write_notebook(tmp_path, "52_ranks", "profile = 'default'\nseed = 0", [body])


@pytest.mark.slow
def test_a_notebook_in_two_processes_forms_one_group_and_rank_0_writes_the_record(tmp_path):
    _ranks_project(tmp_path)
    record = tmp_path / "papermill_runs" / "smoke"
    run = run_notebook("52_ranks", "smoke", tmp_path, processes=2)
    assert run.status == "ok" and run.processes == 2
    rows = pd.read_csv(record / "results" / "52_ranks.csv").set_index("metric").value
    assert rows.to_dict() == {"processes": 2, "rank sum": 3.0, "rank": 0}  # 1 + 2, from rank 0
    assert json.loads((record / "run.json").read_text())["notebooks"]["52_ranks"]["processes"] == 2
    assert not list(record.glob(".staging-*"))
    # a process that fails stops the one waiting for it in the collective; the record survives
    _ranks_project(tmp_path, fail_rank=1)
    with pytest.raises(NotebookFailed, match=r"process 1 of 2: cell .*RuntimeError: rank boom"):
        run_notebook("52_ranks", "smoke", tmp_path, processes=2)
    assert pd.read_csv(record / "results" / "52_ranks.csv").value.tolist() == [2, 3.0, 0]
    assert not list(record.glob(".staging-*"))
    with pytest.raises(ValueError, match="processes must be 1 or more"):
        run_notebook("52_ranks", "smoke", tmp_path, processes=0)
