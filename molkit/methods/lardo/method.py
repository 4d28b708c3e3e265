"""MolGraph-LarDo (arXiv 2408.10124): the paper's algorithm, its text side.

1. **Two-stage prompting.** Stage 1 asks the LLM, once per dataset, which molecular properties
   bear on the task (`stage1_prompt`, parsed by `parse_property_list`; or the constrained
   `stage1_choice_prompt` ranked by `rank_properties`). Stage 2 gives it one molecule's SMILES,
   those properties and the values the domain model computed, and asks for a description
   (`stage2_prompt`).
2. **Domain-specific small model (DSM).** RDKit descriptors from ``molkit.chem``: every property
   the LLM names is mapped to a descriptor where one exists (`map_properties`); `dsm_text` writes
   the descriptors and functional groups as sentences without any LLM (a baseline).
3. **The texts as the official code embeds them** (`official_substitution`): the molecule's SMILES
   and "the molecule" replaced by ``<MOLECULE>``.

The other parts of the algorithm sit beside this module: the RDKit check of what a description
claims (`molkit.methods.lardo.factcheck`), graph-text contrastive pre-training, retrieval and the
fine-tuning predictor (`molkit.methods.lardo.clip`), the LLM calls through the response cache
(`molkit.methods.lardo.descriptions`) and the fine-tuning protocols
(`molkit.methods.lardo.protocol`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

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


# ----------------------------------------------------------------------------- stage 1: properties


def describe_dataset(name: str) -> dict[str, str]:
    """Title, description, task type and target of a dataset, for the stage-1 and stage-2
    prompts: `DATASET_INFO`'s, or for a CSV file (`molkit.data.is_csv_path`) its stem, its task
    and its label columns (`molkit.data.load_dataset` reads them, once per file version)."""
    from molkit.data import is_csv_path

    if name in DATASET_INFO:
        return DATASET_INFO[name]
    if is_csv_path(name):
        stat = Path(name).stat()
        return dict(_describe_csv(str(name), stat.st_mtime_ns, stat.st_size))
    raise KeyError(
        f"no stage-1 description for dataset {name!r}; add it to DATASET_INFO "
        f"(known: {sorted(DATASET_INFO)}) or pass a CSV file"
    )


def dataset_label(name: str) -> str:
    """How a claim row names a dataset: its name, or a CSV file's stem."""
    from molkit.data import is_csv_path

    return Path(name).stem if name not in DATASET_INFO and is_csv_path(name) else name


@functools.lru_cache(maxsize=16)
def _describe_csv(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    """`describe_dataset` of a CSV file, cached per path and version (stage 2 asks per
    molecule)."""
    from molkit.data import load_dataset

    df = load_dataset(path)
    targets = ", ".join(df.attrs["targets"])
    return (
        ("title", Path(path).stem),
        ("task", df.attrs["task"]),
        ("target", targets),
        ("description", f"The dataset {Path(path).name} gives {targets} for {len(df)} molecules."),
    )


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


# ------------------------------------------------------------------- the texts the CLIP embeds

#: What the official code writes in place of the molecule in every response.
MOLECULE_TOKEN = "<MOLECULE>"


def official_substitution(text: str, smiles: str) -> str:
    """``text`` as the official code stores it before embedding (``mistral_bbbp.py`` line 142 of
    zhangtia16/MolGraph-LarDo@cd83d71): newlines as spaces, then the molecule's SMILES, "The
    molecule" and "the molecule" each replaced by `MOLECULE_TOKEN`, in that order."""
    out = text.replace("\n", " ").replace(smiles, MOLECULE_TOKEN)
    return out.replace("The molecule", MOLECULE_TOKEN).replace("the molecule", MOLECULE_TOKEN)
