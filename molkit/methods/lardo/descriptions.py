"""MolGraph-LarDo's LLM side: generation settings, the response cache, the pools that get
descriptions, and `describe_molecules` (stage 1 and stage 2 through the cache).

Every LLM response goes through `molkit.models.responses.ResponseCache`; the default profile's
responses ship in ``molkit/resources/lardo_responses_v1.jsonl.gz`` and are regenerated with
``molkit responses generate --profile default`` (`molkit.methods.lardo.responses`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molkit.chem import DESCRIPTORS, compute_descriptors
from molkit.methods.lardo.method import (
    VARIANTS,
    PropertyMap,
    dsm_text,
    map_properties,
    parse_property_list,
    stage1_prompt,
    stage2_prompt,
)
from molkit.models.responses import GenerationStats, Prompt, ResponseCache

#: Shipped responses of the default profile (compressed, versioned; see `responses.py`).
RESPONSE_FILE = Path(__file__).resolve().parents[2] / "resources" / "lardo_responses_v1.jsonl.gz"
REGENERATE_COMMAND = "molkit responses generate --profile default"

#: Seed of the permutation that picks the molecules of the pre-training pool.
POOL_SEED = 0


# ----------------------------------------------------------------------------------------- the LLM


def generation_settings(max_new_tokens: int) -> dict[str, Any]:
    """Generation settings that key the response cache: greedy decoding, chat template,
    repetition penalty."""
    return {
        "max_new_tokens": int(max_new_tokens),
        "do_sample": False,
        "repetition_penalty": 1.1,
        "chat_template": True,
    }


def response_cache(path: str | Path | None = "default", shipped: bool = True) -> ResponseCache:
    """The LarDo response cache: the shipped default-profile file replayed, new responses appended
    to ``path`` (default: ``<molkit cache>/responses/lardo.jsonl``)."""
    from molkit.models.cache import cache_dir

    if path == "default":
        path = cache_dir("responses") / "lardo.jsonl"
    replay = [RESPONSE_FILE] if shipped and RESPONSE_FILE.exists() else []
    return ResponseCache(path, replay=replay)


@functools.cache
def _causal_lm(lm_model: str) -> tuple[Any, Any]:
    from molkit.models.causal_lm import load_causal_lm

    return load_causal_lm(lm_model)


def load_generator(
    lm_model: str, settings: dict[str, Any]
) -> Callable[[list[Prompt]], tuple[list[str], list[int]]]:
    """A ``generate_fn`` for `ResponseCache.generate`: answers a batch of chat prompts with
    ``lm_model`` (registry name, HF id or path; loaded on the first call, once per process) under
    bf16 autocast where native. Returns ``(texts, new_token_counts)``."""

    def generate_fn(prompts: list[Prompt]) -> tuple[list[str], list[int]]:
        from molkit.models.causal_lm import generate

        model, tokenizer = _causal_lm(lm_model)
        texts = generate(
            model,
            tokenizer,
            [list(p) for p in prompts],
            max_new_tokens=settings["max_new_tokens"],
            do_sample=settings["do_sample"],
            repetition_penalty=settings["repetition_penalty"],
            batch_size=len(prompts),
            progress=False,
        )
        counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return list(texts), counts

    return generate_fn


def throughput_benchmark(
    lm_model: str, prompts: Sequence[Prompt], max_new_tokens: int = 48
) -> pd.DataFrame:
    """New tokens per second generating ``prompts`` one at a time vs in one batch (no cache
    involved).

    Returns rows ``mode`` ("one at a time" / "batched"), ``prompts``, ``new_tokens``, ``seconds``,
    ``tokens_per_s``.
    """
    settings = generation_settings(max_new_tokens)
    generate_fn = load_generator(lm_model, settings)
    generate_fn([prompts[0]])  # load the model and warm up outside the timing
    rows = []
    for mode, batches in (("one at a time", [[p] for p in prompts]), ("batched", [list(prompts)])):
        began, tokens = time.perf_counter(), 0
        for batch in batches:
            tokens += sum(generate_fn(batch)[1])
        seconds = time.perf_counter() - began
        rows.append({
            "mode": mode, "prompts": len(prompts), "new_tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds,
        })  # fmt: skip
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------- pools and descriptions


def pretraining_pool(
    split: dict[str, np.ndarray], n_train: int | None, n_rest: int | None = 0, seed: int = POOL_SEED
) -> np.ndarray:
    """Positions of the molecules that get descriptions and pre-training: a seeded subset of
    ``n_train`` training molecules (all when None), plus ``n_rest`` valid and test molecules (a
    seeded subset; all when None; none when 0): label-free but transductive, as the official code's
    pool. Sorted; the subsets are prefixes of one permutation, so a smaller pool is part of a larger
    one (which `molkit.data.subsample` does not give: the smoke pool must be part of the default
    pool, whose responses ship)."""
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.asarray(split["train"]))[:n_train]
    rest = rng.permutation(np.concatenate([np.asarray(split["valid"]), np.asarray(split["test"])]))
    rest = rest[:n_rest] if n_rest is not None else rest
    return np.sort(np.concatenate([train, rest])).astype(int)


@dataclass
class Descriptions:
    """Texts of one dataset's pool: ``texts`` (variant -> list aligned with ``smiles``), the stage-1
    answer, its parsed ``properties``, descriptor ``values`` and generation ``stats`` per
    variant."""

    dataset: str
    smiles: list[str]
    texts: dict[str, list[str]]
    stage1_answer: str
    properties: PropertyMap
    values: pd.DataFrame
    stats: dict[str, GenerationStats]


def describe_molecules(
    dataset: str,
    smiles: Sequence[str],
    cache: ResponseCache,
    lm_model: str,
    max_new_tokens: int = 80,
    stage1_max_new_tokens: int = 160,
    batch_size: int = 16,
    variants: Sequence[str] = tuple(VARIANTS),
    offline: bool = False,
    progress: bool = True,
    generate_fn: Callable | None = None,
) -> Descriptions:
    """Stage 1 for ``dataset`` and stage 2 (each LLM variant) for every molecule, through
    ``cache``; ``"dsm_only"`` texts need no LLM. ``offline=True`` replays only (a miss raises).
    ``generate_fn`` replaces the LLM (tests); by default `load_generator` loads ``lm_model`` on the
    first miss."""
    smiles = list(smiles)
    values = compute_descriptors(smiles, list(DESCRIPTORS), progress=False)
    stats: dict[str, GenerationStats] = {}

    def run(prompts: list[Prompt], n_tokens: int, label: str) -> list[str]:
        settings = generation_settings(n_tokens)
        fn = generate_fn or load_generator(lm_model, settings)
        out, stats[label] = cache.generate(
            lm_model, prompts, settings, fn, batch_size=batch_size, progress=progress,
            offline=offline,
        )  # fmt: skip
        return out

    (answer,) = run([stage1_prompt(dataset)], stage1_max_new_tokens, "stage1")
    properties = map_properties(parse_property_list(answer))
    texts: dict[str, list[str]] = {}
    for variant in variants:
        rows = list(zip(smiles, values.iterrows(), strict=True))
        if variant == "dsm_only":
            texts[variant] = [dsm_text(s, row) for s, (_, row) in rows]
            continue
        prompts = [
            stage2_prompt(s, dataset, variant, properties, row.to_dict()) for s, (_, row) in rows
        ]
        texts[variant] = run(prompts, max_new_tokens, variant)
    return Descriptions(dataset, smiles, texts, answer, properties, values, stats)


def response_keys(
    desc: Descriptions, lm_model: str, max_new_tokens: int, stage1_max_new_tokens: int
) -> set[str]:
    """The response-cache keys ``desc`` was read from: its stage-1 prompt and every LLM variant's
    stage-2 prompts."""
    from molkit.models.responses import response_key

    keys = {
        response_key(
            lm_model, stage1_prompt(desc.dataset), generation_settings(stage1_max_new_tokens)
        )
    }
    for variant in desc.texts:
        if variant == "dsm_only":
            continue
        for s, (_, row) in zip(desc.smiles, desc.values.iterrows(), strict=True):
            prompt = stage2_prompt(s, desc.dataset, variant, desc.properties, row.to_dict())
            keys.add(response_key(lm_model, prompt, generation_settings(max_new_tokens)))
    return keys
