"""MolGraph-LarDo (arXiv 2408.10124): LLM descriptions calibrated by a domain model, graph-text pre-training.

1. **Two-stage prompting.** Stage 1 asks the LLM, once per dataset, which molecular properties bear on
   the task (:func:`stage1_prompt`, parsed by :func:`parse_property_list`). Stage 2 gives it one molecule's
   SMILES, those properties and the values the domain model computed, and asks for a description
   (:func:`stage2_prompt`).
2. **Domain-specific small model (DSM).** RDKit descriptors from ``molkit.chem``: every property the LLM
   names is mapped to a descriptor where one exists (:func:`map_properties`); :func:`dsm_text` writes the
   descriptors and functional groups as sentences without any LLM (a baseline).
3. **Calibration, measured.** :func:`extract_claims` finds the values and qualitative claims a description
   makes about RDKit-computable properties and :func:`calibration_table` checks them against RDKit.
4. **Graph-text contrastive pre-training** (:class:`GraphTextCLIP`, :func:`clip_loss`, :func:`pretrain_clip`):
   a GIN and a frozen sentence encoder's embeddings, projection heads, symmetric InfoNCE with a learnable
   temperature, on a parameterised pool of molecules (training molecules by default).
5. **Fine-tuning** from the pre-trained encoder (:func:`build_predictor` copies its weights: unlike the
   official code, which never loads them) and evaluation on scaffold splits (:func:`run_benchmark`).

Every LLM response goes through :class:`molkit.models.responses.ResponseCache`; the default profile's
responses ship in ``molkit/resources/lardo_responses_v1.jsonl.gz`` and are regenerated with
``python -m molkit.methods.lardo generate --profile default``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from molkit.chem import (
    DESCRIPTORS,
    compute_descriptors,
    format_descriptor,
    functional_groups,
    match_property,
)
from molkit.models.responses import GenerationStats, Prompt, ResponseCache

__all__ = [
    "DATASET_INFO",
    "LLM_VARIANTS",
    "METHOD_LABELS",
    "PROFILE_SIZES",
    "REGENERATE_COMMAND",
    "RESPONSE_FILE",
    "SYSTEM_PROMPT",
    "VARIANTS",
    "Benchmark",
    "Claim",
    "Descriptions",
    "GraphTextCLIP",
    "PropertyMap",
    "build_predictor",
    "calibration_summary",
    "calibration_table",
    "clip_loss",
    "describe_dataset",
    "describe_molecules",
    "dsm_text",
    "example_descriptions",
    "extract_claims",
    "generate_profile",
    "generation_settings",
    "lardo_verdict",
    "load_generator",
    "map_properties",
    "morgan_rf_baseline",
    "parse_property_list",
    "plot_calibration",
    "plot_examples",
    "plot_results",
    "pretrain_clip",
    "pretraining_pool",
    "probe_scores",
    "prompt_descriptors",
    "response_cache",
    "run_benchmark",
    "stage1_prompt",
    "stage1_report",
    "stage2_prompt",
    "throughput_benchmark",
]

#: The paper's system text (Mistral-7B-Instruct-v0.2 in the official code).
SYSTEM_PROMPT = "You are a biochemistry expert."

#: Shipped responses of the default profile (compressed, versioned; see ``generate`` below).
RESPONSE_FILE = Path(__file__).resolve().parents[1] / "resources" / "lardo_responses_v1.jsonl.gz"
REGENERATE_COMMAND = "python -m molkit.methods.lardo generate --profile default"

#: Text variants: full LarDo, the official code's two ablations, and the LLM-free DSM text.
VARIANTS = {
    "lardo": "stage-1 properties + DSM values in the prompt",
    "no_dsm": "stage-1 properties, no DSM values (the LLM guesses)",
    "no_stage1": "no stage-1 properties: generic description with logP and MW values",
    "dsm_only": "descriptors and functional groups written as sentences, no LLM",
}
LLM_VARIANTS = ("lardo", "no_dsm", "no_stage1")

#: Dataset name, description, task type and target for the stage-1 prompt (as the official code gives them).
DATASET_INFO: dict[str, dict[str, str]] = {
    "bbbp": {"title": "BBBP", "task": "classification", "target": "blood-brain barrier penetration (penetrates or not)",
             "description": "The Blood-Brain Barrier Penetration dataset records whether compounds cross the "
                            "blood-brain barrier, a key property for drugs acting on the central nervous system."},
    "bace": {"title": "BACE", "task": "classification", "target": "inhibition of human beta-secretase 1 (BACE-1)",
             "description": "The BACE dataset gives binding results for a set of inhibitors of human "
                            "beta-secretase 1 (BACE-1), a target in Alzheimer's disease."},
    "esol": {"title": "ESOL", "task": "regression", "target": "water solubility (log mol/L)",
             "description": "ESOL is a small dataset of water solubility data for common organic small molecules."},
    "freesolv": {"title": "FreeSolv", "task": "regression", "target": "hydration free energy in water (kcal/mol)",
                 "description": "FreeSolv gives experimental and calculated hydration free energies of small "
                                "molecules in water."},
    "lipo": {"title": "Lipophilicity", "task": "regression", "target": "octanol/water distribution coefficient logD at pH 7.4",
             "description": "The Lipophilicity dataset gives experimental octanol/water distribution coefficients "
                            "(logD at pH 7.4) of drug-like compounds."},
    "clintox": {"title": "ClinTox", "task": "classification", "target": "FDA approval and clinical-trial toxicity",
                "description": "ClinTox compares drugs approved by the FDA with drugs that failed clinical trials "
                               "for toxicity reasons."},
    "tox21": {"title": "Tox21", "task": "classification", "target": "toxicity in 12 nuclear-receptor and stress-response assays",
              "description": "Tox21 measures the toxicity of compounds on 12 biological targets."},
    "sider": {"title": "SIDER", "task": "classification", "target": "adverse drug reactions in 27 system organ classes",
              "description": "SIDER is a database of marketed drugs and their adverse drug reactions."},
    "hiv": {"title": "HIV", "task": "classification", "target": "inhibition of HIV replication",
            "description": "The HIV dataset tests the ability of compounds to inhibit HIV replication."},
}

#: Descriptors the stage-2 prompt always carries (the official prompt: Crippen logP and molecular weight).
BASE_DESCRIPTORS = ("logp", "mol_weight")
#: Descriptors the DSM-only text writes out.
DSM_TEXT_DESCRIPTORS = ("logp", "mol_weight", "tpsa", "hbd", "hba", "rotatable_bonds", "aromatic_rings")
_UNITS = {"mol_weight": " g/mol", "tpsa": " Å²", "exact_mass": " Da"}
_LABELS = {"logp": "logP", "mol_weight": "molecular weight", "tpsa": "TPSA", "hbd": "hydrogen-bond donors",
           "hba": "hydrogen-bond acceptors", "rotatable_bonds": "rotatable bonds", "aromatic_rings": "aromatic rings",
           "ring_count": "rings", "heavy_atoms": "heavy atoms", "fsp3": "Fsp3", "formal_charge": "formal charge",
           "heteroatoms": "heteroatoms", "molar_refractivity": "molar refractivity", "qed": "QED",
           "stereocenters": "stereocentres", "lipinski_violations": "Lipinski violations", "exact_mass": "exact mass"}

#: Sizes per profile (passed to ``molkit.setup(sizes=...)``). ``pool_train``: training molecules per dataset
#: that get descriptions and pre-training (a seeded subset of the scaffold split's training part; None: all);
#: ``pool_rest``: valid/test molecules added for the transductive pool (None: all). The smoke pool is a prefix
#: of the default pool, so smoke replays the shipped default responses.
PROFILE_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"datasets": ["bbbp", "esol"], "seeds": [0], "pool_train": 16, "pool_rest": 8, "finetune_max": 96,
              "hidden": 32, "num_layers": 5, "pretrain_epochs": 1, "finetune_epochs": 1, "patience": 1,
              "finetune_lr": 1e-3, "batch_size": 32, "lm": "smollm2-135m-instruct", "text_encoder": "minilm-l6", "max_new_tokens": 64,
              "stage1_max_new_tokens": 128, "lm_batch_size": 8, "offline": True, "rf_trees": 50,
              "throughput_prompts": 0, "n_examples": 2},
    "default": {"datasets": ["bbbp", "bace", "esol"], "seeds": [0, 1, 2], "pool_train": 64, "pool_rest": 16,
                "finetune_max": None, "hidden": 64, "num_layers": 5, "pretrain_epochs": 30, "finetune_epochs": 8,
                "patience": 3, "finetune_lr": 1e-3, "batch_size": 64, "lm": "smollm2-135m-instruct", "text_encoder": "minilm-l6",
                "max_new_tokens": 64, "stage1_max_new_tokens": 128, "lm_batch_size": 64, "offline": True,
                "rf_trees": 300, "throughput_prompts": 4, "n_examples": 3},
    "full": {"datasets": ["bbbp", "bace", "clintox", "tox21", "sider", "hiv", "esol", "freesolv", "lipo"],
             "seeds": [0, 1, 2], "pool_train": None, "pool_rest": None, "finetune_max": None, "hidden": 300,
             "num_layers": 5, "pretrain_epochs": 100, "finetune_epochs": 100, "patience": 20, "finetune_lr": 5e-4,
             "batch_size": 32,
             "lm": "mistralai/Mistral-7B-Instruct-v0.2", "text_encoder": "sentence-transformers/all-mpnet-base-v2",
             "max_new_tokens": 256, "stage1_max_new_tokens": 256, "lm_batch_size": 16, "offline": False,
             "rf_trees": 500, "throughput_prompts": 8, "n_examples": 4},
}

POOL_SEED = 0
MAX_LOGIT_SCALE = math.log(100.0)


# ----------------------------------------------------------------------------- stage 1: properties


def describe_dataset(name: str) -> dict[str, str]:
    """Title, description, task type and target of a dataset, for the stage-1 prompt."""
    if name not in DATASET_INFO:
        raise KeyError(f"no stage-1 description for dataset {name!r}; add it to DATASET_INFO (known: {sorted(DATASET_INFO)})")
    return DATASET_INFO[name]


def stage1_prompt(dataset: str) -> list[dict[str, str]]:
    """Chat messages asking which molecular properties bear on ``dataset``'s task (official wording)."""
    info = describe_dataset(dataset)
    user = (
        f"The dataset is {info['title']}. {info['description']} The task is {info['task']}: predict "
        f"{info['target']}. Given the SMILES of a molecule, what are the molecular properties related to the "
        "task? Answer with a numbered list of property names only, one per line."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,2}[.)]|[a-z][.)])\s*", re.IGNORECASE)


def parse_property_list(text: str, max_properties: int = 10) -> list[str]:
    """Property names from a stage-1 answer: numbered/bulleted lines or one comma-separated line.

    Markdown emphasis is dropped, and each item is cut at its first ':' or ' - ' (the explanation that
    often follows the name). Case-insensitive duplicates are removed; order is kept.
    """
    if not isinstance(text, str):
        raise TypeError(f"a stage-1 answer is text, not {type(text).__name__}")
    lines = [ln for ln in text.replace("**", "").replace("__", "").splitlines() if ln.strip()]
    listed = [ln for ln in lines if _BULLET.match(ln)]
    if listed:
        items = [_BULLET.sub("", ln) for ln in listed]
    else:
        items = [part for ln in lines for part in re.split(r",|;|\band\b", ln)]
    names: list[str] = []
    for item in items:
        name = re.split(r":|\s[-–—]\s|\.\s", item, maxsplit=1)[0].strip(" .*`'\"")
        if 2 <= len(name) <= 60 and len(name.split()) <= 8 and name.lower() not in {n.lower() for n in names}:
            names.append(name)
        if len(names) == max_properties:
            break
    return names


@dataclass
class PropertyMap:
    """Stage-1 property names mapped to ``DESCRIPTORS`` keys; ``unmatched`` found no descriptor."""

    names: list[str]
    matched: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)

    @property
    def descriptors(self) -> list[str]:
        """Distinct descriptor keys in the order the LLM named them."""
        return list(dict.fromkeys(self.matched.values()))


def map_properties(names: Sequence[str]) -> PropertyMap:
    """Map each property name to a descriptor with :func:`molkit.chem.match_property` (None: unmatched)."""
    out = PropertyMap(list(names))
    for name in names:
        key = match_property(name)
        if key is None:
            out.unmatched.append(name)
        else:
            out.matched[name] = key
    return out


# ----------------------------------------------------------------------------- stage 2 and DSM text


def prompt_descriptors(properties: PropertyMap | None, max_descriptors: int = 6) -> list[str]:
    """Descriptors whose values a stage-2 prompt carries: logP and MW, then the stage-1 ones (at most ``max_descriptors``)."""
    extra = [] if properties is None else properties.descriptors
    return list(dict.fromkeys([*BASE_DESCRIPTORS, *extra]))[:max_descriptors]


def _value_text(name: str, value: float) -> str:
    return f"{_LABELS.get(name, name)} = {format_descriptor(name, value)}{_UNITS.get(name, '')}"


def stage2_prompt(
    smiles: str,
    dataset: str,
    variant: str,
    properties: PropertyMap | None,
    values: dict[str, float] | None = None,
) -> list[dict[str, str]]:
    """Chat messages asking for one molecule's description.

    ``variant``: ``"lardo"`` (stage-1 properties and the DSM ``values``), ``"no_dsm"`` (properties, no values)
    or ``"no_stage1"`` (no property list; the official prompt's logP and molecular weight values).
    ``values`` maps descriptor keys to numbers (from :func:`molkit.chem.compute_descriptors`).
    """
    if variant not in LLM_VARIANTS:
        raise ValueError(f"variant must be one of {LLM_VARIANTS} for an LLM prompt, not {variant!r}")
    info = describe_dataset(dataset)
    wanted = prompt_descriptors(properties if variant != "no_stage1" else None)
    if variant != "no_dsm":
        missing = [k for k in wanted if values is None or k not in values]
        if missing:
            raise ValueError(f"variant {variant!r} needs DSM values for {missing}; pass values=compute_descriptors(...)")
    lines = [f"The SMILES of a molecule is {smiles}."]
    if variant != "no_dsm":
        lines.append("Values computed by RDKit: " + "; ".join(_value_text(k, values[k]) for k in wanted) + ".")
    if variant == "no_stage1":
        lines.append("Describe the molecule and its properties. Use the values given.")
    else:
        names = properties.names if properties is not None and properties.names else [_LABELS[k] for k in wanted]
        lines.append(f"The task is to predict {info['target']}. Describe the molecule in terms of these properties: "
                     + ", ".join(names) + ".")
        if variant == "lardo":
            lines.append("Use the values given.")
    lines.append("Give each answer in brackets, e.g. [lipophilicity: ...].")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": " ".join(lines)}]


def dsm_text(smiles: str, values: dict[str, float] | None = None) -> str:
    """The LLM-free description: RDKit descriptors and functional groups written as sentences."""
    if values is None:
        values = compute_descriptors([smiles], list(DSM_TEXT_DESCRIPTORS), progress=False).iloc[0].to_dict()
    parts = [f"{_LABELS[k]} {format_descriptor(k, values[k])}{_UNITS.get(k, '')}" for k in DSM_TEXT_DESCRIPTORS]
    groups = sorted({g.name.replace("_", " ") for g in functional_groups(smiles)})
    text = "The molecule has " + ", ".join(parts) + "."
    text += (" Functional groups: " + ", ".join(groups) + ".") if groups else " It has no listed functional group."
    return text


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Claim:
    """One statement a description makes about an RDKit-computable property."""

    descriptor: str
    kind: str  # "value" | "qualitative"
    text: str
    stated: float | None
    computed: float
    contradicts: bool


_NAME_PATTERNS = {
    "logp": r"c?log\s?p\b|partition coefficient|lipophilicity",
    "mol_weight": r"molecular weight|molecular mass|molar mass|\bmw\b|mol\. wt",
    "tpsa": r"\btpsa\b|polar surface area|\bpsa\b",
    "hbd": r"(?:hydrogen|h)[- ]?bond donors?|\bhbd\b",
    "hba": r"(?:hydrogen|h)[- ]?bond acceptors?|\bhba\b",
    "rotatable_bonds": r"rotatable bonds?",
    "aromatic_rings": r"aromatic rings?",
}
_COUNTS = {"hbd", "hba", "rotatable_bonds", "aromatic_rings"}
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_VALUE_AFTER = {k: re.compile(rf"({p})[^0-9\n;\[\]]{{0,30}}?(?<![a-z\d]){_NUMBER}", re.IGNORECASE) for k, p in _NAME_PATTERNS.items()}
_VALUE_BEFORE = {k: re.compile(rf"(?<![\d.]){_NUMBER}\s+({p})", re.IGNORECASE) for k, p in _NAME_PATTERNS.items() if k in _COUNTS}
#: (pattern, descriptor, contradicted when) for qualitative claims.
_QUALITATIVE: tuple[tuple[re.Pattern, str, Callable[[float], bool]], ...] = tuple(
    (re.compile(p, re.IGNORECASE), d, f) for p, d, f in (
        (r"\b(?:highly|very|strongly) (?:lipophilic|hydrophobic)", "logp", lambda v: v < 3.0),
        (r"(?<!highly )(?<!very )(?<!strongly )(?<!non-)(?<!non)(?<!not )\b(?:lipophilic|hydrophobic)\b", "logp", lambda v: v < 1.0),
        (r"\b(?:hydrophilic|highly water[- ]soluble|very soluble in water|highly soluble in water)\b", "logp", lambda v: v > 3.0),
        (r"\b(?:low|small) molecular weight|\bsmall molecule\b|\blightweight\b", "mol_weight", lambda v: v > 500.0),
        (r"\b(?:high|large) molecular weight|\blarge molecule\b|\bheavy molecule\b", "mol_weight", lambda v: v < 300.0),
        (r"\b(?:highly polar|high polarity|large polar surface)", "tpsa", lambda v: v < 60.0),
        (r"\b(?:non-?polar|low polarity|small polar surface)", "tpsa", lambda v: v > 90.0),
        (r"\bno (?:hydrogen|h)[- ]?bond donors?", "hbd", lambda v: v > 0),
        (r"\bno (?:hydrogen|h)[- ]?bond acceptors?", "hba", lambda v: v > 0),
        (r"\bno aromatic rings?", "aromatic_rings", lambda v: v > 0),
    )
)


def _value_contradicts(name: str, stated: float, computed: float) -> bool:
    if name in _COUNTS:
        return round(stated) != round(computed)
    if name == "logp":
        return abs(stated - computed) > 0.5
    if name == "mol_weight":
        return abs(stated - computed) > max(2.0, 0.05 * abs(computed))
    return abs(stated - computed) > max(5.0, 0.10 * abs(computed))  # tpsa


def extract_claims(text: str, values: dict[str, float]) -> list[Claim]:
    """Statements in ``text`` about logP, MW, TPSA, H-bond donors/acceptors, rotatable bonds or aromatic rings,
    each checked against the RDKit ``values`` (descriptor key -> number).

    A stated value contradicts RDKit beyond a tolerance (logP ±0.5, MW ±5 %, TPSA ±10 %, counts exactly);
    a qualitative claim contradicts it past a threshold ("highly lipophilic" with logP < 3, "lipophilic"
    with logP < 1, "hydrophilic" with logP > 3, "small molecule" with MW > 500, "large molecule" with
    MW < 300, "highly polar" with TPSA < 60, "non-polar" with TPSA > 90, "no H-bond donors" with a donor).
    """
    claims: list[Claim] = []
    seen: set[tuple[str, int]] = set()
    for name in _NAME_PATTERNS:
        computed = float(values[name])
        for pattern, group in ((_VALUE_AFTER[name], 2), *(((_VALUE_BEFORE[name], 1),) if name in _VALUE_BEFORE else ())):
            for m in pattern.finditer(text):
                if (name, m.start(group)) in seen:
                    continue
                seen.add((name, m.start(group)))
                stated = float(m.group(group))
                claims.append(Claim(name, "value", m.group(0), stated, computed, _value_contradicts(name, stated, computed)))
    for pattern, name, contradicted in _QUALITATIVE:
        computed = float(values[name])
        for m in pattern.finditer(text):
            claims.append(Claim(name, "qualitative", m.group(0), None, computed, bool(contradicted(computed))))
    return claims


def calibration_table(texts: Sequence[str], values: pd.DataFrame, variant: str = "") -> pd.DataFrame:
    """One row per claim: ``molecule`` (position), ``variant``, ``descriptor``, ``kind``, ``text``, ``stated``,
    ``computed``, ``contradicts``. ``values``: descriptor table row-aligned with ``texts``."""
    if len(texts) != len(values):
        raise ValueError(f"{len(texts)} texts but {len(values)} rows of descriptor values")
    rows = []
    for i, (text, (_, row)) in enumerate(zip(texts, values.iterrows(), strict=True)):
        for claim in extract_claims(text, row.to_dict()):
            rows.append({"molecule": i, "variant": variant, **claim.__dict__})
    columns = ["molecule", "variant", "descriptor", "kind", "text", "stated", "computed", "contradicts"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- the LLM


def generation_settings(max_new_tokens: int) -> dict[str, Any]:
    """Generation settings that key the response cache: greedy decoding, chat template, repetition penalty."""
    return {"max_new_tokens": int(max_new_tokens), "do_sample": False, "repetition_penalty": 1.1, "chat_template": True}


def response_cache(path: str | Path | None = "default", shipped: bool = True) -> ResponseCache:
    """The LarDo response cache: the shipped default-profile file replayed, new responses appended to ``path``
    (default: ``<molkit cache>/responses/lardo.jsonl``)."""
    from molkit.models.cache import cache_dir

    if path == "default":
        path = cache_dir("responses") / "lardo.jsonl"
    replay = [RESPONSE_FILE] if shipped and RESPONSE_FILE.exists() else []
    return ResponseCache(path, replay=replay)


@functools.cache
def _causal_lm(lm: str) -> tuple[Any, Any]:
    from molkit.models.causal_lm import load_causal_lm

    return load_causal_lm(lm)


def load_generator(lm: str, settings: dict[str, Any]) -> Callable[[list[Prompt]], tuple[list[str], list[int]]]:
    """A ``generate_fn`` for :meth:`ResponseCache.generate`: answers a batch of chat prompts with ``lm``
    (registry name, HF id or path; loaded on the first call, once per process) under bf16 autocast where
    native. Returns ``(texts, new_token_counts)``."""

    def generate_fn(prompts: list[Prompt]) -> tuple[list[str], list[int]]:
        from molkit.models.causal_lm import generate

        model, tokenizer = _causal_lm(lm)
        texts = generate(
            model, tokenizer, [list(p) for p in prompts],
            max_new_tokens=settings["max_new_tokens"], do_sample=settings["do_sample"],
            repetition_penalty=settings["repetition_penalty"], batch_size=len(prompts), progress=False,
        )
        counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return list(texts), counts

    return generate_fn


def throughput_benchmark(lm: str, prompts: Sequence[Prompt], max_new_tokens: int = 48) -> pd.DataFrame:
    """New tokens per second generating ``prompts`` one at a time vs in one batch (no cache involved).

    Returns rows ``mode`` ("one at a time" / "batched"), ``prompts``, ``new_tokens``, ``seconds``, ``tokens_per_s``.
    """
    settings = generation_settings(max_new_tokens)
    generate_fn = load_generator(lm, settings)
    generate_fn([prompts[0]])  # load the model and warm up outside the timing
    rows = []
    for mode, batches in (("one at a time", [[p] for p in prompts]), ("batched", [list(prompts)])):
        began, tokens = time.perf_counter(), 0
        for batch in batches:
            tokens += sum(generate_fn(batch)[1])
        seconds = time.perf_counter() - began
        rows.append({"mode": mode, "prompts": len(prompts), "new_tokens": tokens, "seconds": seconds,
                     "tokens_per_s": tokens / seconds})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- pools and descriptions


def pretraining_pool(split: dict[str, np.ndarray], n_train: int | None, n_rest: int | None = 0,
                     seed: int = POOL_SEED) -> np.ndarray:
    """Positions of the molecules that get descriptions and pre-training: a seeded subset of ``n_train``
    training molecules (all when None), plus ``n_rest`` valid and test molecules (a seeded subset; all
    when None; none when 0): label-free but transductive, as the official code's pool. Sorted; the
    subsets are prefixes of one permutation, so a smaller pool is part of a larger one."""
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.asarray(split["train"]))[: n_train]
    rest = rng.permutation(np.concatenate([np.asarray(split["valid"]), np.asarray(split["test"])]))
    rest = rest[: n_rest] if n_rest is not None else rest
    return np.sort(np.concatenate([train, rest])).astype(int)


@dataclass
class Descriptions:
    """Texts of one dataset's pool: ``texts`` (variant -> list aligned with ``smiles``), the stage-1 answer,
    its parsed ``properties``, descriptor ``values`` and generation ``stats`` per variant."""

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
    lm: str,
    max_new_tokens: int = 80,
    stage1_max_new_tokens: int = 160,
    batch_size: int = 16,
    variants: Sequence[str] = tuple(VARIANTS),
    offline: bool = False,
    progress: bool = True,
    generate_fn: Callable | None = None,
) -> Descriptions:
    """Stage 1 for ``dataset`` and stage 2 (each LLM variant) for every molecule, through ``cache``;
    ``"dsm_only"`` texts need no LLM. ``offline=True`` replays only (a miss raises). ``generate_fn``
    replaces the LLM (tests); by default :func:`load_generator` loads ``lm`` on the first miss."""
    smiles = list(smiles)
    values = compute_descriptors(smiles, list(DESCRIPTORS), progress=False)
    stats: dict[str, GenerationStats] = {}

    def run(prompts: list[Prompt], n_tokens: int, label: str) -> list[str]:
        settings = generation_settings(n_tokens)
        fn = generate_fn or load_generator(lm, settings)
        out, stats[label] = cache.generate(lm, prompts, settings, fn, batch_size=batch_size, progress=progress,
                                           offline=offline)
        return out

    (answer,) = run([stage1_prompt(dataset)], stage1_max_new_tokens, "stage1")
    properties = map_properties(parse_property_list(answer))
    texts: dict[str, list[str]] = {}
    for variant in variants:
        if variant == "dsm_only":
            texts[variant] = [dsm_text(s, row) for s, (_, row) in zip(smiles, values.iterrows(), strict=True)]
            continue
        prompts = [stage2_prompt(s, dataset, variant, properties, row.to_dict())
                   for s, (_, row) in zip(smiles, values.iterrows(), strict=True)]
        texts[variant] = run(prompts, max_new_tokens, variant)
    return Descriptions(dataset, smiles, texts, answer, properties, values, stats)


# ----------------------------------------------------------------------------- contrastive pre-training


def clip_loss(graph_z: torch.Tensor, text_z: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): cross-entropy of graph->text and text->graph similarity rows, averaged.

    ``graph_z``, ``text_z``: (B, d), L2-normalised inside; pair i is (graph i, text i). ``logit_scale``:
    log of the inverse temperature (scalar tensor). Returns a scalar tensor.
    """
    g = F.normalize(graph_z, dim=-1)
    t = F.normalize(text_z, dim=-1)
    logits = logit_scale.exp() * g @ t.T
    target = torch.arange(len(g), device=g.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class GraphTextCLIP(nn.Module):
    """A GIN with a graph projection (H -> 256 -> ``proj_dim``) and a projection of frozen sentence embeddings
    (``text_dim`` -> 256 -> ``proj_dim``; the official 768 -> 256 -> 128), trained with :func:`clip_loss` and a
    learnable temperature: ``logit_scale`` = log(1/T), initialised at T = 0.07, clamped to T >= 0.01."""

    def __init__(self, gin: nn.Module, text_dim: int, proj_dim: int = 128, hidden: int = 256,
                 temperature: float = 0.07) -> None:
        super().__init__()
        self.gin = gin
        self.graph_proj = _mlp(gin.out_dim, hidden, proj_dim)
        self.text_proj = _mlp(text_dim, hidden, proj_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp())

    def forward(self, batch, text_emb: torch.Tensor) -> torch.Tensor:
        """CLIP loss of a graph batch against its (B, text_dim) text embeddings."""
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE)
        return clip_loss(self.graph_proj(self.gin(batch)), self.text_proj(text_emb), scale)


def pretrain_clip(gin, graphs: Sequence, text_emb: np.ndarray, epochs: int = 30, lr: float = 1e-3,
                  batch_size: int = 32, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Graph-text contrastive pre-training of ``gin`` (in place) on ``graphs`` paired row by row with
    ``text_emb`` (n, d). Returns per-epoch ``loss`` and ``temperature``; leaves ``gin`` in eval mode."""
    from torch_geometric.data import Batch

    from molkit._progress import tqdm

    if len(graphs) != len(text_emb):
        raise ValueError(f"{len(graphs)} graphs but {len(text_emb)} text embeddings: pair them row by row")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GraphTextCLIP(gin, text_dim=text_emb.shape[1])
    texts = torch.as_tensor(np.asarray(text_emb), dtype=torch.float32)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), desc="graph-text pre-training", disable=not progress):
        model.train()
        losses = []
        order = rng.permutation(len(graphs))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # one pair has no negatives
                continue
            loss = model(Batch.from_data_list([graphs[i] for i in idx]), texts[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        rows.append({"epoch": epoch, "loss": float(np.mean(losses)), "temperature": model.temperature})
    gin.eval()
    return pd.DataFrame(rows)


def build_predictor(gin, n_tasks: int, dropout: float = 0.3):
    """A ``GraphPredictor`` whose encoder is a deep copy of ``gin``: it starts from exactly the pre-trained
    weights (the official fine-tuning never loads them), and fine-tuning leaves ``gin`` untouched."""
    from molkit.models.gnn import GraphPredictor

    return GraphPredictor(n_tasks, gin=copy.deepcopy(gin), dropout=dropout)


# ----------------------------------------------------------------------------- evaluation


def morgan_rf_baseline(smiles_train: Sequence[str], y_train: np.ndarray, smiles_test: Sequence[str], task: str,
                       n_trees: int = 300, seed: int = 0) -> np.ndarray:
    """Morgan fingerprint (radius 2, 2048 bits) + random forest, one model per task; returns (n_test, n_tasks)
    probabilities of class 1 (classification) or predictions (regression). NaN labels are skipped per task."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from molkit.chem import morgan_bits

    x_train, x_test = np.asarray(morgan_bits(list(smiles_train))), np.asarray(morgan_bits(list(smiles_test)))
    y_train = np.asarray(y_train, dtype=float).reshape(len(x_train), -1)
    out = np.full((len(x_test), y_train.shape[1]), np.nan)
    for t in range(y_train.shape[1]):
        mask = ~np.isnan(y_train[:, t])
        if task == "classification":
            model = RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=-1)
            model.fit(x_train[mask], y_train[mask, t].astype(int))
            model.set_params(n_jobs=1)  # threads add the trees' votes in any order: last digits would vary
            proba = model.predict_proba(x_test)
            out[:, t] = proba[:, list(model.classes_).index(1)] if 1 in model.classes_ else 0.0
        else:
            model = RandomForestRegressor(n_estimators=n_trees, random_state=seed, n_jobs=-1)
            model.fit(x_train[mask], y_train[mask, t])
            model.set_params(n_jobs=1)  # a reproducible sum over the trees
            out[:, t] = model.predict(x_test)
    return out


def _score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float]:
    from molkit.eval import mean_roc_auc, regression_metrics

    if task == "classification":
        return "roc_auc", mean_roc_auc(y_true, y_pred)
    return "rmse", regression_metrics(y_true, y_pred)["rmse"]


METHOD_LABELS = {
    "scratch": "GIN from scratch",
    "attr_masking": "GIN + attribute masking",
    "lardo": "LarDo (stage 1 + DSM)",
    "no_dsm": "LarDo without DSM values",
    "no_stage1": "LarDo without stage 1",
    "dsm_only": "DSM text only (no LLM)",
    "lardo_transductive": "LarDo, transductive pool",
    "rf": "Morgan + random forest",
}


def probe_scores(emb_train: np.ndarray, y_train: np.ndarray, emb_test: np.ndarray, task: str) -> np.ndarray:
    """Frozen-encoder probe: standardised embeddings, logistic regression (classification) or ridge
    (regression) per task, NaN labels skipped. Returns (n_test, n_tasks) scores."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train = np.asarray(y_train, dtype=float).reshape(len(emb_train), -1)
    out = np.full((len(emb_test), y_train.shape[1]), np.nan)
    for t in range(y_train.shape[1]):
        mask = ~np.isnan(y_train[:, t])
        if task == "classification":
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            model.fit(emb_train[mask], y_train[mask, t].astype(int))
            out[:, t] = model.predict_proba(emb_test)[:, 1]
        else:
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            model.fit(emb_train[mask], y_train[mask, t])
            out[:, t] = model.predict(emb_test)
    return out


@dataclass
class Benchmark:
    """What :func:`run_benchmark` leaves for the notebook's figures (the metrics themselves are recorded rows)."""

    descriptions: dict[str, Descriptions]
    calibration: pd.DataFrame
    pretrain_history: pd.DataFrame
    embeddings: dict[str, dict[str, np.ndarray]]
    seconds: dict[str, float]


def run_benchmark(cfg, progress: bool = True) -> Benchmark:
    """The notebook's experiment for ``cfg`` (a ``molkit.setup`` Config holding ``PROFILE_SIZES`` keys).

    Per dataset: deterministic scaffold split 80/10/10 (the same for every method and seed); descriptions of
    the pool replayed from the response cache; text embeddings from the frozen sentence encoder. Per seed, the
    encoders: GIN from scratch, attribute masking on the training pool, graph-text pre-training with each
    text variant on the training pool and with LarDo texts on the transductive pool. Each is evaluated twice
    on the test part: fine-tuned end to end (``build_predictor``: starts from the pre-trained weights) and as
    a frozen encoder with a linear probe; plus Morgan fingerprints + random forest. Regression targets are
    standardised with the training part's mean and std for fine-tuning (predictions are scaled back). Every number is recorded
    with ``molkit.record`` (``roc_auc`` or ``rmse``; ``*_frozen`` for the probe).
    """
    import molkit
    from molkit.chem import graphs_from_smiles
    from molkit.data import load_dataset, scaffold_split
    from molkit.models import Encoder
    from molkit.models.gnn import (
        GIN,
        attribute_masking_pretrain,
        embed_graphs,
        predict_graph_model,
        train_graph_model,
    )

    cache = response_cache()
    encoder = Encoder.from_pretrained(cfg["text_encoder"])
    descriptions, calibration, histories, embeddings = {}, [], [], {}
    seconds = {"pretraining": 0.0, "fine-tuning": 0.0}
    for name in cfg["datasets"]:
        df = load_dataset(name)
        task, targets = df.attrs["task"], df.attrs["targets"]
        smiles = df["smiles"].tolist()
        split = scaffold_split(smiles, (0.8, 0.1, 0.1))
        pool_train = pretraining_pool(split, cfg["pool_train"])
        pool_all = pretraining_pool(split, cfg["pool_train"], cfg["pool_rest"])
        common = dict(cache=cache, lm=cfg["lm"], max_new_tokens=cfg["max_new_tokens"],
                      stage1_max_new_tokens=cfg["stage1_max_new_tokens"], batch_size=cfg["lm_batch_size"],
                      offline=cfg["offline"], progress=progress)
        desc = describe_molecules(name, [smiles[i] for i in pool_train], variants=tuple(VARIANTS), **common)
        trans = describe_molecules(name, [smiles[i] for i in pool_all], variants=("lardo",), **common)
        descriptions[name] = desc
        for variant in VARIANTS:
            calibration.append(calibration_table(desc.texts[variant], desc.values, variant).assign(dataset=name))
        # the fine-tuning split (smoke: a subset of each part), identical for every method and seed
        parts = {k: v if cfg["finetune_max"] is None else v[: max(8, cfg["finetune_max"] * len(v) // len(df))]
                 for k, v in split.items()}
        y = df[targets].to_numpy(dtype=float)
        needed = np.unique(np.concatenate([*parts.values(), pool_all]))
        graphs = dict(zip(needed.tolist(), graphs_from_smiles([smiles[i] for i in needed], y[needed], progress=False),
                          strict=True))
        data = {k: ([graphs[i] for i in v], y[v]) for k, v in parts.items()}
        # regression targets are standardised with the training part's mean and std (chemprop does the same)
        mu, sd = (0.0, 1.0) if task == "classification" else (np.nanmean(data["train"][1], 0), np.nanstd(data["train"][1], 0))
        y_fit = {k: (data[k][1] - mu) / sd for k in ("train", "valid")}
        texts = {v: (pool_train, desc.texts[v]) for v in VARIANTS}
        texts["lardo_transductive"] = (pool_all, trans.texts["lardo"])
        text_emb = {k: encoder.embed(t, batch_size=64, progress=False) for k, (_, t) in texts.items()}
        for seed in cfg["seeds"]:
            gins = {}
            began = time.perf_counter()
            for method in ("scratch", "attr_masking", *texts):
                torch.manual_seed(seed)
                gin = GIN(num_layers=cfg["num_layers"], hidden=cfg["hidden"])
                if method == "attr_masking":
                    attribute_masking_pretrain(gin, [graphs[i] for i in pool_train], epochs=cfg["pretrain_epochs"],
                                               batch_size=cfg["batch_size"], seed=seed, progress=False)
                elif method != "scratch":
                    pool = texts[method][0]
                    if method == "lardo" and seed == cfg["seeds"][0]:
                        embeddings[name] = {"before": embed_graphs(gin, data["test"][0]), "y": data["test"][1][:, 0]}
                    history = pretrain_clip(gin, [graphs[i] for i in pool], text_emb[method],
                                            epochs=cfg["pretrain_epochs"], batch_size=cfg["batch_size"], seed=seed,
                                            progress=False)
                    histories.append(history.assign(dataset=name, method=METHOD_LABELS[method], seed=seed))
                    if method == "lardo" and seed == cfg["seeds"][0]:
                        embeddings[name]["after"] = embed_graphs(gin, data["test"][0])
                gins[method] = gin
            seconds["pretraining"] += time.perf_counter() - began
            began = time.perf_counter()
            for method, gin in gins.items():
                frozen = probe_scores(embed_graphs(gin, data["train"][0]), data["train"][1],
                                      embed_graphs(gin, data["test"][0]), task)
                metric, value = _score(task, data["test"][1], frozen)
                molkit.record(name, METHOD_LABELS[method], f"{metric}_frozen", value, seed=seed, split="scaffold test",
                              note="frozen encoder + linear probe")
                model = build_predictor(gin, len(targets))
                train_graph_model(model, data["train"][0], y_fit["train"], data["valid"][0], y_fit["valid"], task=task, epochs=cfg["finetune_epochs"],
                                  lr=cfg["finetune_lr"], batch_size=cfg["batch_size"], patience=cfg["patience"],
                                  seed=seed, progress=False)
                pred = predict_graph_model(model, data["test"][0], task)
                metric, value = _score(task, data["test"][1], pred if task == "classification" else pred * sd + mu)
                molkit.record(name, METHOD_LABELS[method], metric, value, seed=seed, split="scaffold test",
                              note="fine-tuned end to end")
            seconds["fine-tuning"] += time.perf_counter() - began
            pred = morgan_rf_baseline([smiles[i] for i in parts["train"]], data["train"][1],
                                      [smiles[i] for i in parts["test"]], task, cfg["rf_trees"], seed)
            metric, value = _score(task, data["test"][1], pred)
            molkit.record(name, METHOD_LABELS["rf"], metric, value, seed=seed, split="scaffold test")
    return Benchmark(descriptions, pd.concat(calibration, ignore_index=True), pd.concat(histories, ignore_index=True),
                     embeddings, seconds)


# ----------------------------------------------------------------------------- notebook reports and figures


def stage1_report(cfg, cache: ResponseCache | None = None) -> pd.DataFrame:
    """Per dataset: the stage-1 answer (replayed), the parsed property names, their descriptors, the unmatched."""
    cache = cache or response_cache()
    rows = []
    for name in cfg["datasets"]:
        settings = generation_settings(cfg["stage1_max_new_tokens"])
        (answer,), _ = cache.generate(cfg["lm"], [stage1_prompt(name)], settings, load_generator(cfg["lm"], settings),
                                      offline=cfg["offline"], progress=False)
        mapped = map_properties(parse_property_list(answer))
        rows.append({"dataset": name, "answer": answer, "properties": mapped.names,
                     "descriptors": {k: v for k, v in mapped.matched.items()}, "no descriptor": mapped.unmatched,
                     "values in stage-2 prompt": prompt_descriptors(mapped)})
    return pd.DataFrame(rows)


def calibration_summary(calibration: pd.DataFrame) -> pd.DataFrame:
    """Per text variant: descriptions, claims about RDKit-computable properties, share contradicting RDKit."""
    grouped = calibration.groupby("variant", sort=False)
    out = pd.DataFrame({
        "claims": grouped.size(),
        "value claims": grouped["kind"].apply(lambda k: int((k == "value").sum())),
        "contradicting": grouped["contradicts"].sum().astype(int),
    })
    out["share contradicting"] = out["contradicting"] / out["claims"]
    return out.reindex([v for v in VARIANTS if v in out.index])


def plot_calibration(calibration: pd.DataFrame, n_descriptions: int):
    """Two panels: share of claims that contradict RDKit per variant and descriptor; claims per description."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    if len(calibration):
        table = calibration.assign(variant=calibration["variant"].map(METHOD_LABELS))
        sns.barplot(table, x="descriptor", y="contradicts", hue="variant", errorbar=None, ax=axes[0],
                    hue_order=[METHOD_LABELS[v] for v in VARIANTS])
        counts = table.groupby("variant", sort=False).size() / n_descriptions
        axes[1].barh(counts.index, counts.to_numpy(), color="#4C72B0")
    axes[0].set_ylabel("share of claims contradicting RDKit")
    axes[0].set_xlabel("property the description talks about")
    axes[0].tick_params(axis="x", labelrotation=30)
    axes[0].legend(fontsize=8, title=None)
    axes[1].set_xlabel("checkable claims per description")
    fig.tight_layout()
    return fig


def example_descriptions(bench: Benchmark, dataset: str, n: int = 3) -> pd.DataFrame:
    """The first ``n`` pool molecules of ``dataset``: RDKit values beside each variant's text."""
    desc = bench.descriptions[dataset]
    rows = []
    for i in range(min(n, len(desc.smiles))):
        values = desc.values.iloc[i]
        row = {"smiles": desc.smiles[i], "RDKit": "; ".join(_value_text(k, values[k]) for k in DSM_TEXT_DESCRIPTORS[:4])}
        row.update({METHOD_LABELS[v]: desc.texts[v][i] for v in VARIANTS})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_examples(examples: pd.DataFrame, width: int = 70):
    """The example table as a figure: one panel per molecule, RDKit values and the texts, wrapped."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 4.2 * len(examples)), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], examples.iterrows(), strict=True):
        lines = [f"SMILES: {row['smiles']}", f"RDKit: {row['RDKit']}", ""]
        for column in examples.columns[2:]:
            text = " ".join(str(row[column]).split())
            lines.append(f"{column}:")
            lines += ["    " + part for part in textwrap.wrap(text, width)[:4]]
        ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7.5, transform=ax.transAxes)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_results(results: pd.DataFrame):
    """Mean ± std over seeds of the test metric per method, one panel per dataset and metric (same method rows)."""
    import matplotlib.pyplot as plt

    table = results[results["metric"].isin(["roc_auc", "rmse", "roc_auc_frozen", "rmse_frozen"])]
    panels = sorted(dict.fromkeys(zip(table["dataset"], table["metric"], strict=True)))
    methods = list(dict.fromkeys(table["method"]))
    rows = np.arange(len(methods))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 1.5, 0.35 * len(methods) + 1.6), squeeze=False)
    for ax, (dataset, metric) in zip(axes[0], panels, strict=True):
        part = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
        stats = part.groupby("method")["value"].agg(["mean", "std"]).reindex(methods)
        ax.barh(rows, stats["mean"].fillna(0.0), xerr=stats["std"].fillna(0.0), color="#55A868")
        for row in rows[stats["mean"].isna().to_numpy()]:
            ax.text(0.02, row, "n/a", va="center", transform=ax.get_yaxis_transform(), fontsize=8)
        ax.set_title(f"{dataset} · {metric}", fontsize=10)
        ax.set_yticks(rows, methods if ax is axes[0][0] else [""] * len(methods))
        ax.invert_yaxis()
        if metric.startswith("roc"):
            ax.set_xlim(min(0.4, float(np.nanmin(stats["mean"] - stats["std"].fillna(0.0)))), 1.0)
    fig.tight_layout()
    return fig


def lardo_verdict(results: pd.DataFrame, metric: str = "roc_auc") -> pd.DataFrame:
    """Per classification dataset: mean test ROC-AUC of GIN from scratch and LarDo, their difference (mean over
    seeds of the per-seed difference), its std over seeds and whether the difference exceeds that std."""
    table = results[results["metric"] == metric]
    wide = table.pivot_table(index=["dataset", "seed"], columns="method", values="value", aggfunc="first")
    scratch, lardo = METHOD_LABELS["scratch"], METHOD_LABELS["lardo"]
    wide["LarDo - scratch"] = wide[lardo] - wide[scratch]
    out = wide.groupby("dataset")[[scratch, lardo, "LarDo - scratch"]].mean()
    out["seed std of difference"] = wide.groupby("dataset")["LarDo - scratch"].std().fillna(0.0)
    out["beyond seed spread"] = out["LarDo - scratch"].abs() > out["seed std of difference"]
    return out


# ----------------------------------------------------------------------------- regeneration command


def generate_profile(profile: str = "default", out: Path = RESPONSE_FILE, writable: Path | str = "default",
                     progress: bool = True) -> Path:
    """Generate (resumably: finished responses are hits) every response a profile's notebook replays and export
    them to ``out``. For ``default`` the smoke pool (a prefix of the default pool) comes first, so the smoke
    run can replay early; then variant by variant over the datasets, the transductive extra last."""
    from molkit.data import load_dataset, scaffold_split

    sizes = PROFILE_SIZES[profile]
    cache = response_cache(writable, shipped=False)
    plan = []
    for stage in (["smoke", profile] if profile == "default" else [profile]):
        part = PROFILE_SIZES[stage]
        pools = {}
        for name in part["datasets"]:
            smiles = load_dataset(name)["smiles"].tolist()
            split = scaffold_split(smiles, (0.8, 0.1, 0.1))
            pools[name] = [[smiles[i] for i in pretraining_pool(split, part["pool_train"], n_rest)]
                           for n_rest in (0, part["pool_rest"])]
        plan += [(stage, v, name, pools[name][0]) for v in LLM_VARIANTS for name in pools]
        plan += [(stage, "lardo", name, pools[name][1]) for name in pools]
    keys: set[str] = set()
    for stage, variant, name, smiles in plan:
        began = time.perf_counter()
        desc = describe_molecules(name, smiles, cache, sizes["lm"], sizes["max_new_tokens"],
                                  sizes["stage1_max_new_tokens"], sizes["lm_batch_size"], variants=(variant,),
                                  progress=progress)
        keys |= _keys_of(desc, sizes)
        st = desc.stats[variant]
        print(f"[{stage}] {name} {variant} ({len(smiles)} molecules): {st.misses} generated, {st.hits} cached, "
              f"{st.new_tokens} new tokens in {time.perf_counter() - began:.0f} s ({st.tokens_per_second:.1f} tokens/s)",
              flush=True)
    return cache.export(out, keys=keys, profile=profile, command=REGENERATE_COMMAND)


def _keys_of(desc: Descriptions, sizes: dict[str, Any]) -> set[str]:
    from molkit.models.responses import response_key

    keys = {response_key(sizes["lm"], stage1_prompt(desc.dataset), generation_settings(sizes["stage1_max_new_tokens"]))}
    for variant in desc.texts:
        if variant == "dsm_only":
            continue
        for s, (_, row) in zip(desc.smiles, desc.values.iterrows(), strict=True):
            prompt = stage2_prompt(s, desc.dataset, variant, desc.properties, row.to_dict())
            keys.add(response_key(sizes["lm"], prompt, generation_settings(sizes["max_new_tokens"])))
    return keys


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m molkit.methods.lardo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate (resumably) and export the responses a profile replays")
    gen.add_argument("--profile", default="default", choices=sorted(PROFILE_SIZES))
    gen.add_argument("--out", type=Path, default=RESPONSE_FILE, help=f"shipped .jsonl.gz (default {RESPONSE_FILE})")
    gen.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    from molkit.models.runtime import set_threads

    set_threads(args.threads)
    began = time.perf_counter()
    path = generate_profile(args.profile, args.out)
    print(f"wrote {path} in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
