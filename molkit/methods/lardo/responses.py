"""Regenerating the shipped LarDo responses (``molkit responses generate``, `molkit.cli`)."""

from __future__ import annotations

import time
from pathlib import Path

from molkit.methods.lardo.descriptions import (
    REGENERATE_COMMAND,
    RESPONSE_FILE,
    describe_molecules,
    description_pool,
    response_cache,
    response_keys,
    stage1_free,
    stage1_keys,
    stage1_ranked,
)
from molkit.methods.lardo.experiment import Settings
from molkit.methods.lardo.method import LLM_VARIANTS


def response_plan(profile: str) -> list[tuple[str, str, str, list[int]]]:
    """``(stage, variant, dataset, positions)`` in the order `generate_responses` generates them:
    for ``default`` the smoke pools (prefixes of the default pools) first, so a smoke run can
    replay early; then variant by variant over the datasets (LarDo on ``pool``, the ablations on
    ``ablation_pool``). Positions index the dataset as `molkit.data.load_dataset` returns it."""
    from molkit.data import load_dataset

    plan = []
    for stage in ["smoke", profile] if profile == "default" else [profile]:
        part = Settings.for_profile(stage)
        for variant in LLM_VARIANTS:
            n = part.pool if variant == "lardo" else part.ablation_pool
            for name in part.datasets:
                positions = description_pool(len(load_dataset(name)), n).tolist()
                plan.append((stage, variant, name, positions))
    return plan


def generate_responses(
    profile: str = "default",
    out: str | Path | None = None,
    writable: str | Path | None = "default",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate (resumably: finished responses are hits) every response a profile's notebook
    replays, both stage-1 modes included, and export them to ``out`` (default: the shipped
    `RESPONSE_FILE`). ``threads``: torch threads (None: every core). Prints one line per (stage,
    variant, dataset) with its wall time and tokens per second, and returns the path."""
    from molkit.data import load_dataset
    from molkit.models.runtime import cpu_name, default_device, inference_dtype, set_threads

    n_threads = set_threads(threads)
    began_all = time.perf_counter()
    sizes = Settings.for_profile(profile)
    cache = response_cache(writable, shipped=False)
    keys: set[str] = set()
    properties = {}
    loading = {"lm_dtype": sizes.lm_dtype, "lm_quantization": sizes.lm_quantization}
    for name in sizes.datasets:
        free = stage1_free(name, cache, sizes.lm_model, sizes.stage1_max_new_tokens, **loading)[1]
        ranked = stage1_ranked(name, cache, sizes.lm_model, sizes.stage1_top, **loading)[1]
        properties[name] = ranked if sizes.stage1 == "ranked" else free
        keys |= stage1_keys(name, sizes.lm_model, sizes.stage1_max_new_tokens, **loading)
    tokens, seconds = 0, 0.0
    for stage, variant, name, positions in response_plan(profile):
        began = time.perf_counter()
        smiles = load_dataset(name)["smiles"].tolist()
        desc = describe_molecules(
            name, [smiles[i] for i in positions], cache, sizes.lm_model, properties[name],
            sizes.max_new_tokens, sizes.lm_batch_size, variants=(variant,), progress=progress,
            **loading,
        )  # fmt: skip
        keys |= response_keys(desc, sizes.lm_model, sizes.max_new_tokens, **loading)
        st = desc.stats[variant]
        tokens, seconds = tokens + st.new_tokens, seconds + st.seconds
        print(
            f"[{stage}] {name} {variant} ({len(positions)} molecules): {st.misses} generated, "
            f"{st.hits} cached, {st.new_tokens} new tokens in {time.perf_counter() - began:.0f} s "
            f"({st.tokens_per_second:.1f} tokens/s)",
            flush=True,
        )
    path = cache.export(
        out if out is not None else RESPONSE_FILE,
        keys=keys,
        profile=profile,
        command=REGENERATE_COMMAND.replace("--profile default", f"--profile {profile}"),
        dtype=str(inference_dtype(default_device())).removeprefix("torch."),
        torch_threads=n_threads,
        machine=cpu_name(),
        generation_seconds=round(seconds),
        new_tokens=tokens,
    )
    rate = tokens / seconds if seconds else float("nan")
    print(
        f"wrote {path} ({len(keys)} responses) in {time.perf_counter() - began_all:.0f} s; "
        f"{tokens} new tokens generated in {seconds:.0f} s of model time ({rate:.1f} tokens/s)"
    )
    return Path(path)
