"""The LarDo responses a profile needs: regenerating them (``molkit responses generate``,
`generate_responses`) and what a profile asks of the LLM, said plainly (`response_budget`: which
LLM, how many responses, how many new tokens, what the shipped ones cost)."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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
from molkit.methods.lardo.method import LLM_VARIANTS
from molkit.methods.lardo.settings import Settings

#: Parameters of the LLMs the profiles name (the model cards'), to scale a measured speed.
PARAMETERS = {"smollm2-135m-instruct": 134.5e6, "mistralai/Mistral-7B-Instruct-v0.2": 7.24e9}


def response_plan(profile: str, lm_model: str | None = None) -> list[tuple[str, str, str, list]]:
    """``(stage, variant, dataset, positions)`` in the order `generate_responses` generates them:
    for ``default`` the smoke pools (prefixes of the default pools) first, so a smoke run can
    replay early; then variant by variant over the datasets (LarDo on ``pool``, the ablations on
    ``ablation_pool``). Positions index the dataset as `molkit.data.load_dataset` returns it."""
    from molkit.data import load_dataset

    plan = []
    for stage in ["smoke", profile] if profile == "default" else [profile]:
        part = Settings.for_profile(stage, lm_model=lm_model)
        for variant in LLM_VARIANTS:
            n = part.pool if variant == "lardo" else part.ablation_pool
            for name in part.datasets:
                positions = description_pool(len(load_dataset(name)), n).tolist()
                plan.append((stage, variant, name, positions))
    return plan


def default_output(profile: str) -> Path:
    """Where `generate_responses` exports a profile's responses: the shipped `RESPONSE_FILE` for
    ``default``, else ``<molkit cache>/responses/lardo_responses_<profile>.jsonl.gz`` (so a
    ``full`` run never overwrites the file the default profile replays)."""
    if profile == "default":
        return RESPONSE_FILE
    from molkit.models.cache import cache_dir

    return cache_dir("responses") / f"lardo_responses_{profile}.jsonl.gz"


def generate_responses(
    profile: str = "default",
    out: str | Path | None = None,
    writable: str | Path | None = "default",
    threads: int | None = None,
    progress: bool = True,
    lm_model: str | None = None,
) -> Path:
    """Generate (resumably: finished responses are hits) every response a profile's notebook
    replays, both stage-1 modes included, and export them to ``out`` (default: `default_output`).
    ``lm_model``: a Hugging Face id (or registry name, or folder) instead of the profile's LLM.
    ``threads``: torch threads (None: every core). Prints one line per (stage, variant, dataset)
    with its wall time and tokens per second, and returns the path. The responses also stay in
    the writable cache, where a notebook run with the same settings replays them."""
    from molkit.data import load_dataset
    from molkit.models.runtime import cpu_name, default_device, inference_dtype, set_threads

    n_threads = set_threads(threads)
    began_all = time.perf_counter()
    sizes = Settings.for_profile(profile, lm_model=lm_model)
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
    for stage, variant, name, positions in response_plan(profile, lm_model):
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
    command = REGENERATE_COMMAND.replace("--profile default", f"--profile {profile}")
    path = cache.export(
        out if out is not None else default_output(profile),
        keys=keys,
        profile=profile,
        command=command if lm_model is None else f"{command} (lm_model={lm_model})",
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


# --------------------------------------------------------------------- what a profile asks for


@dataclass(frozen=True)
class ShippedCost:
    """The shipped response file's header: records, new tokens, generation seconds, the machine,
    dtype and threads that made it, and the command."""

    records: int
    new_tokens: int
    seconds: int
    dtype: str
    threads: int
    machine: str
    command: str
    model: str

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else float("nan")

    def line(self) -> str:
        return (
            f"shipped responses: {self.records} records of {self.model} from `{self.command}` "
            f"({self.dtype}, {self.threads} threads, {self.machine}); {self.new_tokens} new tokens "
            f"in {self.seconds} s of generation ({self.tokens_per_second:.0f} tokens/s)"
        )


def shipped_cost(path: str | Path | None = None) -> ShippedCost:
    """The header of the shipped response file (default `RESPONSE_FILE`) as a `ShippedCost`."""
    with gzip.open(path or RESPONSE_FILE, "rt", encoding="utf-8") as handle:
        head = json.loads(handle.readline())["header"]
    return ShippedCost(
        records=int(head["records"]), new_tokens=int(head.get("new_tokens") or 0),
        seconds=int(head.get("generation_seconds") or 0), dtype=str(head.get("dtype", "?")),
        threads=int(head.get("torch_threads") or 0), machine=str(head.get("machine", "?")),
        command=str(head.get("command", "?")), model=", ".join(head.get("models", [])),
    )  # fmt: skip


@dataclass(frozen=True)
class ResponseBudget:
    """What a profile asks of the LLM: ``table`` (per dataset: ``molecules``, the responses of
    each LLM variant, ``stage 1``), ``responses`` in all, the new tokens at most
    (``max_new_tokens`` each), the ``shipped`` file's measured cost to scale from, and the
    datasets whose files are ``missing`` here (not counted)."""

    profile: str
    lm_model: str
    quantization: str
    max_new_tokens: int
    stage1_max_new_tokens: int
    table: pd.DataFrame
    shipped: ShippedCost
    missing: tuple[str, ...] = ()

    @property
    def responses(self) -> int:
        return int(self.table.drop(columns="molecules").to_numpy().sum())

    @property
    def new_tokens_at_most(self) -> int:
        """Stage-2 responses at ``max_new_tokens`` each, plus one free-text stage-1 answer per
        dataset at ``stage1_max_new_tokens`` (the ranked stage 1 scores, it generates nothing)."""
        stage2 = int(self.table[list(LLM_VARIANTS)].to_numpy().sum())
        return stage2 * self.max_new_tokens + len(self.table) * self.stage1_max_new_tokens

    def hours_extrapolated(self) -> float:
        """Hours at the shipped file's measured speed, scaled by the two LLMs' parameter counts
        (decoding cost grows with the parameters): an extrapolation to the shipped file's machine,
        NaN when a parameter count is unknown."""
        own = PARAMETERS.get(self.shipped.model)
        theirs = PARAMETERS.get(self.lm_model)
        if not own or not theirs:
            return float("nan")
        rate = self.shipped.tokens_per_second * own / theirs
        return self.new_tokens_at_most / rate / 3600

    def text(self) -> str:
        """The budget as printable lines: the model, the count, the tokens, how to regenerate,
        the measured cost of the shipped file and the extrapolation (labelled as such)."""
        per = self.shipped.new_tokens / self.shipped.records if self.shipped.records else 0.0
        command = "make responses" if self.profile == "default" else (
            f"molkit responses generate --profile {self.profile}"
        )  # fmt: skip
        lines = [
            f"The {self.profile} profile describes {int(self.table['molecules'].sum()):,} "
            f"molecules of {len(self.table)} datasets with {self.lm_model}"
            f"{f' ({self.quantization})' if self.quantization else ''}: {self.responses:,} "
            f"responses in all (stage 1 included), at most {self.max_new_tokens} new tokens "
            f"per description: {self.new_tokens_at_most:,} new tokens at most.",
            f"Regenerate them with `{command}` (resumable; the model is the profile's "
            f"lm_model, a Hugging Face id; another: lardo.generate_responses("
            f"'{self.profile}', lm_model='<Hugging Face id>')).",
            self.shipped.line() + f", {per:.1f} new tokens per response.",
        ]
        if self.missing:
            lines.insert(1, f"Not counted (their files are not available here): "
                            f"{', '.join(self.missing)}.")  # fmt: skip
        hours = self.hours_extrapolated()
        if hours == hours:  # not NaN
            lines.append(
                f"Extrapolated, not measured: at that speed scaled by the parameter counts "
                f"({PARAMETERS[self.shipped.model] / 1e6:.1f}M -> "
                f"{PARAMETERS[self.lm_model] / 1e9:.2f}B), the same machine would need about "
                f"{hours:,.0f} h; no GPU run of this profile has been timed."
            )
        return "\n".join(lines)


def _molecules(name: str) -> int | None:
    """Molecules of a dataset: the data rows of its registered file (no parsing), or the rows
    of a CSV file as `molkit.data.load_dataset` keeps them; None when the file cannot be had
    here (no mirror, no cache, no network)."""
    from molkit.data import DataError, fetch_file, get_spec, is_csv_path, load_dataset

    if is_csv_path(name):
        return len(load_dataset(name))
    try:
        path = fetch_file(get_spec(name).files[0])
    except DataError:
        return None
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip()) - 1


def response_budget(profile: str = "full", lm_model: str | None = None) -> ResponseBudget:
    """What ``profile``'s notebook asks of the LLM (`ResponseBudget`): per dataset, the responses
    of LarDo on ``pool`` molecules, the two ablations on ``ablation_pool`` and the two stage-1
    calls; molecules counted as the data rows of each dataset's file."""
    sizes = Settings.for_profile(profile, lm_model=lm_model)
    rows, missing = [], []
    for name in sizes.datasets:
        n = _molecules(name)
        if n is None:
            missing.append(name)
            continue
        row = {"dataset": name, "molecules": n}
        for variant in LLM_VARIANTS:
            cap = sizes.pool if variant == "lardo" else sizes.ablation_pool
            row[variant] = n if cap is None else min(n, cap)
        row["stage 1"] = 2
        rows.append(row)
    return ResponseBudget(
        profile=profile, lm_model=sizes.lm_model, quantization=sizes.lm_quantization or "",
        max_new_tokens=sizes.max_new_tokens, stage1_max_new_tokens=sizes.stage1_max_new_tokens,
        table=pd.DataFrame(rows, columns=["dataset", "molecules", *LLM_VARIANTS, "stage 1"])
        .set_index("dataset"), shipped=shipped_cost(), missing=tuple(missing),
    )  # fmt: skip
