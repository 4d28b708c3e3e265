"""The papermill run pipeline behind ``molkit run``.

Each notebook runs in a staging folder inside ``papermill_runs/<profile>/`` (``MOLKIT_RUN_DIR`` points the
notebook's :func:`molkit.record` / :func:`molkit.savefig` there). Only when it succeeds are its executed
notebook, ``results/<stem>.csv`` and ``figures/<stem>__*.png`` swapped into the record and its entry in
``run.json`` updated; other notebooks' files are never touched. A failure names the notebook and the cell,
keeps the partial executed notebook in ``papermill_runs/<profile>/failed/`` and leaves the record as it was.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from molkit._io import atomic_write_text
from molkit.notebook import PROFILES, RUN_DIR_ENV

PACKAGES = (
    "molkit", "torch", "transformers", "tokenizers", "peft", "accelerate", "torch_geometric", "rdkit",
    "numpy", "pandas", "scikit-learn", "matplotlib", "seaborn", "papermill", "bm25s", "nltk", "rouge-score",
)


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


@dataclass
class NotebookRun:
    notebook: str
    profile: str
    status: str
    wall_time_s: float
    peak_memory_mb: float
    started: str
    finished: str
    git_commit: str
    error: str = ""


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``notebooks/`` and ``pyproject.toml`` (searched upwards from ``start`` or cwd)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "notebooks").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError(f"no molkit project (notebooks/ + pyproject.toml) at or above {here}; run from the checkout")


def available_notebooks(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def resolve_notebooks(names: list[str] | None, root: Path) -> list[str]:
    """Notebook stems for ``names`` (full stems, ``02``, ``02_icma.ipynb`` or ``icma``); all when empty."""
    known = available_notebooks(root)
    if not names:
        return known
    out = []
    for name in names:
        stem = Path(name).stem
        matches = [k for k in known if k == stem or k.split("_", 1)[0] == stem or k.split("_", 1)[-1] == stem]
        if len(matches) != 1:
            raise ValueError(f"unknown notebook {name!r}; available: {', '.join(known)}")
        out.append(matches[0])
    return out


def git_commit(root: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, object]:
    import psutil

    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": "none",
    }
    try:
        import torch

        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


class _PeakMemory:
    """Polls the resident memory of this process's children (the kernel) in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _commit(staging: Path, record: Path, stem: str) -> None:
    """Swap one notebook's outputs from ``staging`` into ``record`` (each file by an atomic rename)."""
    (record / "results").mkdir(parents=True, exist_ok=True)
    (record / "figures").mkdir(parents=True, exist_ok=True)
    new_figures = {p.name for p in (staging / "figures").glob(f"{stem}__*.png")}
    for p in (staging / "figures").glob(f"{stem}__*.png"):
        os.replace(p, record / "figures" / p.name)
    for old in (record / "figures").glob(f"{stem}__*.png"):
        if old.name not in new_figures:
            old.unlink()
    results = staging / "results" / f"{stem}.csv"
    if results.exists():
        os.replace(results, record / "results" / f"{stem}.csv")
    else:
        (record / "results" / f"{stem}.csv").unlink(missing_ok=True)
    extra = staging / "artifacts"
    if extra.is_dir():
        target = record / "artifacts" / stem
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(extra, target)
    os.replace(staging / f"{stem}.ipynb", record / f"{stem}.ipynb")


def _update_run_json(record: Path, profile: str, run: NotebookRun) -> None:
    path = record / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("profile", profile)
    data.setdefault("notebooks", {})
    data["notebooks"][run.notebook] = asdict(run)
    data["updated"] = run.finished
    data["packages"] = package_versions()
    data["machine"] = machine_info()
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_stale_staging(record: Path) -> list[Path]:
    """Delete the staging folders (``.staging-<notebook>-<pid>``) of runs whose process no longer exists
    (a run killed by a signal or a lost session cannot clean up after itself); returns what was removed.
    Folders of live processes (a run in progress) are left alone."""
    import psutil

    removed = []
    for path in sorted(record.glob(".staging-*-*")):
        pid = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run_notebook(stem: str, profile: str, root: Path, parameters: dict | None = None, log_output: bool = False) -> NotebookRun:
    """Execute ``notebooks/<stem>.ipynb`` with papermill in ``profile`` and commit it to the record."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    record = root / "papermill_runs" / profile
    remove_stale_staging(record)  # a missing record folder holds none
    staging = record / f".staging-{stem}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "results").mkdir(parents=True)
    (staging / "figures").mkdir(parents=True)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(staging)
    error = ""
    try:
        with _PeakMemory() as mem:
            pm.execute_notebook(
                str(root / "notebooks" / f"{stem}.ipynb"),
                str(staging / f"{stem}.ipynb"),
                parameters={"profile": profile, **(parameters or {})},
                cwd=str(root),
                kernel_name="python3",
                progress_bar=sys.stderr.isatty(),
                log_output=log_output,
            )
    except PapermillExecutionError as exc:
        error = f"cell {exc.exec_count} (index {exc.cell_index}) raised {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, notebook missing, ...
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
    run = NotebookRun(
        notebook=stem,
        profile=profile,
        status="failed" if error else "ok",
        wall_time_s=round(time.perf_counter() - t0, 1),
        peak_memory_mb=round(mem.peak / 2**20, 1),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=git_commit(root),
        error=error,
    )
    if error:
        failed = record / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        partial = staging / f"{stem}.ipynb"
        if partial.exists():
            os.replace(partial, failed / f"{stem}.ipynb")
        shutil.rmtree(staging, ignore_errors=True)
        raise NotebookFailed(
            f"{stem} failed in profile {profile!r}: {error}. The partial executed notebook is "
            f"{failed / (stem + '.ipynb')}; papermill_runs/{profile}/ still holds the previous record."
        )
    _commit(staging, record, stem)
    shutil.rmtree(staging, ignore_errors=True)
    (record / "failed" / f"{stem}.ipynb").unlink(missing_ok=True)
    _update_run_json(record, profile, run)
    return run


def run_notebooks(names: list[str] | None = None, profile: str = "default", root: Path | None = None,
                  parameters: dict | None = None, keep_going: bool = False) -> list[NotebookRun]:
    """Run several notebooks in order; stops at the first failure unless ``keep_going``."""
    root = root or project_root()
    runs, failures = [], []
    for stem in resolve_notebooks(names, root):
        print(f"[molkit run] {stem} (profile {profile}) ...", flush=True)
        try:
            run = run_notebook(stem, profile, root, parameters)
        except NotebookFailed as exc:
            print(f"[molkit run] FAILED: {exc}", file=sys.stderr, flush=True)
            failures.append(str(exc))
            if not keep_going:
                break
            continue
        print(f"[molkit run] {stem}: ok in {run.wall_time_s:.0f} s, peak memory {run.peak_memory_mb:.0f} MB", flush=True)
        runs.append(run)
    if failures:
        raise NotebookFailed("; ".join(failures))
    return runs
