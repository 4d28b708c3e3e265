"""MolGraph-LarDo's LLM side: generation settings, the response cache, the pools that get
descriptions, stage 1 (`stage1_free`, `stage1_ranked`) and `describe_molecules` (stage 2), all
through the cache; the memory line printed before the LLM loads (`lm_memory`) and the example
table of every variant's text (`example_descriptions`).

Every LLM response goes through `molkit.models.lm.responses.ResponseCache`; the default profile's
responses ship in ``molkit/resources/lardo_responses_v2.jsonl.gz`` and are regenerated with
``molkit responses generate --profile default`` (`molkit.methods.lardo.responses`). The constrained
stage 1's log-likelihoods are stored in the same cache (as JSON text), so a replay never depends on
how another CPU rounds them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molkit.chem import DESCRIPTORS, compute_descriptors
from molkit.methods.lardo.method import (
    BASE_DESCRIPTORS,
    DSM_TEXT_DESCRIPTORS,
    RANKED_NAMES,
    VARIANTS,
    PropertyMap,
    dsm_text,
    map_properties,
    parse_property_list,
    rank_properties,
    stage1_choice_prompt,
    stage1_prompt,
    stage2_prompt,
    value_text,
)
from molkit.methods.lardo.settings import METHOD_LABELS, Settings
from molkit.models.lm.responses import GenerationStats, Prompt, ResponseCache

#: Shipped responses of the default profile (compressed, versioned; see `responses.py`).
RESPONSE_FILE = Path(__file__).resolve().parents[2] / "resources" / "lardo_responses_v2.jsonl.gz"
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
def _causal_lm(
    lm_model: str, lm_dtype: str = "fp32", lm_quantization: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` loaded once per process and loading setting: ``lm_dtype`` /
    ``lm_quantization`` as `molkit.models.lm.generation_load_kwargs` reads them
    (``"fp32"``: the precision policy's weights, as before these settings)."""
    from molkit.models.lm import generation_load_kwargs, load_causal_lm

    return load_causal_lm(lm_model, **generation_load_kwargs(lm_dtype, lm_quantization))


def load_generator(
    lm_model: str,
    settings: dict[str, Any],
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> Callable[[list[Prompt]], tuple[list[str], list[int]]]:
    """A ``generate_fn`` for `ResponseCache.generate`: answers a batch of chat prompts with
    ``lm_model`` (registry name, HF id or path; loaded on the first call, once per process, with
    ``lm_dtype`` / ``lm_quantization``: `_causal_lm`) under bf16 autocast where native. Returns
    ``(texts, new_token_counts)``."""

    def generate_fn(prompts: list[Prompt]) -> tuple[list[str], list[int]]:
        from molkit.models.lm import generate_texts

        model, tokenizer = _causal_lm(lm_model, lm_dtype, lm_quantization)
        texts = generate_texts(
            model,
            tokenizer,
            [list(p) for p in prompts],
            max_new_tokens=settings["max_new_tokens"],
            do_sample=settings["do_sample"],
            batch_size=len(prompts),
            progress=False,
            chat=True,
            generate_kwargs={"repetition_penalty": settings["repetition_penalty"]},
        )
        counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return list(texts), counts

    return generate_fn


def throughput_benchmark(
    lm_model: str,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 48,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> pd.DataFrame:
    """New tokens per second generating ``prompts`` one at a time vs in one batch (no cache
    involved).

    Returns rows ``mode`` ("one at a time" / "batched"), ``prompts``, ``new_tokens``, ``seconds``,
    ``tokens_per_s``.
    """
    settings = generation_settings(max_new_tokens)
    generate_fn = load_generator(lm_model, settings, lm_dtype, lm_quantization)
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


def description_pool(n_molecules: int, n: int | None, seed: int = POOL_SEED) -> np.ndarray:
    """Positions (sorted) of the molecules of a dataset that get descriptions: the first ``n`` of
    one seeded permutation of all ``n_molecules`` (None: all). A smaller pool is part of a larger
    one, so the smoke pool and the ablations' pools lie inside the main pool, whose responses
    ship. Every molecule of the main default pool is described, so every split's training part
    is; pre-training on a split uses only the pool's training-part molecules (never test ones)."""
    if n is not None and n < 0:
        raise ValueError(f"a pool size is a count >= 0 or None (all), not {n}")
    order = np.random.default_rng(seed).permutation(int(n_molecules))
    return np.sort(order[:n] if n is not None else order).astype(int)


@dataclass
class Descriptions:
    """Texts of one dataset's pool: ``texts`` (variant -> list aligned with ``smiles``; a variant
    described on a smaller pool holds None for the molecules outside it), the stage-1
    ``properties`` the prompts used, descriptor ``values`` and generation ``stats`` per
    variant."""

    dataset: str
    smiles: list[str]
    texts: dict[str, list[str | None]]
    properties: PropertyMap
    values: pd.DataFrame
    stats: dict[str, GenerationStats]

    def described(self, variant: str) -> np.ndarray:
        """Positions (in ``smiles``) of the molecules ``variant`` has a text for."""
        return np.array([i for i, t in enumerate(self.texts[variant]) if t is not None], int)

    def described_by_all(self, variants: Sequence[str]) -> np.ndarray:
        """Positions (sorted) of the molecules every one of ``variants`` has a text for."""
        return np.array(
            [
                i
                for i in range(len(self.smiles))
                if all(self.texts[v][i] is not None for v in variants)
            ],
            dtype=int,
        )


def _run(
    cache: ResponseCache,
    lm_model: str,
    prompts: list[Prompt],
    settings: dict[str, Any],
    fn: Callable,
    batch_size: int,
    offline: bool,
    progress: bool,
) -> tuple[list[str], GenerationStats]:
    return cache.generate(
        lm_model, prompts, settings, fn, batch_size=batch_size, progress=progress,
        offline=offline,
    )  # fmt: skip


def stage1_free(
    dataset: str,
    cache: ResponseCache,
    lm_model: str,
    max_new_tokens: int = 160,
    offline: bool = False,
    generate_fn: Callable | None = None,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> tuple[str, PropertyMap]:
    """The paper's stage 1: the free-text answer to `stage1_prompt` (through ``cache``), parsed
    and mapped to descriptors; the names without one are in ``PropertyMap.unmatched`` (the guard
    in `stage2_prompt` never passes them on). ``lm_dtype`` / ``lm_quantization``: how the LLM
    loads on a miss (`_causal_lm`)."""
    settings = keyed_settings(generation_settings(max_new_tokens), lm_dtype, lm_quantization)
    fn = generate_fn or load_generator(lm_model, settings, lm_dtype, lm_quantization)
    (answer,), _ = _run(cache, lm_model, [stage1_prompt(dataset)], settings, fn, 1, offline, False)
    return answer, map_properties(parse_property_list(answer))


def keyed_settings(
    settings: dict[str, Any], lm_dtype: str = "fp32", lm_quantization: str | None = None
) -> dict[str, Any]:
    """``settings`` as the response cache keys them: with the LLM's loading (``lm_dtype``,
    ``lm_quantization``) added where it is not the default float32 one, so that a bf16 or 4-bit
    model's answers are never replayed as the float32 model's (or the other way round); the
    default's keys stay as they were, so the shipped responses still replay."""
    out = dict(settings)
    if lm_dtype != "fp32":
        out["lm_dtype"] = lm_dtype
    if lm_quantization is not None:
        out["lm_quantization"] = lm_quantization
    return out


def ranking_settings(candidates: Sequence[str]) -> dict[str, Any]:
    """Settings that key a constrained stage-1 ranking in the response cache."""
    return {"scoring": "pmi", "candidates": list(candidates), "chat_template": True}


def load_ranker(
    lm_model: str,
    candidates: Sequence[str],
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> Callable[[list[Prompt]], list[str]]:
    """A ``generate_fn`` for `ResponseCache.generate` that answers each constrained stage-1
    prompt with the JSON of ``{option: [log-probability, tokens, log-probability under the
    content-free prompt]}`` (`molkit.models.lm.candidate_log_likelihoods`, the chat template
    applied; `rank_properties` ranks by the difference)."""

    def rank_fn(prompts: list[Prompt]) -> list[str]:
        from molkit.models.lm import candidate_log_likelihoods

        model, tokenizer = _causal_lm(lm_model, lm_dtype, lm_quantization)
        names = list(candidates)
        both = [stage1_choice_prompt(None, names), *(list(p) for p in prompts)]
        scores = candidate_log_likelihoods(model, tokenizer, both, names, chat=True)
        prior, counts = scores.log_likelihood[0], scores.n_tokens
        return [
            json.dumps({
                c: [float(s), int(n), float(p)]
                for c, s, n, p in zip(names, row, counts, prior, strict=True)
            })
            for row in scores.log_likelihood[1:]
        ]  # fmt: skip

    return rank_fn


def stage1_ranked(
    dataset: str,
    cache: ResponseCache,
    lm_model: str,
    top: int = 4,
    offline: bool = False,
    rank_fn: Callable | None = None,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> tuple[pd.DataFrame, PropertyMap]:
    """The constrained stage 1: the LLM ranks the DSM's descriptor names (`RANKED_NAMES`) by the
    log-likelihood of each as the answer to `stage1_choice_prompt` (through ``cache``), and the
    ``top`` best besides logP and MW (which every prompt carries) are kept
    (`rank_properties`)."""
    candidates = list(RANKED_NAMES.values())
    settings = keyed_settings(ranking_settings(candidates), lm_dtype, lm_quantization)
    fn = rank_fn or load_ranker(lm_model, candidates, lm_dtype, lm_quantization)
    prompt = stage1_choice_prompt(dataset, candidates)
    (text,), _ = _run(cache, lm_model, [prompt], settings, fn, 1, offline, False)
    scores = json.loads(text)
    return rank_properties(scores, top=top, keep=BASE_DESCRIPTORS)


def describe_molecules(
    dataset: str,
    smiles: Sequence[str],
    cache: ResponseCache,
    lm_model: str,
    properties: PropertyMap,
    max_new_tokens: int = 80,
    batch_size: int = 16,
    variants: Sequence[str] = tuple(VARIANTS),
    pools: dict[str, Sequence[int]] | None = None,
    offline: bool = False,
    progress: bool = True,
    generate_fn: Callable | None = None,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> Descriptions:
    """Stage 2 (each LLM variant, with the stage-1 ``properties``) for the molecules of
    ``smiles``, through ``cache``; ``"dsm_only"`` texts need no LLM. ``pools``: variant ->
    positions in ``smiles`` to describe (default: all); the others hold None. ``offline=True``
    replays only (a miss raises). ``generate_fn`` replaces the LLM (tests); by default
    `load_generator` loads ``lm_model`` on the first miss (with ``lm_dtype`` /
    ``lm_quantization``)."""
    smiles = list(smiles)
    values = compute_descriptors(smiles, list(DESCRIPTORS), progress=False)
    settings = keyed_settings(generation_settings(max_new_tokens), lm_dtype, lm_quantization)
    stats: dict[str, GenerationStats] = {}
    texts: dict[str, list[str | None]] = {}
    records = values.to_dict("records")
    for variant in variants:
        wanted = range(len(smiles)) if pools is None or variant not in pools else pools[variant]
        wanted = sorted(int(i) for i in wanted)
        out: list[str | None] = [None] * len(smiles)
        if variant == "dsm_only":
            for i in wanted:
                out[i] = dsm_text(smiles[i], records[i])
        else:
            prompts = [
                stage2_prompt(smiles[i], dataset, variant, properties, records[i]) for i in wanted
            ]
            fn = generate_fn or load_generator(lm_model, settings, lm_dtype, lm_quantization)
            got, stats[variant] = _run(
                cache, lm_model, prompts, settings, fn, batch_size, offline, progress
            )
            for i, text in zip(wanted, got, strict=True):
                out[i] = text
        texts[variant] = out
    return Descriptions(dataset, smiles, texts, properties, values, stats)


def response_keys(
    desc: Descriptions,
    lm_model: str,
    max_new_tokens: int,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> set[str]:
    """The response-cache keys of ``desc``'s stage-2 texts (every LLM variant, the molecules it
    described) for the LLM loaded with ``lm_dtype`` / ``lm_quantization`` (`keyed_settings`)."""
    from molkit.models.lm.responses import response_key

    settings = keyed_settings(generation_settings(max_new_tokens), lm_dtype, lm_quantization)
    records = desc.values.to_dict("records")
    keys = set()
    for variant in desc.texts:
        if variant == "dsm_only":
            continue
        for i in desc.described(variant):
            prompt = stage2_prompt(
                desc.smiles[i], desc.dataset, variant, desc.properties, records[i]
            )
            keys.add(response_key(lm_model, prompt, settings))
    return keys


def stage1_keys(
    dataset: str,
    lm_model: str,
    max_new_tokens: int,
    lm_dtype: str = "fp32",
    lm_quantization: str | None = None,
) -> set[str]:
    """The response-cache keys of ``dataset``'s two stage-1 calls (free text and ranking) for the
    LLM loaded with ``lm_dtype`` / ``lm_quantization`` (`keyed_settings`)."""
    from molkit.models.lm.responses import response_key

    candidates = list(RANKED_NAMES.values())
    free = keyed_settings(generation_settings(max_new_tokens), lm_dtype, lm_quantization)
    ranked = keyed_settings(ranking_settings(candidates), lm_dtype, lm_quantization)
    return {
        response_key(lm_model, stage1_prompt(dataset), free),
        response_key(lm_model, stage1_choice_prompt(dataset, candidates), ranked),
    }


# ------------------------------------------------------------------------------ memory

#: New tokens per prompt of the generation-speed measurement (`generation_speed`).
SPEED_NEW_TOKENS = 32
#: Tokens of a stage-2 prompt with its chat template (an allowance for the memory estimate).
PROMPT_TOKENS = 512


def lm_memory(settings: Settings, device=None, free_bytes: int | None = None) -> str:
    """The memory line printed before the LLM stages (`molkit.models.lm.memory.lm_memory_line`):
    generation only (no training) with ``lm_dtype`` / ``lm_quantization``, at the batch that will
    load the LLM: ``lm_batch_size`` prompts of `PROMPT_TOKENS` plus the longer of
    ``max_new_tokens`` / ``stage1_max_new_tokens`` when responses are generated; with ``offline``
    (every response replays from the cache) only `generation_speed` loads it, for
    ``throughput_prompts`` prompts of `PROMPT_TOKENS` + `SPEED_NEW_TOKENS`, and with
    ``throughput_prompts`` = 0 it never loads (the line says so). Raises
    `molkit.models.lm.memory.InsufficientMemoryError` naming the settings to change when it does not
    fit ``device`` (``free_bytes``: instead of its free memory); a line saying the estimate is
    unavailable when the config cannot be had (with ``offline``, from the local files only)."""
    from molkit.models.lm.memory import lm_memory_line

    if settings.offline and not settings.throughput_prompts:
        return (
            f"memory: {settings.lm_model} is not loaded (offline: every response replays from "
            "the cache; throughput_prompts = 0)"
        )
    if settings.offline:
        batch, seq_len = settings.throughput_prompts, PROMPT_TOKENS + SPEED_NEW_TOKENS
        hint = "lm_quantization='4bit' or throughput_prompts"
    else:
        batch = settings.lm_batch_size
        seq_len = PROMPT_TOKENS + max(settings.max_new_tokens, settings.stage1_max_new_tokens)
        hint = "lm_quantization='4bit', lm_batch_size or max_new_tokens"
    return lm_memory_line(
        settings.lm_model, settings.lm_dtype, settings.lm_quantization, hint, device, free_bytes,
        settings.offline, training=False, batch_size=batch, seq_len=seq_len,
    )  # fmt: skip


def example_descriptions(desc: Descriptions, n: int = 3) -> pd.DataFrame:
    """The first ``n`` molecules every variant described: RDKit values beside each variant's
    text."""
    rows = []
    for i in desc.described_by_all(tuple(VARIANTS))[:n]:
        values = desc.values.iloc[i]
        rdkit = "; ".join(value_text(k, values[k]) for k in DSM_TEXT_DESCRIPTORS[:4])
        row = {"smiles": desc.smiles[i], "RDKit": rdkit}
        row.update({METHOD_LABELS[v]: desc.texts[v][i] for v in VARIANTS})
        rows.append(row)
    return pd.DataFrame(rows)
