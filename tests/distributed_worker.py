"""One step of `train_causal_lm` and a sharded `generate_texts` on a tiny random Llama, the same
in one process and under ``torchrun --nproc_per_node 2`` (gloo on CPU): `tests/test_distributed.py`
runs it both ways and compares, and a third way through ``accelerate.notebook_launcher`` (2 forked
CPU processes, as a notebook of one's own would start them). Usage: ``python distributed_worker.py
MODEL_DIR OUT_DIR [--notebook-launcher PORT]``."""

import json
import os
import sys
from pathlib import Path

import torch

from molkit.models import lm as lt

PAIRS = [
    ("CCO is", " ethanol"),
    ("c1ccccc1 is", " benzene, an aromatic ring"),
    ("CC(=O)O is", " acetic acid"),
    ("O is", " water"),
    ("CCN is", " ethylamine, a base"),
    ("C is", " methane"),
]
PROMPTS = ["CCO is", "c1ccccc1 is", "O is", "CCN is", "CC(=O)O is"]
#: 6 examples, 3 per micro-batch (2 + 1 across two processes), 2 micro-batches per optimiser step.
CONFIG = lt.TrainConfig(epochs=1.0, lr=5e-3, batch_size=3, grad_accum=2, warmup=0.0, seed=0,
                        precision="fp32")  # fmt: skip


def corpus() -> list[str]:
    return [p + a for p, a in PAIRS] * 4


def run(model_dir: str) -> dict:
    """Train one optimiser step (full fine-tuning plus one spliced extra embedding trained as an
    extra parameter) and generate; returns the losses, the trained tensors and the texts."""
    torch.manual_seed(0)
    model, tok = lt.load_lm(model_dir)
    # float64: Adam's first step is about lr * sign(gradient), so in float32 a gradient element
    # near zero whose sum order differs between one and two processes can flip; in float64 the
    # two runs agree to ~1e-12
    model = model.double()
    hidden = model.get_input_embeddings().weight.shape[1]
    extra = torch.nn.Parameter(torch.linspace(-0.5, 0.5, hidden, dtype=torch.float64)[None])
    examples = [lt.encode_example(tok, p, a, extra_positions=[1]) for p, a in PAIRS]
    report = lt.train_causal_lm(
        model, examples, CONFIG, tok.pad_token_id, extra_embeddings=lambda idx: [extra] * len(idx),
        extra_parameters=[extra], progress=False,
    )  # fmt: skip
    texts = lt.generate_texts(model, tok, PROMPTS, max_new_tokens=6, batch_size=2, progress=False)
    tensors = {n: p.detach().clone() for n, p in model.named_parameters()}
    tensors["extra"] = extra.detach().clone()
    acc = lt.data_parallel()
    processes = acc.num_processes if acc is not None else 1
    return {
        "losses": report.losses, "steps": report.steps, "texts": texts, "tensors": tensors,
        "processes": processes,
    }  # fmt: skip


def save(model_dir: str, out_dir: str) -> None:
    """`run`, and rank 0 writes ``result.json`` and ``tensors.pt`` into ``out_dir``."""
    result = run(model_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        out = Path(out_dir)
        torch.save(result.pop("tensors"), out / "tensors.pt")
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    if "--notebook-launcher" in sys.argv:
        from accelerate import notebook_launcher

        port = sys.argv[sys.argv.index("--notebook-launcher") + 1]
        notebook_launcher(save, (sys.argv[1], sys.argv[2]), num_processes=2, use_port=port)
    else:
        save(sys.argv[1], sys.argv[2])
