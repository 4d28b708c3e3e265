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


def save_tiny_smiles_bert(path: Path, smiles, num_layers: int = 2, extra_tokens=()) -> Path:
    """A tiny random BERT with the regex SMILES tokenizer over ``smiles``' tokens, saved to ``path``
    (MoleX and the frozen-prefix tests load it like the registry's rxnfp BERT)."""
    import torch
    from transformers import BertConfig, BertModel

    from molkit.models import RegexSmilesTokenizer, tokenize_smiles

    tokens = sorted({t for s in smiles for t in tokenize_smiles(s)} | set(extra_tokens))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (path / "vocab.txt").write_text("\n".join([*specials, *tokens]) + "\n")
    RegexSmilesTokenizer(path / "vocab.txt", max_length=64).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(specials) + len(tokens),
        hidden_size=16,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_smiles_bert():
    """`save_tiny_smiles_bert`, for module fixtures."""
    return save_tiny_smiles_bert
