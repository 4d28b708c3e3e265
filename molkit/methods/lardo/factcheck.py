"""MolGraph-LarDo's calibration, measured: what a description claims about properties RDKit
computes, each claim checked against RDKit (`extract_claims`, `calibration_table`).

The paper's central claim is that the DSM's values *calibrate* the LLM. This module is how molkit
checks it: it reads the values and qualitative statements a description makes about logP,
molecular weight, TPSA, H-bond donors and acceptors, rotatable bonds and aromatic rings, and marks
each one that contradicts RDKit. Text the LLM writes that is not a claim about the molecule is
left out: a number inside a name (``BACE-1``), a number inside a formula (``Molecular Weight of
Water) * 100``, ``... / 4``) and a statement about water (``molecular weight of water is
approximately 18.015``); `tests/test_lardo.py` holds one test per such artefact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd


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
#: Arithmetic between a property's name and a number (or right after the number): a formula the
#: LLM wrote (``Molecular Weight of Water) * 100``), not a value it states.
_OPERATORS = "*/+×÷^"
#: Any property's name: a stated value's gap never crosses one (in "2 hydrogen bond donors and a
#: TPSA of 63.6" the 63.6 is the TPSA's, not a donor count).
_ANY_NAME = "|".join(_NAME_PATTERNS.values())
#: A stated value: the name, at most 30 characters without digits, separators, operators or
#: another name, then a number that is not part of a name (``BACE-1``, ``CCl4``) and that no
#: operator follows.
_VALUE_AFTER = {
    k: re.compile(
        rf"({p})((?:(?!{_ANY_NAME})[^0-9\n;\[\]{re.escape(_OPERATORS)}]){{0,30}}?)"
        rf"(?<![a-z\d])(?<![a-z\d]-){_NUMBER}(?!\d|\.\d|\s*[{re.escape(_OPERATORS)}])",
        re.IGNORECASE,
    )
    for k, p in _NAME_PATTERNS.items()
}
#: A gap that names another substance: the statement is about it, not about the molecule.
_OTHER_SUBSTANCE = re.compile(r"\bwater\b", re.IGNORECASE)
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
    TPSA > 90, "no H-bond donors" with a donor). Not read as a value: a number inside a name
    (``BACE-1``), a number with arithmetic between it and the name or right after it (a formula),
    a statement whose name is followed by "water" (``molecular weight of water is 18``), and a
    number read past another property's name (``donors and a TPSA of 63.6``).
    """
    claims: list[PropertyClaim] = []
    seen: set[tuple[str, int]] = set()
    for name in _NAME_PATTERNS:
        computed = float(values[name])
        patterns = [(_VALUE_AFTER[name], 3)]
        if name in _VALUE_BEFORE:
            patterns.append((_VALUE_BEFORE[name], 1))
        for pattern, group in patterns:
            for m in pattern.finditer(text):
                if (name, m.start(group)) in seen:
                    continue
                if group == 3 and _OTHER_SUBSTANCE.search(m.group(2)):
                    continue  # "molecular weight of water is 18.015": not about the molecule
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


def echoes_smiles(text: str, smiles: str) -> bool:
    """Whether ``text`` repeats the molecule's SMILES verbatim (what the official substitution
    removes before embedding)."""
    return smiles in text


def check_descriptions(desc, variants: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each variant's description of every molecule all ``variants`` described (``desc``: a
    `molkit.methods.lardo.descriptions.Descriptions`), checked once: the per-description rows
    (`description_checks`) and the per-claim rows (`CALIBRATION_COLUMNS` and ``dataset``)."""
    records = desc.values.to_dict("records")
    rows, claims = [], {variant: [] for variant in variants}
    for i in desc.described_by_all(variants):
        for variant in variants:
            found = extract_claims(desc.texts[variant][i], records[i])
            claims[variant] += [{"molecule": i, "variant": variant, **c.__dict__} for c in found]
            rows.append({
                "dataset": desc.dataset, "molecule": i, "variant": variant, "claims": len(found),
                "value_claims": sum(c.kind == "value" for c in found),
                "contradictions": sum(c.contradicts for c in found),
                "contradicts": any(c.contradicts for c in found),
                "states_mw": any(
                    c.descriptor == "mol_weight" and c.kind == "value" and not c.contradicts
                    for c in found
                ),
                "echoes_smiles": echoes_smiles(desc.texts[variant][i], desc.smiles[i]),
            })  # fmt: skip
    table = pd.DataFrame([r for v in variants for r in claims[v]], columns=CALIBRATION_COLUMNS)
    return pd.DataFrame(rows), table.assign(dataset=desc.dataset)


def description_checks(desc, variants: tuple[str, ...]) -> pd.DataFrame:
    """One row per (molecule, variant) for the molecules every variant of ``variants`` described:
    ``dataset``, ``molecule``, ``variant``, ``claims`` (checkable claims), ``value_claims``,
    ``contradictions``, ``contradicts`` (at least one), ``states_mw`` (the molecular weight within
    tolerance), ``echoes_smiles`` (the text repeats the SMILES)."""
    return check_descriptions(desc, variants)[0]
