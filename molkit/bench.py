"""Throughput benchmarks behind ``make bench`` / ``molkit bench``.

Prints and records (``papermill_runs/<profile>/bench.json``) molecules/s for SMILES -> graph,
fingerprints, descriptors and chemical-LM embedding (batch 64), sentences/s for the sentence
encoder, MoleX's deployed prediction of molecules whose n-grams are known
(`molkit.methods.molex.inference.NgramPredictor`, Liver and MUTAG) against the plain functions and
the rxnfp-bert classifier end to end on the same molecules, with the speed-up, and tokens/s for
the causal LM: greedy generation swept over batch sizes and weight
precisions (float32; bf16 weights and bf16 autocast where the CPU computes bf16 natively) and
full fine-tuning forward + backward (float32, and bf16 autocast where native). It records the
precision policy, torch threads, CPU model and flags, and the load average at the start and the
end, and warns at the start when the machine is busy: such figures are not comparable. From the
sweep it names the generation batch size with the most tokens/s at the policy's precision.
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

GENERATION_BATCHES = (1, 8, 16, 32, 64)


def _timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _molex_vs_lm(
    dataset: str, n_molecules: int, chemical_lm, repeats: int, report: Callable[..., None]
) -> tuple[float, float, float, int]:
    """MoleX deployed on known n-grams against the LM classifier, on the same molecules of one
    explanation dataset: the even-position molecules (up to ``n_molecules``) are timed, the
    odd-position ones stand for the training set the memo of fragment keys was filled on. The
    n-gram table is built from the whole dataset, so every timed n-gram is known; its
    contributions are random (timing only). Returns (MoleX s with the memo the other molecules
    left, MoleX s with every key in the memo, LM s, molecules)."""
    import numpy as np
    import torch

    from molkit.chem import group_ngrams, group_tokens, parse_smiles
    from molkit.data.explain import load_explain_dataset
    from molkit.methods.molex.inference import NgramPredictor
    from molkit.methods.molex.ngrams import build_ngram_table, ngram_text
    from molkit.models.prefix import pool, prefix_hidden

    smiles = load_explain_dataset(dataset)["smiles"].tolist()
    timed, warm = smiles[::2][:n_molecules], smiles[1::2]
    n = len(timed)
    table = build_ngram_table(smiles, progress=False)
    rng = np.random.default_rng(0)
    contributions = rng.normal(size=(len(table.texts), 2))
    intercept = rng.normal(size=2)
    predictor = NgramPredictor(table.texts, contributions, intercept, n_max=3)
    predictor.warm(warm)
    memo = dict(predictor.ngram_texts._memo)
    texts = predictor.ngram_texts
    hit_rate = 0.0

    def molex_first_pass() -> float:  # the memo as the training molecules left it
        nonlocal hit_rate
        texts._memo = dict(memo)
        hits, misses = texts.hits, texts.misses
        t0 = time.perf_counter()
        predictor.decision_function(timed)
        seconds = time.perf_counter() - t0
        hit_rate = (texts.hits - hits) / max(texts.hits - hits + texts.misses - misses, 1)
        return seconds

    molex = min(molex_first_pass() for _ in range(repeats))
    n_ngrams = sum(len(table.occurrences[2 * i]) for i in range(n))
    extra = {
        "dataset": dataset,
        "contributions": "random (timing only)",
        "n_texts": len(table.texts),
        "n_parameters": predictor.n_parameters,
        "ngrams_per_molecule": round(n_ngrams / n, 1),
        "workers": 1,
    }
    report(
        f"molex_{dataset}_known_ngrams",
        n,
        molex,
        "molecules/s",
        memo_hit_rate=round(hit_rate, 4),
        memo="filled on the other molecules",
        **extra,
    )
    full_memo = _timed(lambda: predictor.decision_function(timed), repeats)
    report(
        f"molex_{dataset}_known_ngrams_full_memo",
        n,
        full_memo,
        "molecules/s",
        memo="every key seen",
        **extra,
    )
    lookup = dict(zip(table.texts, contributions, strict=True))

    def reference() -> None:  # the plain functions: every text written by RDKit
        for s in timed:
            mol = parse_smiles(s)
            found = [ngram_text(mol, a) for _, a in group_ngrams(group_tokens(mol), 3)]
            np.sum([lookup[t] for t in found], axis=0) + intercept

    report(
        f"molex_{dataset}_plain_functions", n, _timed(reference, repeats), "molecules/s", **extra
    )

    # the LM classifier end to end: tokenise, every layer, mean pooling, a bottleneck head
    model, tokenizer = chemical_lm
    n_layers = len(model.encoder.layer)
    gen = torch.Generator().manual_seed(0)
    hidden = model.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(hidden, 64), torch.nn.Linear(64, 2))
    for param in head.parameters():
        torch.nn.init.normal_(param, std=0.05, generator=gen)

    def lm_classifier() -> None:
        ordered = sorted(timed, key=len)  # batches of similar length
        with torch.inference_mode():
            for s in range(0, n, 64):
                enc = tokenizer(
                    ordered[s : s + 64],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                states = prefix_hidden(model, enc, n_layers)
                head(pool(states, enc["attention_mask"], "mean"))

    lm_classifier()  # warm-up
    lm = _timed(lm_classifier, repeats)
    report(
        f"lm_classifier_{dataset}_rxnfp_bert_batch64",
        n,
        lm,
        "molecules/s",
        dataset=dataset,
        layers=n_layers,
        batch=64,
        sorted_by_length=True,
        torch_threads=torch.get_num_threads(),
    )
    return molex, full_memo, lm, n


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
    from molkit.models.lm import generate_texts, load_causal_lm, load_lm
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

    # MoleX deployed on molecules whose n-grams are known, against the LM classifier
    from molkit.models.prefix import load_chemical_lm

    chemical_lm = load_chemical_lm("rxnfp-bert")
    for dataset in ("liver", "mutag"):
        molex, full_memo, lm, count = _molex_vs_lm(
            dataset, 32 if quick else 256, chemical_lm, 1 if quick else 3, report
        )
        speedup = lm / molex  # LM classifier time / MoleX time, same molecules, same run
        results[f"molex_{dataset}_speedup_over_lm_classifier"] = {
            "rate": round(speedup, 2),
            "unit": "x",
            "count": count,
            "molex_seconds": round(molex, 4),
            "lm_seconds": round(lm, 4),
            "speedup_full_memo": round(lm / full_memo, 2),
            "dataset": dataset,
        }
        print(f"{'molex_' + dataset + '_speedup_over_lm_classifier':44s} {speedup:10.1f} x")
    del chemical_lm

    # generation: (weights, autocast) variants; bf16 only where the CPU computes it natively
    prompt = "Describe the molecule CC(=O)Oc1ccccc1C(=O)O in one paragraph."
    new_tokens = 16 if quick else 48
    batches = (1, 8) if quick else GENERATION_BATCHES
    variants = [("fp32", "fp32", batches)]
    if native or policy == "bf16":
        variants += [
            ("bf16", "bf16", batches),
            ("fp32", "bf16", (8,)),
        ]  # bf16 weights; autocast on fp32 weights
    for weights, compute, sizes in variants:
        model, tokenizer = load_causal_lm(
            "smollm2-135m-instruct", dtype=runtime.inference_dtype(precision=weights), device="cpu"
        )
        label = f"{weights}" if weights == compute else f"{weights}_weights_{compute}_autocast"
        with runtime.use_precision(compute):
            generate_texts(
                model, tokenizer, [prompt] * 2, max_new_tokens=4, batch_size=2, progress=False,
                chat=True,
            )  # fmt: skip
            for batch in sizes:
                outputs: list = []
                prompts = [prompt] * batch
                seconds = _timed(
                    lambda m=model, t=tokenizer, p=prompts, out=outputs: out.extend(
                        generate_texts(
                            m,
                            t,
                            p,
                            max_new_tokens=new_tokens,
                            batch_size=len(p),
                            progress=False,
                            chat=True,
                        )  # fmt: skip
                    )
                )
                produced = sum(
                    len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs
                )
                report(
                    f"causal_lm_generation_{label}_batch{batch}",
                    produced,
                    seconds,
                    "tokens/s",
                    max_new_tokens=new_tokens,
                    batch=batch,
                    weights=weights,
                    compute=compute,
                )
        del model

    # full fine-tuning of float32 weights, forward + backward + AdamW step
    seq, bsz, steps = (128, 2, 1) if quick else (256, 4, 3)
    model, _ = load_lm("smollm2-135m-instruct", device="cpu")
    model.train()
    ids = torch.randint(
        0, model.config.vocab_size, (bsz, seq), generator=torch.Generator().manual_seed(0)
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for compute in ("fp32", "bf16") if (native or policy == "bf16") else ("fp32",):

        def train_step(compute: str = compute) -> None:
            for _ in range(steps):
                with runtime.autocast("cpu", compute):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)

        train_step()  # warm-up
        report(
            f"causal_lm_training_{compute}",
            bsz * seq * steps,
            _timed(train_step),
            "tokens/s",
            batch=f"{bsz}x{seq}",
            full_finetune=True,
            compute=compute,
        )
    model.eval()

    sweep = {
        k: v for k, v in results.items() if k.startswith(f"causal_lm_generation_{policy}_batch")
    }
    best = max(sweep.values(), key=lambda r: r["rate"]) if sweep else None
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
        "recommended_generation_batch": best["batch"] if best else None,
        "git": code,
        "machine": machine_info(),
        "packages": package_versions(),
        "results": results,
    }
    if best:
        print(
            f"generation at {policy}: most tokens/s at batch {best['batch']} "
            f"({best['rate']:.0f} tokens/s)"
        )
    out_dir = out_dir or project_root() / "papermill_runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    from molkit._io import atomic_write_text

    atomic_write_text(out_dir / "bench.json", json.dumps(record, indent=2) + "\n")
    print(f"written {out_dir / 'bench.json'}")
    return record
