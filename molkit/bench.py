"""Throughput benchmarks behind ``make bench`` / ``molkit bench``.

Prints and records (``papermill_runs/<profile>/bench.json``) molecules/s for SMILES -> graph,
fingerprints, descriptors and chemical-LM embedding (batch 64), sentences/s for the sentence
encoder, MoleX's deployed prediction of molecules whose n-grams are known against the rxnfp-BERT
and SmolLM2-135M classifiers on the same molecules (`molkit.methods.molex.benchmark.speed_report`:
the speed-ups and each pipeline's share of time in parsing, matching, lookup, tokenising and
forward passes), and the LM toolkit at the notebooks' shapes (`notebook_shapes`: training,
generation and scoring at each batch size and precision, padding waste, the share of the measured
matmul limit, the recommended batch per shape). It records the precision policy, torch threads,
CPU model and flags, and the load average at the start and the end, and warns at the start when
the machine is busy: such figures are not comparable.
Figures, not assertions: no test times anything.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


def notebook_shapes(quick: bool = False) -> list[dict]:
    """The LM workloads of the notebooks, with token lengths measured on the data they read:
    ICMA's few-shot prompts (two retrieved ChEBI-20 examples and the query, the caption as the
    answer; LoRA training with ICMA's adapters, r 32 on every linear layer, and generation),
    MolTC's pair prompts (two DDI SMILES, 8 graph tokens each, a one-sentence answer; LoRA
    training with MolTC's r 8 on q and v, and full fine-tuning for comparison), MoleX's
    label-word scoring (a chat-template question about one molecule, two one-token answers) and
    LarDo's chat generation (about 200 prompt tokens, 64 new tokens)."""
    import numpy as np

    from molkit.data import load_dataset
    from molkit.models.lm import load_causal_lm

    _, tok = load_causal_lm("smollm2-135m-instruct", device="cpu")
    rng = np.random.default_rng(0)
    n = 16 if quick else 64

    def count(text: str) -> int:
        return len(tok(text)["input_ids"])

    chebi = load_dataset("chebi20")
    rows = chebi.iloc[rng.choice(len(chebi), 3 * n, replace=False)]
    pairs = [
        f"Molecule: {s}\nCaption: {c}" for s, c in zip(rows["smiles"], rows["text"], strict=True)
    ]
    icma = [min(count("\n\n".join(pairs[3 * i : 3 * i + 3])), 1024) for i in range(n)]
    ddi = load_dataset("chchminer")
    ddi = ddi.iloc[rng.choice(len(ddi), n, replace=False)]
    moltc = [
        count(f"Molecule 1: {a} " + "<g>" * 8 + f"\nMolecule 2: {b} " + "<g>" * 8
              + "\nDo these two drugs interact?\nAnswer:")
        for a, b in zip(ddi["smiles_1"], ddi["smiles_2"], strict=True)
    ]  # fmt: skip
    bbbp = load_dataset("bbbp")["smiles"].sample(n, random_state=0)
    molex = [count(f"<|im_start|>user\nIs {s} mutagenic? Answer Yes or No.<|im_end|>\n"
                   "<|im_start|>assistant\n") for s in bbbp]  # fmt: skip
    lardo = [200 + int(x) for x in rng.integers(-40, 40, n)]
    small = quick
    if quick:  # the same code on short prompts: the test checks the figures, not the speed
        icma, moltc, molex, lardo = (
            [min(x, 96) for x in v][:8] for v in (icma, moltc, molex, lardo)
        )
    return [
        {"name": "icma_lora_train", "notebook": "02_icma", "kind": "train", "mode": "lora",
         "lora": {"r": 32, "alpha": 64, "target_modules": "all-linear"},
         "prompts": icma, "answer": 64, "batches": (1, 2)},
        {"name": "icma_generate", "notebook": "02_icma", "kind": "generate", "prompts": icma[:32],
         "new": 8 if small else 32, "batches": (8,) if small else (8, 16)},
        {"name": "moltc_lora_train", "notebook": "04_moltc", "kind": "train", "mode": "lora",
         "lora": {"r": 8, "alpha": 32, "target_modules": ["q_proj", "v_proj"]},
         "prompts": moltc, "answer": 12, "batches": (4,) if small else (4, 8)},
        {"name": "moltc_full_train", "notebook": "04_moltc", "kind": "train", "mode": "full",
         "prompts": moltc, "answer": 12, "batches": (4,) if small else (8,)},
        {"name": "molex_score", "notebook": "01_molex", "kind": "score", "prompts": molex,
         "batches": (16,) if small else (16, 32)},
        {"name": "lardo_generate", "notebook": "03_lardo", "kind": "generate", "prompts": lardo,
         "new": 8 if small else 64, "batches": (8,) if small else (16, 32)},
    ]  # fmt: skip


def _lm_shape(model, tokenizer, shape: dict, batch: int, precision: str, limit: float) -> dict:
    """One notebook shape at one batch size and precision (`molkit.models.lm.throughput`); LoRA
    shapes train a fresh LoRA wrapper (the base weights stay as they were)."""
    import copy

    from molkit.models.lm import apply_lora
    from molkit.models.lm import throughput as tp

    if shape["kind"] == "train":
        trained = copy.deepcopy(model)
        if shape["mode"] == "lora":  # the notebook's own adapters (ICMA: r 32, every linear)
            trained = apply_lora(trained, **shape["lora"])
        return tp.training_throughput(trained, tokenizer, shape["prompts"], shape["answer"],
                                      batch, shape["mode"], precision, limit,
                                      steps=1 if len(shape["prompts"]) <= 8 else 3)  # fmt: skip
    if shape["kind"] == "generate":
        return tp.generation_throughput(model, tokenizer, shape["prompts"], shape["new"], batch,
                                        precision, limit)  # fmt: skip
    yes, no = tokenizer("Yes", add_special_tokens=False)["input_ids"], tokenizer(
        "No", add_special_tokens=False)["input_ids"]  # fmt: skip
    return tp.scoring_throughput(model, tokenizer, shape["prompts"], [yes, no], batch, precision,
                                 limit)  # fmt: skip


def _timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_benchmarks(
    profile: str = "default", quick: bool = False, out_dir: Path | None = None
) -> dict:
    """Run every benchmark; ``quick`` uses small inputs (for tests). Returns and writes the
    figures."""
    import torch
    from rdkit import RDLogger

    from molkit import chem
    from molkit.data import load_dataset
    from molkit.models import Encoder, runtime
    from molkit.models.lm import load_lm
    from molkit.models.lm.throughput import matmul_limit
    from molkit.provenance import (
        busy_warning,
        git_commit,
        load_average,
        machine_info,
        package_versions,
    )
    from molkit.run import project_root

    RDLogger.DisableLog("rdApp.*")
    warning = busy_warning("the benchmark")
    if warning:
        print(warning, file=sys.stderr, flush=True)
    load_start = load_average()
    try:
        code = git_commit(project_root())  # the code measured
    except FileNotFoundError:
        code = {"commit": "unknown", "dirty": None}
    started = datetime.now(UTC)
    torch.set_num_threads(os.cpu_count() or 1)
    policy = runtime.resolved_precision("cpu")
    native = runtime.bf16_supported("cpu")
    smiles = load_dataset("bbbp")["smiles"].tolist()
    captions = load_dataset("chebi20")["text"].tolist()
    n_mol = 200 if quick else len(smiles)
    n_lm = 64 if quick else 512
    results: dict[str, dict] = {}

    def report(key: str, count: int, seconds: float, unit: str, **extra) -> None:
        results[key] = {
            "rate": round(count / seconds, 2),
            "unit": unit,
            "count": count,
            "seconds": round(seconds, 3),
            **extra,
        }
        print(f"{key:44s} {count / seconds:10.1f} {unit}  ({count} in {seconds:.2f} s)", flush=True)

    mols = smiles[:n_mol]
    report(
        "smiles_to_graph",
        n_mol,
        _timed(lambda: chem.graphs_from_smiles(mols, progress=False)),
        "molecules/s",
    )
    report(
        "morgan_fingerprint",
        n_mol,
        _timed(lambda: chem.morgan_bits(mols, progress=False)),
        "molecules/s",
    )
    report(
        "descriptors",
        n_mol,
        _timed(lambda: chem.compute_descriptors(mols, progress=False)),
        "molecules/s",
    )

    for name, texts, unit, key in (
        ("rxnfp-bert", smiles[:n_lm], "molecules/s", "lm_embedding_rxnfp_bert_batch64"),
        (
            "minilm-l6",
            [c.split(".")[0] for c in captions[:n_lm]],
            "sentences/s",
            "sentence_encoder_minilm_batch64",
        ),
    ):
        encoder = Encoder.from_pretrained(name)
        encoder.embed(texts[:64], batch_size=64, cache=False, progress=False)  # warm-up
        seconds = _timed(
            lambda enc=encoder, t=texts: enc.embed(t, batch_size=64, cache=False, progress=False)
        )
        report(key, len(texts), seconds, unit, precision=policy)

    # MoleX deployed on molecules whose n-grams are known, against both LM classifiers, one core
    # each (MoleX's prediction is single-threaded Python; the classifiers get one torch thread)
    from molkit.data.explain import load_explain_dataset
    from molkit.methods.molex.benchmark import speed_report

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for dataset in ("liver", "mutag"):
        molecules = load_explain_dataset(dataset)["smiles"].tolist()
        n = 16 if quick else 256
        speed = speed_report(
            molecules[::2][:n], warm=molecules[1::2], dataset=dataset, repeats=1 if quick else 3,
            llm="smollm2-135m-instruct",
        )  # fmt: skip
        for pipeline in ("molex", "rxnfp_bert", "smollm2"):
            row = speed[pipeline]
            report(f"{pipeline}_{dataset}_end_to_end", speed["molecules"], row["seconds"],
                   "molecules/s", dataset=dataset, shares=row["shares"], threads=1)  # fmt: skip
        for other in ("rxnfp_bert", "smollm2"):
            ratio = speed[f"speedup_vs_{other}"]
            results[f"molex_{dataset}_speedup_vs_{other}"] = {
                "rate": round(ratio, 2), "unit": "x", "count": speed["molecules"],
                "dataset": dataset, "target": speed["targets"],
            }  # fmt: skip
            print(f"{f'molex_{dataset}_speedup_vs_{other}':44s} {ratio:10.1f} x")
        results[f"molex_{dataset}_group_matching"] = {
            "rate": round(speed["molex"]["group_matching_mol_per_s"], 1),
            "unit": "molecules/s", "count": speed["molecules"], "threads": 1,
        }  # fmt: skip
    torch.set_num_threads(threads)

    # the causal LM at the shapes the notebooks use, at each precision the CPU runs natively
    shapes = notebook_shapes(quick)
    model, tokenizer = load_lm("smollm2-135m-instruct", device="cpu")
    precisions = ("fp32", "bf16") if (native or policy == "bf16") else ("fp32",)
    recommended: dict[str, dict] = {}
    limits = {}
    for precision in precisions:
        limits[precision] = matmul_limit(precision, size=1024 if quick else 2048)
        results[f"matmul_limit_{precision}"] = {
            "rate": round(limits[precision] / 1e9, 1), "unit": "GFLOP/s", "count": 1,
            "seconds": 0.0, "precision": precision,
        }  # fmt: skip
        print(f"{'matmul_limit_' + precision:44s} {limits[precision] / 1e9:10.1f} GFLOP/s")
        for shape in shapes:
            best = None
            for batch in shape["batches"]:
                figures = _lm_shape(model, tokenizer, shape, batch, precision, limits[precision])
                key = f"lm_{shape['name']}_{precision}_batch{batch}"
                results[key] = {
                    "rate": figures["tokens_per_s"], "unit": "tokens/s", "count": 1,
                    "seconds": 0.0, **figures, "shape": shape["name"],
                }  # fmt: skip
                print(
                    f"{key:44s} {figures['tokens_per_s']:10.1f} tokens/s  (padding "
                    f"{figures['padding_waste']:.0%}, {figures['share_of_limit']:.1%} of the "
                    "matmul limit)",
                    flush=True,
                )
                if best is None or figures["tokens_per_s"] > best["tokens_per_s"]:
                    best = figures
            recommended[f"{shape['name']}_{precision}"] = {
                "batch": best["batch"], "tokens_per_s": best["tokens_per_s"],
                "share_of_limit": best["share_of_limit"], "notebook": shape["notebook"],
            }  # fmt: skip
    del model
    for name, best in recommended.items():
        print(
            f"recommended {name}: batch {best['batch']} ({best['tokens_per_s']:.0f} tokens/s, "
            f"{best['share_of_limit']:.1%} of the matmul limit)"
        )

    record = {
        "profile": profile,
        "quick": quick,
        "started": started.isoformat(timespec="seconds"),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        # other work on the machine slows every figure: the 1/5/15-minute load averages
        "load_average_start": load_start,
        "load_average": load_average(),
        "torch_threads": torch.get_num_threads(),
        "bf16": native,
        "precision": policy,
        "requested_precision": runtime.requested_precision(),
        "recommended_batches": recommended,
        "git": code,
        "machine": machine_info(),
        "packages": package_versions(),
        "results": results,
    }
    out_dir = out_dir or project_root() / "papermill_runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    from molkit._io import atomic_write_text

    atomic_write_text(out_dir / "bench.json", json.dumps(record, indent=2) + "\n")
    print(f"written {out_dir / 'bench.json'}")
    return record
