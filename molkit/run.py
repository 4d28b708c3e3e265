"""The papermill run pipeline behind ``molkit run``.

Each notebook runs in a staging folder inside ``papermill_runs/<profile>/`` (``MOLKIT_RUN_DIR``
points the notebook's :func:`molkit.record` / :func:`molkit.savefig` there). Only when it succeeds
are its executed notebook, ``results/<stem>.csv`` and ``figures/<stem>__*.png`` swapped into the
record and its entry in ``run.json`` updated; other notebooks' files are never touched. A failure
names the notebook and the cell, keeps the partial executed notebook in
``papermill_runs/<profile>/failed/`` and leaves the record as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from molkit._io import atomic_write_text
from molkit._profiles import PROFILES
from molkit._progress import HEADLESS_ENV
from molkit.notebook import RUN_DIR_ENV
from molkit.provenance import busy_warning, git_commit, load_average, machine_info, package_versions
from molkit.record_check import record_problems


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


@dataclass
class NotebookRun:
    """One notebook's entry in ``run.json``. ``git_commit`` is the commit that ran and
    ``git_dirty`` whether the code (`molkit.provenance.CODE_PATHS`) differed from it; ``precision``,
    ``requested_precision`` and ``torch_threads`` come from the notebook's `molkit.setup`;
    ``load_average_start`` / ``_end`` are the machine's 1/5/15-minute load averages."""

    notebook: str
    profile: str
    status: str
    wall_time_s: float
    peak_memory_mb: float
    started: str
    finished: str
    git_commit: str
    git_dirty: bool | None = None
    precision: str = "unknown"
    requested_precision: str = "unknown"
    torch_threads: int | None = None
    device: str = "unknown"
    cpu_model: str = "unknown"
    cpu_flags: dict[str, bool] = field(default_factory=dict)
    load_average_start: list[float] = field(default_factory=list)
    load_average_end: list[float] = field(default_factory=list)
    error: str = ""
    processes: int = 1


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``notebooks/`` and ``pyproject.toml`` (searched upwards from ``start`` or
    cwd)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "notebooks").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no molkit project (notebooks/ + pyproject.toml) at or above {here}; run from the checkout"
    )


def available_notebooks(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def resolve_notebooks(names: list[str] | None, root: Path) -> list[str]:
    """Notebook stems for ``names`` (full stems, ``02``, ``02_icma.ipynb`` or ``icma``); all when
    empty."""
    known = available_notebooks(root)
    if not names:
        return known
    out = []
    for name in names:
        stem = Path(name).stem
        matches = [
            k
            for k in known
            if k == stem or k.split("_", 1)[0] == stem or k.split("_", 1)[-1] == stem
        ]
        if len(matches) != 1:
            raise ValueError(f"unknown notebook {name!r}; available: {', '.join(known)}")
        out.append(matches[0])
    return out


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
    """Swap one notebook's outputs from ``staging`` into ``record`` (each file by an atomic
    rename)."""
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
    claims = staging / "claims" / f"{stem}.csv"
    (record / "claims").mkdir(parents=True, exist_ok=True)
    if claims.exists():
        os.replace(claims, record / "claims" / f"{stem}.csv")
    else:
        (record / "claims" / f"{stem}.csv").unlink(missing_ok=True)
    extra = staging / "artifacts"
    if extra.is_dir():
        target = record / "artifacts" / stem
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(extra, target)
    os.replace(staging / f"{stem}.ipynb", record / f"{stem}.ipynb")


def _update_run_json(record: Path, profile: str, run: NotebookRun, machine: dict) -> None:
    path = record / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("profile", profile)
    data.setdefault("notebooks", {})
    data["notebooks"][run.notebook] = asdict(run)
    data["updated"] = run.finished
    data["packages"] = package_versions()
    data["machine"] = machine
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _fmt(value: object, digits: int = 3) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if number != number else f"{number:+.{digits}f}"


def _count(value: object) -> str:
    """A count column (seeds) as written: ``3`` rather than ``3.0``; text (``3/1``) unchanged."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "" if number != number else (str(int(number)) if number.is_integer() else str(value))


def _cell(value) -> str:
    """A Markdown table cell: pipes escaped and line breaks flattened, so no text can shift the
    columns; angle brackets escaped, so a placeholder such as ``<MOLECULE>`` is shown, not read as
    an HTML tag."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text.replace("<", "\\<").replace(">", "\\>")


def _changed_since(root: Path, commit: str, path: str) -> str | None:
    """The newest commit after ``commit`` that changed ``path`` (repository-relative), as a short
    hash; None when none did or git cannot tell (no repository, an unknown commit)."""
    import subprocess

    commit = commit.removesuffix("-dirty")
    if not commit:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h", f"{commit}..HEAD", "--", path],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _recorded_run(record: Path, notebook: str) -> dict:
    try:
        return json.loads((record / "run.json").read_text())["notebooks"].get(notebook) or {}
    except (OSError, ValueError, KeyError):
        return {}


def stale_since(record: Path, notebook: str) -> str | None:
    """The newest commit (short hash) that changed ``notebooks/<notebook>.ipynb`` after the commit
    its record in ``record`` was made at (``run.json``); None when the record is current, has no
    entry, or git cannot tell."""
    return _stale(record, notebook, _recorded_run(record, notebook))


def _stale(record: Path, notebook: str, run: dict) -> str | None:
    commit = str(run.get("git_commit") or "")
    return _changed_since(record.resolve().parents[1], commit, f"notebooks/{notebook}.ipynb")


def record_provenance(record: Path, notebook: str) -> str:
    """One line on where a notebook's claim rows come from (``run.json``: its commit, date,
    precision, wall time), and a warning when its notebook has changed in git since that commit:
    the rows then describe an older version of the notebook until it is run again."""
    run = _recorded_run(record, notebook)
    if not run:
        return ""
    commit = str(run.get("git_commit") or "")
    parts = [f"commit `{commit[:10]}`" if commit else "", str(run.get("finished", ""))[:10],
             str(run.get("precision") or ""),
             f"{run['wall_time_s'] / 60:.1f} min" if run.get("wall_time_s") else ""]  # fmt: skip
    line = f"Recorded by `{notebook}`: " + ", ".join(p for p in parts if p) + "."
    newer = _stale(record, notebook, run)  # run.json read once
    if newer:
        stem = notebook.split("_")[0]
        line += (
            f" **Stale:** `notebooks/{notebook}.ipynb` has changed since (commit `{newer}`); "
            f"these rows describe the older notebook until `make run NOTEBOOKS={stem}` records it "
            "again."
        )
    return line


def write_claims_md(record: Path, profile: str) -> Path:
    """``CLAIMS.md`` of a record: every notebook's claim rows (``claims/<notebook>.csv``), one table
    per paper, each under the line that says which run made it (`record_provenance`: commit,
    date, precision, and whether the notebook has changed since). Each verdict was computed from a
    paired interval when the notebook ran; nothing here is typed by hand. Written atomically;
    returns its path."""
    import pandas as pd

    frames = [
        pd.read_csv(p, keep_default_na=False) for p in sorted((record / "claims").glob("*.csv"))
    ]
    frames = [f for f in frames if len(f)]
    lines = [
        f"# Which of the papers' claims hold at the `{profile}` profile's scale?",
        "",
        "Generated by `molkit run` from the claim rows the notebooks computed; nothing here is "
        "typed by hand.",
        "*ours* is the measured difference (method minus its comparison, on the same test items), "
        "*interval* its 95 %",
        "paired-bootstrap interval over the test items and, where an arm was trained with several "
        "seeds, over the",
        "seeds too (*seeds*: training seeds of the method / of its comparison; 1 means one "
        "training run). A claim",
        "**holds** when the interval excludes zero on the claimed side, is **contradicted** when "
        "it excludes zero on",
        "the other side, and is **undecided** otherwise (the test set cannot tell).",
        "",
        "**Gates.** Every learned arm is first compared with its trivial baseline on the same "
        "items (the class prior,",
        "the training mean, chance, the per-drug prior, a random pool caption): those rows are the "
        "*gates*. A",
        "comparison between models is judged only when every arm in it passed its gate; "
        "otherwise it reads",
        "**not judged**, with the failed gate named, because a difference between models that "
        "learned nothing",
        "says nothing about the method.",
        "",
        "*paper vs ours*: where the paper states the size of a difference, whether that size "
        "lies inside, above or",
        "below our interval. The paper's figure is at the paper's scale; ours at this profile's.",
        "",
    ]
    if not frames:
        lines.append("No notebook of this record has recorded claims yet.")
    else:
        claims = pd.concat(frames, ignore_index=True)
        for paper, group in claims.groupby("paper", sort=False):
            lines += [f"## {_cell(paper)}", ""]
            for notebook in dict.fromkeys(group["notebook"]):
                provenance = record_provenance(record, str(notebook))
                lines += [provenance, ""] if provenance else []
            lines += [
                "| claim | verdict | ours | interval | metric | paper | paper vs ours | n | seeds "
                "| kind | notebook | detail |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for row in group.to_dict("records"):
                cells = [
                    row["claim"], f"**{row['verdict']}**", _fmt(row["ours"]),
                    f"[{_fmt(row['low'])}, {_fmt(row['high'])}]", row["metric"],
                    row["paper_figure"], row.get("paper_vs_ours", ""), row["n"],
                    _count(row.get("seeds", "")), row.get("kind", ""), f"`{row['notebook']}`",
                    row.get("detail", ""),
                ]  # fmt: skip
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
    path = record / "CLAIMS.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def remove_stale_staging(record: Path) -> list[Path]:
    """Delete the staging folders (``.staging-<notebook>-<pid>``) of runs whose process no longer
    exists (a run killed by a signal or a lost session cannot clean up after itself); returns what
    was removed. Folders of live processes (a run in progress) are left alone."""
    import psutil

    removed = []
    for path in sorted(record.glob(".staging-*-*")):
        pid = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _papermill_error(exc: Exception) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return f"cell {exc.exec_count} (index {exc.cell_index}) raised {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"  # kernel died, notebook missing, ...


def _execute_rank(spec: str) -> int:
    """One process of a multi-process run (`run_notebook` with ``processes`` > 1): papermill
    executes the notebook of ``spec`` (JSON: ``notebook``, ``output``, ``parameters``, ``cwd``,
    ``log_output``) in a kernel that inherits this process's rank variables; an error goes to
    ``output`` + ``.error``. Returns the exit status."""
    import papermill as pm

    job = json.loads(spec)
    try:
        pm.execute_notebook(
            job["notebook"], job["output"], parameters=job["parameters"], cwd=job["cwd"],
            kernel_name="python3", progress_bar=False, log_output=job["log_output"],
        )  # fmt: skip
    except Exception as exc:
        atomic_write_text(Path(job["output"] + ".error"), _papermill_error(exc))
        return 1
    return 0


def _kill_tree(pid: int) -> None:
    """Kill a process and every process below it (papermill and its kernel)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(family, timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _execute_processes(
    notebook: Path, staging: Path, parameters: dict, root: Path, processes: int, log_output: bool
) -> str:
    """Run one notebook in ``processes`` kernels that form one process group (the variables
    ``torchrun`` sets: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
    so `molkit.models.lm.data_parallel` shards training and generation over them while
    every other cell runs in each. Rank 0 writes into ``staging`` (the record); the others into
    ``staging/ranks/<rank>``, removed afterwards. The first process to fail stops the rest (a
    process waiting in a collective would wait for ever). Returns the errors of the processes that
    failed, the first seen first (a peer's failure can break another's collective), or ""."""
    import subprocess

    port, procs, outputs = _free_port(), [], []
    (staging / "ranks").mkdir(exist_ok=True)
    for rank in range(processes):
        run_dir = staging if rank == 0 else staging / "ranks" / str(rank)
        (run_dir / "results").mkdir(parents=True, exist_ok=True)
        output = run_dir / notebook.name
        env = {
            **os.environ, RUN_DIR_ENV: str(run_dir), HEADLESS_ENV: "1", "RANK": str(rank),
            "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }  # fmt: skip
        spec = json.dumps({
            "notebook": str(notebook), "output": str(output), "parameters": parameters,
            "cwd": str(root), "log_output": log_output,
        })  # fmt: skip
        code = (
            "import sys; from molkit.run import _execute_rank; sys.exit(_execute_rank(sys.argv[1]))"
        )
        with open(staging / "ranks" / f"{rank}.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", code, spec], env=env, cwd=root, stdout=log,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
        outputs.append(output)
    try:
        failed: list[int] = []  # in the order they were seen to fail
        while not failed and any(p.poll() is None for p in procs):
            failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            time.sleep(0.2)
        failed += [r for r, p in enumerate(procs) if p.poll() not in (None, 0) and r not in failed]
    finally:  # the rest of a failed (or interrupted) run, kernels included
        for p in procs:
            if p.poll() is None:
                _kill_tree(p.pid)
                p.wait()
    reasons = []
    for rank in failed:  # a peer's failure can break another's collective: every one is named
        error_file = Path(str(outputs[rank]) + ".error")
        if error_file.exists():
            reason = error_file.read_text()
        else:
            reason = f"exited with status {procs[rank].returncode} (see {staging}/ranks/{rank}.log)"
        reasons.append(f"process {rank} of {processes}: {reason}")
    return "; ".join(reasons)


def run_notebook(
    stem: str,
    profile: str,
    root: Path,
    parameters: dict | None = None,
    log_output: bool = False,
    processes: int = 1,
) -> NotebookRun:
    """Execute ``notebooks/<stem>.ipynb`` with papermill in ``profile`` and commit it to the
    record. ``processes`` > 1 runs it in that many kernels of one process group (one per GPU;
    `_execute_processes`): the LM layer's training and generation are data-parallel across them
    (`molkit.models.lm.data_parallel`), rank 0's outputs become the record."""
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if processes < 1:
        raise ValueError(f"processes must be 1 or more, not {processes}")
    record = root / "papermill_runs" / profile
    remove_stale_staging(record)  # a missing record folder holds none
    staging = record / f".staging-{stem}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "results").mkdir(parents=True)
    (staging / "figures").mkdir(parents=True)
    warning = busy_warning(f"{stem} ({profile})")
    if warning:
        print(f"[molkit run] {warning}", file=sys.stderr, flush=True)
    load_start = load_average()
    code = git_commit(root)  # the code that runs, taken before the run
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    saved_env = {key: os.environ.get(key) for key in (RUN_DIR_ENV, HEADLESS_ENV)}
    os.environ[RUN_DIR_ENV] = str(staging)
    os.environ[HEADLESS_ENV] = "1"  # progress bars print one line each into the executed notebook
    error = ""
    notebook = root / "notebooks" / f"{stem}.ipynb"
    params = {"profile": profile, **(parameters or {})}
    try:
        with _PeakMemory() as mem:
            if processes > 1:
                error = _execute_processes(notebook, staging, params, root, processes, log_output)
            else:
                pm.execute_notebook(
                    str(notebook), str(staging / f"{stem}.ipynb"), parameters=params,
                    cwd=str(root), kernel_name="python3", progress_bar=sys.stderr.isatty(),
                    log_output=log_output,
                )  # fmt: skip
    except Exception as exc:
        error = _papermill_error(exc)
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    settings_file = staging / "settings" / f"{stem}.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    machine = machine_info()
    run = NotebookRun(
        notebook=stem,
        profile=profile,
        status="failed" if error else "ok",
        wall_time_s=round(time.perf_counter() - t0, 1),
        peak_memory_mb=round(mem.peak / 2**20, 1),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=str(code["commit"]),
        git_dirty=code["dirty"],  # type: ignore[arg-type]
        precision=settings.get("precision", "unknown"),
        requested_precision=settings.get("requested_precision", "unknown"),
        torch_threads=settings.get("threads"),
        device=settings.get("device", "unknown"),
        cpu_model=str(machine.get("cpu_model", machine.get("processor", "unknown"))),
        cpu_flags=dict(machine.get("cpu_flags", {})),  # type: ignore[call-overload]
        load_average_start=load_start,
        load_average_end=load_average(),
        error=error,
        processes=processes,
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
            f"{failed / (stem + '.ipynb')}; "
            f"papermill_runs/{profile}/ still holds the previous record."
        )
    _commit(staging, record, stem)
    shutil.rmtree(staging, ignore_errors=True)
    (record / "failed" / f"{stem}.ipynb").unlink(missing_ok=True)
    _update_run_json(record, profile, run, machine)
    write_claims_md(record, profile)
    return run


def run_notebooks(
    names: list[str] | None = None,
    profile: str = "default",
    root: Path | None = None,
    parameters: dict | None = None,
    keep_going: bool = False,
    processes: int = 1,
) -> list[NotebookRun]:
    """Run several notebooks in order (each in ``processes`` kernels, see `run_notebook`); stops
    at the first failure unless ``keep_going``."""
    root = root or project_root()
    runs, failures = [], []
    for stem in resolve_notebooks(names, root):
        print(f"[molkit run] {stem} (profile {profile}) ...", flush=True)
        try:
            run = run_notebook(stem, profile, root, parameters, processes=processes)
        except NotebookFailed as exc:
            print(f"[molkit run] FAILED: {exc}", file=sys.stderr, flush=True)
            failures.append(str(exc))
            if not keep_going:
                break
            continue
        print(
            f"[molkit run] {stem}: ok in {run.wall_time_s:.0f} s, "
            f"peak memory {run.peak_memory_mb:.0f} MB",
            flush=True,
        )
        problems = record_problems(root / "papermill_runs" / profile / f"{stem}.ipynb")
        if problems:  # what a reader would scroll past: fix it at its source
            shown = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            print(f"[molkit run] {stem}: {len(problems)} problem(s) in the executed record:\n"
                  f"  {shown}{more}", file=sys.stderr, flush=True)  # fmt: skip
        runs.append(run)
    if failures:
        raise NotebookFailed("; ".join(failures))
    return runs
