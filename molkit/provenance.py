"""Where a result came from: the code's commit, the package versions, the machine and its load.

``molkit run`` writes these into ``run.json`` and ``molkit bench`` into ``bench.json``. Figures
taken on a busy machine are not comparable with quiet ones: `busy_warning` says so at the start.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

PACKAGES = (
    "molkit",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "torch_geometric",
    "rdkit",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "papermill",
    "bm25s",
    "nltk",
    "rouge-score",
)
#: What decides a result: the package, the notebooks and how they are installed and run. A change
#: elsewhere (the committed record, the README) does not make the code dirty.
CODE_PATHS = ("molkit", "notebooks", "pyproject.toml", "requirements.lock", "Makefile", "scripts")


def git_commit(
    root: Path, paths: tuple[str, ...] = CODE_PATHS, timeout: float = 60
) -> dict[str, object]:
    """``{"commit": sha, "dirty": bool}`` of the checkout at ``root``: ``dirty`` is true when a file
    under ``paths`` differs from that commit (modified, staged or new and not ignored). Outside a
    git checkout (or without git): ``{"commit": "unknown", "dirty": None}``. Only ``paths`` are
    compared, so executed notebooks elsewhere never pass through a git filter here."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        present = [p for p in paths if (Path(root) / p).exists()]
        status = git("status", "--porcelain", "--", *present)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": sha or "unknown", "dirty": bool(status)}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def busy_warning(what: str) -> str | None:
    """A warning when the 1-minute load average exceeds the core count, else ``None``."""
    load, cores = load_average(), os.cpu_count() or 1
    if load and load[0] > cores:
        return (
            f"warning: load average {load[0]:.1f} on {cores} cores at the start of {what}: "
            "other jobs share this machine, "
            "so its timings are not comparable with a quiet machine's "
            "(run one heavy job at a time)"
        )
    return None


def machine_info() -> dict[str, object]:
    """CPU model and the flags that matter (avx2 / avx512f / avx512_bf16 / amx_bf16), cores, memory,
    GPU, and what the precision policy resolves to here."""
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

        from molkit.models import runtime

        info["cpu_model"] = runtime.cpu_name()
        info["cpu_flags"] = runtime.cpu_flags()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["bf16_native"] = runtime.bf16_supported("cpu")
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
