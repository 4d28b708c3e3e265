import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data"

# Tests never reach a model hub; they resolve data from the mirror beside the checkout when it exists.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
if MIRROR.joinpath("MANIFEST.csv").exists():
    os.environ.setdefault("MOLKIT_DATA_MIRROR", str(MIRROR))


@pytest.fixture
def mirror() -> Path:
    path = Path(os.environ.get("MOLKIT_DATA_MIRROR", ""))
    if not path.joinpath("MANIFEST.csv").exists():
        pytest.skip("no offline data mirror (set MOLKIT_DATA_MIRROR)")
    return path


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOLKIT_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"
