import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data"

# Tests never reach a model hub; they resolve data from the mirror beside the checkout
# when it exists.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
if MIRROR.joinpath("MANIFEST.csv").exists():
    os.environ.setdefault("MOLKIT_DATA_MIRROR", str(MIRROR))
# The suite runs in float32 on every CPU (AVX2-only, AVX512-BF16, AMX), so exact comparisons stay
# exact; notebook kernels started by the tests inherit it. Tests of the bf16 path force it
# (molkit.models.runtime.use_precision) and compare with bf16 tolerances.
os.environ["MOLKIT_PRECISION"] = "fp32"
# progress bars print one line each, like a `molkit run`
os.environ.setdefault("MOLKIT_HEADLESS", "1")


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with the suite's policy: float32 (a test may change it)."""
    runtime = sys.modules.get("molkit.models.runtime")
    if runtime is not None:
        runtime.set_precision(None)
    yield
    runtime = sys.modules.get("molkit.models.runtime")
    if runtime is not None:
        runtime.set_precision(None)


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
