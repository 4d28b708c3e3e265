"""What a notebook's first cells need: ``setup``, ``record`` and ``savefig``.

``setup`` fixes seeds, threads, warnings and the plot theme, resolves the profile's sizes and the
run directory; ``record`` appends tidy result rows; ``savefig`` writes a figure. Both write into the
run directory: ``$MOLKIT_RUN_DIR`` when ``molkit run`` drives papermill (a staging folder that is
swapped into ``papermill_runs/<profile>/`` only when the notebook succeeds), else
``./molkit_output/<profile>`` for interactive and plain-papermill runs, so experimenting never
overwrites the published record.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molkit._io import atomic_path, atomic_write_text
from molkit._profiles import check_profile
from molkit._progress import headless, quiet_library_logs

RESULT_COLUMNS = [
    "notebook",
    "dataset",
    "method",
    "metric",
    "value",
    "seed",
    "profile",
    "split",
    "note",
]
RUN_DIR_ENV = "MOLKIT_RUN_DIR"
FIGURE_DPI = 120


@dataclass(frozen=True)
class RunSettings:
    """The least a notebook runs with: a profile and a seed. Method notebooks pass their method's
    `molkit.methods.experiment.Settings` to `setup` instead (it carries both)."""

    profile: str = "default"
    seed: int = 0


@dataclass
class Config:
    """A notebook's run: its ``settings`` (where ``profile`` and ``seed`` come from), run
    directory and compute facts.

    ``precision`` is what the precision policy resolved to on ``device`` (``"fp32"`` or
    ``"bf16"``); ``requested_precision`` what was asked for (``"auto"``, ``"fp32"``, ``"bf16"``).
    """

    notebook: str
    settings: Any
    run_dir: Path
    threads: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    requested_precision: str = "auto"

    @property
    def profile(self) -> str:
        return self.settings.profile

    @property
    def seed(self) -> int:
        return self.settings.seed

    def summary(self) -> str:
        """One line with the settings that decide speed and digits (printed by `setup`)."""
        return (
            f"molkit {self.notebook}: profile {self.profile}, seed {self.seed}, "
            f"device {self.device}, "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}, precision {self.precision} "
            f"(asked: {self.requested_precision})"
        )

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results" / f"{self.notebook}.csv"

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"


_CURRENT: Config | None = None


def current() -> Config:
    """The Config made by the last :func:`setup` call."""
    if _CURRENT is None:
        raise RuntimeError("call molkit.setup(profile=..., notebook=...) first")
    return _CURRENT


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported or importable) torch."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def setup(
    settings: Any = None,
    *,
    notebook: str = "notebook",
    threads: int | None = None,
    theme: bool = True,
    precision: str | None = None,
) -> Config:
    """Prepare a notebook run and return its :class:`Config`.

    ``settings``: the notebook's settings, a method's `molkit.methods.experiment.Settings` (made by
    ``Settings.for_profile(profile, seed=seed, ...)``) or a `RunSettings`; the profile and the
    seed are read from it, so each enters a notebook once (default: ``RunSettings()``).
    ``threads`` defaults to every core. ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``;
    ``None``: ``$MOLKIT_PRECISION``, else ``auto``) sets the precision policy of every model path
    (`molkit.models.runtime`). Prints `Config.summary` and writes the settings to
    ``<run dir>/settings/<notebook>.json`` (``molkit run`` copies them into ``run.json``).
    """
    global _CURRENT
    settings = RunSettings() if settings is None else settings
    profile, seed = check_profile(settings.profile), int(settings.seed)
    if precision is not None:  # a typo fails here, before any work
        from molkit.models.runtime import check_precision

        precision = check_precision(precision)
    run_dir = Path(os.environ.get(RUN_DIR_ENV) or Path.cwd() / "molkit_output" / profile)
    (run_dir / "results").mkdir(parents=True, exist_ok=True)
    (run_dir / "figures").mkdir(parents=True, exist_ok=True)
    n_threads = threads or os.cpu_count() or 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from threadpoolctl import threadpool_limits

    threadpool_limits(n_threads)  # NumPy/SciPy BLAS threads, like torch's below
    device = "cpu"
    resolved, requested = "fp32", precision or "auto"
    try:
        import torch

        torch.set_num_threads(n_threads)
        if torch.cuda.is_available():
            device = "cuda"
        from molkit.models import runtime

        runtime.set_precision(
            precision
        )  # None: $MOLKIT_PRECISION or auto, also on a re-run in one kernel
        resolved = runtime.resolved_precision(device)
        requested = runtime.requested_precision()
    except ImportError:
        pass
    seed_everything(seed)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    quiet_library_logs()
    if headless():  # an executed record keeps no redrawn bars of the libraries' own loops
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    if theme:
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    cfg = Config(
        notebook=notebook,
        settings=settings,
        run_dir=run_dir,
        threads=n_threads,
        device=device,
        precision=resolved,
        requested_precision=requested,
    )
    _CURRENT = cfg
    settings = {
        "notebook": notebook,
        "profile": profile,
        "seed": seed,
        "threads": n_threads,
        "device": device,
        "precision": resolved,
        "requested_precision": requested,
    }
    (run_dir / "settings").mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        run_dir / "settings" / f"{notebook}.json", json.dumps(settings, indent=2) + "\n"
    )
    print(cfg.summary())
    # a re-run of the notebook starts its results and claims afresh
    cfg.results_path.unlink(missing_ok=True)
    (cfg.run_dir / "claims" / f"{notebook}.csv").unlink(missing_ok=True)
    return cfg


def record(
    dataset: str,
    method: str,
    metric: str,
    value: float,
    seed: int | None = None,
    split: str = "",
    note: str = "",
) -> dict[str, Any]:
    """Append one tidy result row to ``results/<notebook>.csv`` of the run directory and return
    it."""
    import pandas as pd

    cfg = current()
    row = {
        "notebook": cfg.notebook,
        "dataset": dataset,
        "method": method,
        "metric": metric,
        "value": float(value),
        "seed": cfg.seed if seed is None else int(seed),
        "profile": cfg.profile,
        "split": split,
        "note": note,
    }
    path = cfg.results_path
    frame = (
        pd.read_csv(path, keep_default_na=False)
        if path.exists()
        else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    frame = (
        pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
        if len(frame)
        else pd.DataFrame([row])
    )
    with atomic_path(path) as tmp:
        frame[RESULT_COLUMNS].to_csv(tmp, index=False)
    return row


def record_frame(frame, **defaults: Any):
    """Record every row of a DataFrame with columns among ``RESULT_COLUMNS`` (missing ones from
    ``defaults``)."""
    rows = []
    for item in frame.to_dict("records"):
        merged = {**defaults, **{k: v for k, v in item.items() if k in RESULT_COLUMNS}}
        merged.pop("notebook", None)
        merged.pop("profile", None)
        rows.append(record(**merged))
    return rows


def record_claims(claims) -> Any:
    """Append `molkit.methods.experiment.Claim` rows to ``claims/<notebook>.csv`` of the run
    directory (``molkit run`` gathers them into ``CLAIMS.md``); returns this notebook's claims so
    far."""
    import pandas as pd

    cfg = current()
    path = cfg.run_dir / "claims" / f"{cfg.notebook}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame(
        [c.as_row() for c in claims]
    )  # Claim.as_row: the columns in CLAIM_COLUMNS order
    new.insert(0, "notebook", cfg.notebook)
    new["profile"] = cfg.profile
    old = pd.read_csv(path, keep_default_na=False) if path.exists() else None
    frame = pd.concat([old, new], ignore_index=True) if old is not None and len(old) else new
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def record_results(res) -> Any:
    """Record what an experiment function returned (`molkit.methods.experiment.Results`): its rows
    into ``results/<notebook>.csv`` and its claims into ``claims/<notebook>.csv``. Returns the rows
    as a DataFrame, for the notebook to show."""
    frame = res.frame()
    if len(frame):
        record_frame(frame)
    if res.claims:
        record_claims(res.claims)
    return frame


def show_table(frame, rows: int | None = None) -> None:
    """Display ``frame`` with the whole text of every cell and its first ``rows`` rows (None: all).
    pandas otherwise cuts each cell at 50 characters, in the HTML that Jupyter and the record's
    website render as well, which leaves a claim or a caption unreadable."""
    import pandas as pd
    from IPython.display import display

    with pd.option_context("display.max_colwidth", None, "display.max_rows", rows):
        display(frame)


def results() -> Any:
    """This notebook's recorded rows so far, as a DataFrame."""
    import pandas as pd

    path = current().results_path
    return (
        pd.read_csv(path, keep_default_na=False)
        if path.exists()
        else pd.DataFrame(columns=RESULT_COLUMNS)
    )


def figure_path(name: str) -> Path:
    """Where `savefig` writes figure ``name``: ``figures/<notebook>__<name>.png`` of the run."""
    cfg = current()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return cfg.figures_dir / f"{cfg.notebook}__{safe}.png"


def savefig(fig, name: str, dpi: int = FIGURE_DPI) -> None:
    """Save ``fig`` as ``figures/<notebook>__<name>.png`` in the run directory (atomic;
    `figure_path` says where). Returns nothing, so a cell that ends with it shows the figure and
    no path."""
    with atomic_path(figure_path(name)) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
