"""MolGraph-LarDo (arXiv 2408.10124): the paper's algorithm.

1. **Two-stage prompting.** Stage 1 asks the LLM, once per dataset, which molecular properties
   bear on the task (`stage1_prompt`, parsed by `parse_property_list`). Stage 2 gives it one
   molecule's SMILES, those properties and the values the domain model computed, and asks for a
   description (`stage2_prompt`).
2. **Domain-specific small model (DSM).** RDKit descriptors from ``molkit.chem``: every property
   the LLM names is mapped to a descriptor where one exists (`map_properties`); `dsm_text` writes
   the descriptors and functional groups as sentences without any LLM (a baseline).
3. **Calibration, measured.** `extract_claims` finds the values and qualitative claims a
   description makes about RDKit-computable properties and `calibration_table` checks them
   against RDKit.
4. **Graph-text contrastive pre-training** (`GraphTextCLIP`, `clip_loss`, `pretrain_clip`): a GIN
   and a frozen sentence encoder's embeddings, projection heads, symmetric InfoNCE with a learnable
   temperature.
5. **Fine-tuning** from the pre-trained encoder (`build_predictor` copies its weights: unlike the
   official code, which never loads them).

The LLM side (generation settings, the response cache, the pools that get descriptions) is in
`molkit.methods.lardo.descriptions`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from molkit.chem import compute_descriptors, format_descriptor, functional_groups, match_property

#: The paper's system text (Mistral-7B-Instruct-v0.2 in the official code).
SYSTEM_PROMPT = "You are a biochemistry expert."

#: Text variants: full LarDo, the official code's two ablations, and the LLM-free DSM text.
VARIANTS = {
    "lardo": "stage-1 properties + DSM values in the prompt",
    "no_dsm": "the same stage-1 properties, no DSM values (the LLM guesses)",
    "no_stage1": "no stage-1 properties and no values: a generic description (the official "
    "code's ablation)",
    "dsm_only": "descriptors and functional groups written as sentences, no LLM",
}
LLM_VARIANTS = ("lardo", "no_dsm", "no_stage1")

#: The two ways of running stage 1: the paper's free-text answer, parsed and mapped to
#: descriptors, and the constrained one (the LLM ranks the DSM's descriptor names).
STAGE1_MODES = {
    "free": "free-text answer (the paper's prompt), parsed and mapped to RDKit descriptors",
    "ranked": "the DSM's descriptor names ranked by the LLM's log-likelihood of each as the answer",
}
#: Descriptor -> the name stage 1 ranks and a stage-2 prompt uses (`match_property` maps each back
#: to its descriptor; a test checks it). Exact mass is left out: it duplicates molecular weight.
RANKED_NAMES = {
    "logp": "lipophilicity (logP)",
    "mol_weight": "molecular weight",
    "tpsa": "polar surface area",
    "hbd": "hydrogen-bond donors",
    "hba": "hydrogen-bond acceptors",
    "rotatable_bonds": "rotatable bonds",
    "ring_count": "number of rings",
    "aromatic_rings": "aromatic rings",
    "heavy_atoms": "heavy atom count",
    "fsp3": "fraction of sp3 carbons",
    "formal_charge": "formal charge",
    "heteroatoms": "heteroatom count",
    "molar_refractivity": "molar refractivity",
    "qed": "drug-likeness (QED)",
    "stereocenters": "stereocentres",
    "lipinski_violations": "Lipinski rule-of-five violations",
}

#: Dataset name, description, task type and target for the stage-1 prompt (as the official code
#: gives them).
DATASET_INFO: dict[str, dict[str, str]] = {
    "bbbp": {
        "title": "BBBP",
        "task": "classification",
        "target": "blood-brain barrier penetration (penetrates or not)",
        "description": "The Blood-Brain Barrier Penetration dataset records whether compounds "
        "cross the blood-brain barrier, a key property for drugs acting on the central nervous "
        "system.",
    },
    "bace": {
        "title": "BACE",
        "task": "classification",
        "target": "inhibition of human beta-secretase 1 (BACE-1)",
        "description": "The BACE dataset gives binding results for a set of inhibitors of human "
        "beta-secretase 1 (BACE-1), a target in Alzheimer's disease.",
    },
    "esol": {
        "title": "ESOL",
        "task": "regression",
        "target": "water solubility (log mol/L)",
        "description": "ESOL is a small dataset of water solubility data for common organic small "
        "molecules.",
    },
    "freesolv": {
        "title": "FreeSolv",
        "task": "regression",
        "target": "hydration free energy in water (kcal/mol)",
        "description": "FreeSolv gives experimental and calculated hydration free energies of "
        "small molecules in water.",
    },
    "lipo": {
        "title": "Lipophilicity",
        "task": "regression",
        "target": "octanol/water distribution coefficient logD at pH 7.4",
        "description": "The Lipophilicity dataset gives experimental octanol/water distribution "
        "coefficients (logD at pH 7.4) of drug-like compounds.",
    },
    "clintox": {
        "title": "ClinTox",
        "task": "classification",
        "target": "FDA approval and clinical-trial toxicity",
        "description": "ClinTox compares drugs approved by the FDA with drugs that failed "
        "clinical trials for toxicity reasons.",
    },
    "tox21": {
        "title": "Tox21",
        "task": "classification",
        "target": "toxicity in 12 nuclear-receptor and stress-response assays",
        "description": "Tox21 measures the toxicity of compounds on 12 biological targets.",
    },
    "sider": {
        "title": "SIDER",
        "task": "classification",
        "target": "adverse drug reactions in 27 system organ classes",
        "description": "SIDER is a database of marketed drugs and their adverse drug reactions.",
    },
    "hiv": {
        "title": "HIV",
        "task": "classification",
        "target": "inhibition of HIV replication",
        "description": "The HIV dataset tests the ability of compounds to inhibit HIV replication.",
    },
}

#: Descriptors the stage-2 prompt always carries (the official prompt: Crippen logP and molecular
#: weight).
BASE_DESCRIPTORS = ("logp", "mol_weight")
#: Descriptors the DSM-only text writes out.
DSM_TEXT_DESCRIPTORS = (
    "logp", "mol_weight", "tpsa", "hbd", "hba", "rotatable_bonds", "aromatic_rings",
)  # fmt: skip
_UNITS = {"mol_weight": " g/mol", "tpsa": " Å²", "exact_mass": " Da"}
_LABELS = {
    "logp": "logP",
    "mol_weight": "molecular weight",
    "tpsa": "TPSA",
    "hbd": "hydrogen-bond donors",
    "hba": "hydrogen-bond acceptors",
    "rotatable_bonds": "rotatable bonds",
    "aromatic_rings": "aromatic rings",
    "ring_count": "rings",
    "heavy_atoms": "heavy atoms",
    "fsp3": "Fsp3",
    "formal_charge": "formal charge",
    "heteroatoms": "heteroatoms",
    "molar_refractivity": "molar refractivity",
    "qed": "QED",
    "stereocenters": "stereocentres",
    "lipinski_violations": "Lipinski violations",
    "exact_mass": "exact mass",
}

MAX_LOGIT_SCALE = math.log(100.0)


# ----------------------------------------------------------------------------- stage 1: properties


def describe_dataset(name: str) -> dict[str, str]:
    """Title, description, task type and target of a dataset, for the stage-1 prompt."""
    if name not in DATASET_INFO:
        raise KeyError(
            f"no stage-1 description for dataset {name!r}; add it to DATASET_INFO "
            f"(known: {sorted(DATASET_INFO)})"
        )
    return DATASET_INFO[name]


def stage1_prompt(dataset: str) -> list[dict[str, str]]:
    """Chat messages asking which molecular properties bear on ``dataset``'s task (official
    wording)."""
    info = describe_dataset(dataset)
    user = (
        f"The dataset is {info['title']}. {info['description']} The task is {info['task']}: "
        f"predict {info['target']}. Given the SMILES of a molecule, what are the molecular "
        "properties related to the task? Answer with a numbered list of property names only, "
        "one per line."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,2}[.)]|[a-z][.)])\s*", re.IGNORECASE)


def parse_property_list(text: str, max_properties: int = 10) -> list[str]:
    """Property names from a stage-1 answer: numbered/bulleted lines or one comma-separated line.

    Markdown emphasis is dropped, and each item is cut at its first ':' or ' - ' (the explanation
    that often follows the name). Case-insensitive duplicates are removed; order is kept.
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
        if (
            2 <= len(name) <= 60
            and len(name.split()) <= 8
            and name.lower() not in {n.lower() for n in names}
        ):
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
    """Map each property name to a descriptor with `molkit.chem.match_property` (None:
    unmatched)."""
    out = PropertyMap(list(names))
    for name in names:
        key = match_property(name)
        if key is None:
            out.unmatched.append(name)
        else:
            out.matched[name] = key
    return out


def stage1_choice_prompt(dataset: str | None, candidates: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages of the constrained stage 1: the stage-1 context, then the DSM's descriptor
    names as options; each option's log-likelihood as the answer ranks it (`rank_properties`).
    ``dataset=None`` gives the content-free prompt (the same question without the dataset and
    its task), whose log-likelihoods are each option's prior."""
    if dataset is None:
        context = "Which one of these molecular properties, computed from the structure, "
        context += "is most related to the task?"
    else:
        info = describe_dataset(dataset)
        context = (
            f"The dataset is {info['title']}. {info['description']} The task is {info['task']}: "
            f"predict {info['target']}. Which one of these molecular properties, computed from "
            "the structure, is most related to the task?"
        )
    user = f"{context} Options: {'; '.join(candidates)}. Answer with the property name only."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def rank_properties(
    scores: dict[str, Sequence[float]], top: int = 4, keep: Sequence[str] = ()
) -> tuple[pd.DataFrame, PropertyMap]:
    """The constrained stage 1's ranking and the properties it keeps.

    ``scores``: option name (a value of `RANKED_NAMES`) -> ``(log-probability of the option as
    the answer to the dataset's prompt, its number of tokens, log-probability as the answer to
    the content-free prompt)``. Options are ranked by the difference of the two (pointwise mutual
    information with the task, as Holtzman et al. 2021 score multiple-choice answers: a name the
    model finds likely whatever the question, e.g. one whose later tokens follow from its first,
    gains nothing from it). The ``top`` best ranked options not among ``keep`` (descriptor keys
    every prompt carries anyway, logP and MW) are kept. Returns the ranking table (``rank``,
    ``property``, ``descriptor``, ``pmi``, ``logprob``, ``prior_logprob``, ``tokens``, ``kept``)
    and the kept `PropertyMap` (every name mapped)."""
    by_name = {v: k for k, v in RANKED_NAMES.items()}
    unknown = [n for n in scores if n not in by_name]
    if unknown:
        raise ValueError(
            f"options {unknown} are not descriptor names of RANKED_NAMES; rank only those"
        )
    rows = [
        {"property": n, "descriptor": by_name[n], "pmi": float(lp) - float(prior),
         "logprob": float(lp), "prior_logprob": float(prior), "tokens": int(c)}
        for n, (lp, c, prior) in scores.items()
    ]  # fmt: skip
    table = pd.DataFrame(rows).sort_values(
        ["pmi", "property"], ascending=[False, True], kind="stable"
    )
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    eligible = table[~table["descriptor"].isin(list(keep))]
    kept = eligible["property"].head(top).tolist()
    table["kept"] = table["property"].isin(kept)
    mapped = PropertyMap(kept, matched={n: by_name[n] for n in kept})
    return table.reset_index(drop=True), mapped


# ---------------------------------------------------------------------------- stage 2 and DSM text


def prompt_descriptors(properties: PropertyMap | None, max_descriptors: int = 6) -> list[str]:
    """Descriptors whose values a stage-2 prompt carries: logP and MW, then the stage-1 ones (at
    most ``max_descriptors``)."""
    extra = [] if properties is None else properties.descriptors
    return list(dict.fromkeys([*BASE_DESCRIPTORS, *extra]))[:max_descriptors]


def value_text(name: str, value: float) -> str:
    """``"logP = 1.310"``: a descriptor's label, its formatted value and unit."""
    return f"{_LABELS.get(name, name)} = {format_descriptor(name, value)}{_UNITS.get(name, '')}"


def stage2_prompt(
    smiles: str,
    dataset: str,
    variant: str,
    properties: PropertyMap | None,
    values: dict[str, float] | None = None,
) -> list[dict[str, str]]:
    """Chat messages asking for one molecule's description.

    ``variant``: ``"lardo"`` (stage-1 properties and the DSM ``values``), ``"no_dsm"`` (the same
    properties, no values) or ``"no_stage1"`` (the official ablation: no property list, no
    values). ``values`` maps descriptor keys to numbers (from `molkit.chem.compute_descriptors`).

    The guard: only property names that map to a descriptor (``properties.matched``) among those
    whose values the prompt carries (`prompt_descriptors`) are ever named; stage-1 names without
    one are dropped here (`stage1_properties` counts and reports them). With none left, the prompt
    names the descriptors whose values it carries.
    """
    if variant not in LLM_VARIANTS:
        raise ValueError(
            f"variant must be one of {LLM_VARIANTS} for an LLM prompt, not {variant!r}"
        )
    info = describe_dataset(dataset)
    lines = [f"The SMILES of a molecule is {smiles}."]
    if variant == "no_stage1":
        lines.append("Describe the molecule and its properties.")
    else:
        wanted = prompt_descriptors(properties)
        if variant == "lardo":
            missing = [k for k in wanted if values is None or k not in values]
            if missing:
                raise ValueError(
                    f"variant {variant!r} needs DSM values for {missing}; "
                    "pass values=compute_descriptors(...)"
                )
            lines.append(
                "Values computed by RDKit: "
                + "; ".join(value_text(k, values[k]) for k in wanted)
                + "."
            )
        # only names that map to a descriptor whose value the prompt carries (or would carry)
        names = [] if properties is None else properties.names
        names = [n for n in names if n in properties.matched and properties.matched[n] in wanted]
        names = names or [_LABELS[k] for k in wanted]
        lines.append(
            f"The task is to predict {info['target']}. Describe the molecule in terms of these "
            "properties: " + ", ".join(names) + "."
        )
        if variant == "lardo":
            lines.append("Use the values given.")
    lines.append("Give each answer in brackets, e.g. [lipophilicity: ...].")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": " ".join(lines)},
    ]


def dsm_text(smiles: str, values: dict[str, float] | None = None) -> str:
    """The LLM-free description: RDKit descriptors and functional groups written as sentences."""
    if values is None:
        values = compute_descriptors([smiles], list(DSM_TEXT_DESCRIPTORS), progress=False)
        values = values.iloc[0].to_dict()
    parts = [
        f"{_LABELS[k]} {format_descriptor(k, values[k])}{_UNITS.get(k, '')}"
        for k in DSM_TEXT_DESCRIPTORS
    ]
    groups = sorted({g.name.replace("_", " ") for g in functional_groups(smiles)})
    text = "The molecule has " + ", ".join(parts) + "."
    if groups:
        text += " Functional groups: " + ", ".join(groups) + "."
    else:
        text += " It has no listed functional group."
    return text


# ------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class PropertyClaim:
    """One statement a description makes about an RDKit-computable property (not to be confused
    with `molkit.methods.experiment.Claim`, a paper's claim tested by a run)."""

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
_VALUE_AFTER = {
    k: re.compile(rf"({p})[^0-9\n;\[\]]{{0,30}}?(?<![a-z\d]){_NUMBER}", re.IGNORECASE)
    for k, p in _NAME_PATTERNS.items()
}
_VALUE_BEFORE = {
    k: re.compile(rf"(?<![\d.]){_NUMBER}\s+({p})", re.IGNORECASE)
    for k, p in _NAME_PATTERNS.items()
    if k in _COUNTS
}
_NOT_QUALIFIED = r"(?<!highly )(?<!very )(?<!strongly )(?<!non-)(?<!non)(?<!not )"
#: (pattern, descriptor, contradicted when) for qualitative claims.
_QUALITATIVE: tuple[tuple[re.Pattern, str, Callable[[float], bool]], ...] = tuple(
    (re.compile(p, re.IGNORECASE), d, f)
    for p, d, f in (
        (r"\b(?:highly|very|strongly) (?:lipophilic|hydrophobic)", "logp", lambda v: v < 3.0),
        (_NOT_QUALIFIED + r"\b(?:lipophilic|hydrophobic)\b", "logp", lambda v: v < 1.0),
        (
            r"\b(?:hydrophilic|highly water[- ]soluble|very soluble in water"
            r"|highly soluble in water)\b",
            "logp",
            lambda v: v > 3.0,
        ),
        (
            r"\b(?:low|small) molecular weight|\bsmall molecule\b|\blightweight\b",
            "mol_weight",
            lambda v: v > 500.0,
        ),
        (
            r"\b(?:high|large) molecular weight|\blarge molecule\b|\bheavy molecule\b",
            "mol_weight",
            lambda v: v < 300.0,
        ),
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


def extract_claims(text: str, values: dict[str, float]) -> list[PropertyClaim]:
    """Statements in ``text`` about logP, MW, TPSA, H-bond donors/acceptors, rotatable bonds or
    aromatic rings, each checked against the RDKit ``values`` (descriptor key -> number).

    A stated value contradicts RDKit beyond a tolerance (logP ±0.5, MW ±5 %, TPSA ±10 %, counts
    exactly); a qualitative claim contradicts it past a threshold ("highly lipophilic" with
    logP < 3, "lipophilic" with logP < 1, "hydrophilic" with logP > 3, "small molecule" with
    MW > 500, "large molecule" with MW < 300, "highly polar" with TPSA < 60, "non-polar" with
    TPSA > 90, "no H-bond donors" with a donor).
    """
    claims: list[PropertyClaim] = []
    seen: set[tuple[str, int]] = set()
    for name in _NAME_PATTERNS:
        computed = float(values[name])
        patterns = [(_VALUE_AFTER[name], 2)]
        if name in _VALUE_BEFORE:
            patterns.append((_VALUE_BEFORE[name], 1))
        for pattern, group in patterns:
            for m in pattern.finditer(text):
                if (name, m.start(group)) in seen:
                    continue
                seen.add((name, m.start(group)))
                stated = float(m.group(group))
                contradicts = _value_contradicts(name, stated, computed)
                claims.append(
                    PropertyClaim(name, "value", m.group(0), stated, computed, contradicts)
                )
    for pattern, name, contradicted in _QUALITATIVE:
        computed = float(values[name])
        for m in pattern.finditer(text):
            claims.append(
                PropertyClaim(
                    name, "qualitative", m.group(0), None, computed, bool(contradicted(computed))
                )
            )
    return claims


CALIBRATION_COLUMNS = [
    "molecule", "variant", "descriptor", "kind", "text", "stated", "computed", "contradicts",
]  # fmt: skip


def calibration_table(
    texts: Sequence[str], values: pd.DataFrame, variant: str = ""
) -> pd.DataFrame:
    """One row per claim: ``molecule`` (position), ``variant``, ``descriptor``, ``kind``, ``text``,
    ``stated``, ``computed``, ``contradicts``. ``values``: descriptor table row-aligned with
    ``texts``."""
    if len(texts) != len(values):
        raise ValueError(f"{len(texts)} texts but {len(values)} rows of descriptor values")
    rows = []
    for i, (text, (_, row)) in enumerate(zip(texts, values.iterrows(), strict=True)):
        for claim in extract_claims(text, row.to_dict()):
            rows.append({"molecule": i, "variant": variant, **claim.__dict__})
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


# ------------------------------------------------------------------------ contrastive pre-training


def clip_loss(
    graph_z: torch.Tensor, text_z: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): cross-entropy of graph->text and text->graph similarity rows,
    averaged.

    ``graph_z``, ``text_z``: (B, d), L2-normalised inside; pair i is (graph i, text i).
    ``logit_scale``: log of the inverse temperature (scalar tensor). Returns a scalar tensor.
    """
    g = F.normalize(graph_z, dim=-1)
    t = F.normalize(text_z, dim=-1)
    logits = logit_scale.exp() * g @ t.T
    target = torch.arange(len(g), device=g.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class GraphTextCLIP(nn.Module):
    """A GIN with a graph projection (H -> 256 -> ``proj_dim``) and a projection of frozen sentence
    embeddings (``text_dim`` -> 256 -> ``proj_dim``; the official 768 -> 256 -> 128), trained with
    `clip_loss` and a learnable temperature: ``logit_scale`` = log(1/T), initialised at T = 0.07,
    clamped to T >= 0.01."""

    def __init__(
        self,
        gin: nn.Module,
        text_dim: int,
        proj_dim: int = 128,
        hidden: int = 256,
        temperature: float = 0.07,
    ) -> None:
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


def pretrain_clip(
    gin,
    graphs: Sequence,
    text_emb: np.ndarray,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    valid_fraction: float = 0.0,
    patience: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Graph-text contrastive pre-training of ``gin`` (in place) on ``graphs`` paired row by row
    with ``text_emb`` (n, d).

    ``valid_fraction``: a seeded share of the pairs held out; their CLIP loss is measured after
    every epoch (in fixed batches of ``batch_size`` pairs, the last one wrapping around, so it is
    comparable with the training loss), and
    with ``patience`` training stops after that many epochs without a lower validation loss and
    the best epoch's weights are restored. Returns per-epoch ``loss`` (training), ``valid_loss``
    (NaN without a validation part) and ``temperature``, with ``attrs["best_epoch"]``; leaves
    ``gin`` in eval mode."""
    from torch_geometric.data import Batch

    from molkit.models.fit import fit

    if len(graphs) != len(text_emb):
        raise ValueError(
            f"{len(graphs)} graphs but {len(text_emb)} text embeddings: pair them row by row"
        )
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), not {valid_fraction}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GraphTextCLIP(gin, text_dim=text_emb.shape[1])
    texts = torch.as_tensor(np.asarray(text_emb), dtype=torch.float32)
    shuffled = rng.permutation(len(graphs))
    n_valid = int(round(valid_fraction * len(graphs))) if valid_fraction else 0
    n_valid = n_valid if n_valid >= 2 else 0
    valid, train = np.sort(shuffled[:n_valid]), shuffled[n_valid:]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)

    def batches(order: np.ndarray):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) >= 2:  # one pair has no negatives
                yield Batch.from_data_list([graphs[i] for i in idx]), texts[idx]

    # fixed held-out batches, each of min(batch_size, n_valid) pairs (the last one wraps around):
    # as many negatives per row as a training batch has, so the two losses are comparable
    size = min(batch_size, n_valid)
    wrapped = np.concatenate([valid, valid])
    valid_batches = list(batches(wrapped[: size * -(-n_valid // size)]) if n_valid else [])

    def step(item) -> float:
        batch, text = item
        model.train()
        loss = model(batch, text)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    def validate() -> dict[str, float]:
        valid_loss = np.nan
        if n_valid:
            model.eval()
            with torch.no_grad():
                valid_loss = float(np.mean([model(b, t).item() for b, t in valid_batches]))
        return {"valid_loss": valid_loss, "temperature": model.temperature}

    report = fit(
        step,
        (batches(train[rng.permutation(len(train))]) for _ in range(epochs)),
        validate=validate,
        patience=patience if n_valid else None,
        state=model.state_dict,
        desc="graph-text pre-training",
        progress=progress,
    )
    gin.eval()
    history = pd.DataFrame(
        [
            {"epoch": int(r["epoch"]), "loss": r["train_loss"], "valid_loss": r["valid_loss"],
             "temperature": r["temperature"]}
            for r in report.curve
        ],
        columns=["epoch", "loss", "valid_loss", "temperature"],
    )  # fmt: skip
    history.attrs["best_epoch"] = int(report.best_epoch) if n_valid else len(history)
    return history


def build_predictor(gin, n_tasks: int, dropout: float = 0.3):
    """A ``GraphPredictor`` whose encoder is a deep copy of ``gin``: it starts from exactly the
    pre-trained weights (the official fine-tuning never loads them), and fine-tuning leaves
    ``gin`` untouched."""
    from molkit.models.gnn import GraphPredictor

    return GraphPredictor(n_tasks, gin=copy.deepcopy(gin), dropout=dropout)
