"""Regenerating the shipped LarDo responses (``molkit responses generate``, `molkit.cli`)."""

from __future__ import annotations

import time
from pathlib import Path

from molkit.methods.lardo.descriptions import (
    REGENERATE_COMMAND,
    RESPONSE_FILE,
    describe_molecules,
    pretraining_pool,
    response_cache,
    response_keys,
)
from molkit.methods.lardo.experiment import Settings
from molkit.methods.lardo.method import LLM_VARIANTS


def response_plan(profile: str) -> list[tuple[str, str, str, list[str]]]:
    """``(stage, variant, dataset, smiles)`` in the order `generate_responses` generates them: for
    ``default`` the smoke pool (a prefix of the default pool) first, so the smoke run can replay
    early; then variant by variant over the datasets, the transductive extra last."""
    from molkit.data import load_dataset, scaffold_split

    plan = []
    for stage in ["smoke", profile] if profile == "default" else [profile]:
        part = Settings.for_profile(stage)
        pools = {}
        for name in part.datasets:
            smiles = load_dataset(name)["smiles"].tolist()
            split = scaffold_split(smiles, (0.8, 0.1, 0.1))
            pools[name] = [
                [smiles[i] for i in pretraining_pool(split, part.pool_train, n_rest)]
                for n_rest in (0, part.pool_rest)
            ]
        plan += [(stage, v, name, pools[name][0]) for v in LLM_VARIANTS for name in pools]
        plan += [(stage, "lardo", name, pools[name][1]) for name in pools]
    return plan


def generate_responses(
    profile: str = "default",
    out: str | Path | None = None,
    writable: str | Path | None = "default",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate (resumably: finished responses are hits) every response a profile's notebook
    replays and export them to ``out`` (default: the shipped `RESPONSE_FILE`). ``threads``: torch
    threads (None: every core). Prints one line per (variant, dataset) and returns the path."""
    from molkit.models.runtime import set_threads

    set_threads(threads)
    began_all = time.perf_counter()
    sizes = Settings.for_profile(profile)
    cache = response_cache(writable, shipped=False)
    keys: set[str] = set()
    for stage, variant, name, smiles in response_plan(profile):
        began = time.perf_counter()
        desc = describe_molecules(
            name, smiles, cache, sizes.lm_model, sizes.max_new_tokens, sizes.stage1_max_new_tokens,
            sizes.lm_batch_size, variants=(variant,), progress=progress,
        )  # fmt: skip
        keys |= response_keys(
            desc, sizes.lm_model, sizes.max_new_tokens, sizes.stage1_max_new_tokens
        )
        st = desc.stats[variant]
        print(
            f"[{stage}] {name} {variant} ({len(smiles)} molecules): {st.misses} generated, "
            f"{st.hits} cached, {st.new_tokens} new tokens in {time.perf_counter() - began:.0f} s "
            f"({st.tokens_per_second:.1f} tokens/s)",
            flush=True,
        )
    path = cache.export(
        out if out is not None else RESPONSE_FILE,
        keys=keys,
        profile=profile,
        command=REGENERATE_COMMAND.replace("--profile default", f"--profile {profile}"),
    )
    print(f"wrote {path} in {time.perf_counter() - began_all:.0f} s")
    return Path(path)
