"""Throughput benchmarks behind ``make bench`` / ``molkit bench``.

Prints and records (``papermill_runs/<profile>/bench.json``) molecules/s for SMILES -> graph, fingerprints,
descriptors and chemical-LM embedding (batch 64), sentences/s for the sentence encoder, and tokens/s for the
causal LM (batched and single-sequence generation; training forward + backward), with the machine's core
count and precision, so later work can compare. Figures, not assertions: no test times anything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


def _timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_benchmarks(profile: str = "default", quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run every benchmark; ``quick`` uses small inputs (for tests). Returns and writes the figures."""
    import torch

    from molkit import chem
    from molkit.data import load_dataset
    from molkit.models import Encoder, generate, load_causal_lm
    from molkit.models.runtime import autocast, bf16_supported
    from molkit.run import machine_info, package_versions, project_root

    torch.set_num_threads(os.cpu_count() or 1)
    smiles = load_dataset("bbbp")["smiles"].tolist()
    captions = load_dataset("chebi20")["text"].tolist()
    n_mol = 200 if quick else len(smiles)
    n_lm = 64 if quick else 512
    results: dict[str, dict] = {}

    def report(key: str, count: int, seconds: float, unit: str, **extra) -> None:
        results[key] = {"rate": round(count / seconds, 2), "unit": unit, "count": count, "seconds": round(seconds, 3), **extra}
        print(f"{key:38s} {count / seconds:10.1f} {unit}  ({count} in {seconds:.2f} s)", flush=True)

    mols = smiles[:n_mol]
    report("smiles_to_graph", n_mol, _timed(lambda: chem.graphs_from_smiles(mols, progress=False)), "molecules/s")
    report("morgan_fingerprint", n_mol, _timed(lambda: chem.morgan_bits(mols, progress=False)), "molecules/s")
    report("descriptors", n_mol, _timed(lambda: chem.compute_descriptors(mols, progress=False)), "molecules/s")

    for name, texts, unit, key in (
        ("rxnfp-bert", smiles[:n_lm], "molecules/s", "lm_embedding_rxnfp_bert_batch64"),
        ("minilm-l6", [c.split(".")[0] for c in captions[:n_lm]], "sentences/s", "sentence_encoder_minilm_batch64"),
    ):
        encoder = Encoder.from_pretrained(name)
        encoder.embed(texts[:64], batch_size=64, cache=False, progress=False)  # warm-up
        seconds = _timed(lambda enc=encoder, t=texts: enc.embed(t, batch_size=64, cache=False, progress=False))
        report(key, len(texts), seconds, unit, precision="bf16" if bf16_supported() else "fp32")

    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    prompt = "Describe the molecule CC(=O)Oc1ccccc1C(=O)O in one paragraph."
    new_tokens = 16 if quick else 64
    for batch in (1, 8):
        prompts = [prompt] * batch
        outputs: list = []
        seconds = _timed(lambda p=prompts, out=outputs: out.extend(generate(model, tokenizer, p, max_new_tokens=new_tokens, batch_size=len(p), progress=False)))
        produced = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
        report(f"causal_lm_generation_batch{batch}", produced, seconds, "tokens/s", max_new_tokens=new_tokens)

    seq, bsz, steps = (128, 2, 1) if quick else (512, 4, 3)
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (bsz, seq))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step() -> None:
        for _ in range(steps):
            with autocast():
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)

    train_step()  # warm-up
    report("causal_lm_training_fwd_bwd", bsz * seq * steps, _timed(train_step), "tokens/s", batch=f"{bsz}x{seq}", full_finetune=True)
    model.eval()

    record = {
        "profile": profile,
        "quick": quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        # other work on the machine slows every figure: the 1/5/15-minute load averages at the end
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "bf16": bf16_supported(),
        "machine": machine_info(),
        "packages": package_versions(),
        "results": results,
    }
    out_dir = out_dir or project_root() / "papermill_runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "bench.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out_dir / "bench.json")
    print(f"written {out_dir / 'bench.json'}")
    return record
