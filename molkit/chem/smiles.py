"""Parsing and standardising SMILES, with errors that say what went wrong."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize

from molkit._progress import tqdm

__all__ = [
    "InvalidSmilesError",
    "parse_smiles",
    "standardize_smiles",
    "standardize_many",
    "as_mol",
    "as_mols",
    "progress_bar",
]

#: Batch functions show a progress bar only from this many items on.
PROGRESS_MIN_ITEMS = 200

_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_PARSE_PREFIX = "SMILES Parse Error: "


class InvalidSmilesError(ValueError):
    """A SMILES string RDKit cannot turn into a sanitised molecule.

    Attributes: ``smiles`` (the input), ``reason`` (RDKit's explanation), ``index`` (position in
    a batch, or None).
    """

    def __init__(self, smiles: object, reason: str, index: int | None = None):
        self.smiles = smiles
        self.reason = reason
        self.index = index
        where = f" at position {index}" if index is not None else ""
        super().__init__(f"Invalid SMILES {smiles!r}{where}: {reason}. {_fix_hint(reason)}")


def _fix_hint(reason: str) -> str:
    r = reason.lower()
    if "empty" in r or "not a string" in r:
        hint = "pass a non-empty SMILES string (missing values must be removed first)"
    elif "kekulize" in r:
        hint = (
            "an aromatic ring cannot be kekulised; aromatic N-H must be written [nH] and "
            "lowercase atoms must form a valid aromatic ring"
        )
    elif "valence" in r:
        hint = "an atom has too many bonds; check charges (e.g. [N+]) and bond orders"
    elif "parenthes" in r:
        hint = "every '(' needs a matching ')'"
    elif "ring" in r:
        hint = "every ring-closure digit must appear exactly twice"
    else:
        hint = "check the string for typos or unsupported atoms"
    return (
        f"Fix: {hint}; or run molkit.chem.standardize_many(...) to find and report every "
        "invalid entry of a batch."
    )


def _clean_log(messages: str) -> str:
    lines: list[str] = []
    for raw in messages.splitlines():
        line = _TIMESTAMP.sub("", raw).strip()
        is_parse_error = line.startswith(_PARSE_PREFIX)
        line = " ".join(line.removeprefix(_PARSE_PREFIX).rstrip(":").split())
        # RDKit also echoes the input with a caret marker and repeats itself; keep explanations.
        if is_parse_error and line.startswith("Failed parsing SMILES"):
            continue
        if line and line not in lines and (is_parse_error or not lines):
            lines.append(line)
    return "; ".join(lines) if lines else "RDKit could not parse it"


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse and sanitise one SMILES into an RDKit ``Mol`` (implicit hydrogens, RDKit atom order).

    Raises ``InvalidSmilesError`` (a ``ValueError``) naming the SMILES, RDKit's reason and a fix.
    """
    if not isinstance(smiles, str):
        raise InvalidSmilesError(smiles, f"not a string but {type(smiles).__name__}")
    if not smiles.strip():
        raise InvalidSmilesError(smiles, "empty SMILES")
    if hasattr(rdBase, "CaptureErrorLog"):
        with rdBase.CaptureErrorLog() as capture:
            mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise InvalidSmilesError(smiles, _clean_log(capture.messages))
        return mol
    # Older RDKit: no log capture; recover the sanitisation reason explicitly.
    with rdBase.BlockLogs():
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            raise InvalidSmilesError(smiles, "SMILES syntax error")
        problems = Chem.DetectChemistryProblems(raw)
        if problems:
            raise InvalidSmilesError(smiles, "; ".join(p.Message() for p in problems))
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidSmilesError(smiles, "sanitisation failed")
    return mol


def as_mol(smiles_or_mol: str | Chem.Mol, index: int | None = None) -> Chem.Mol:
    """Return a ``Mol`` unchanged, or parse a SMILES (``index`` only labels error messages)."""
    if isinstance(smiles_or_mol, Chem.Mol):
        return smiles_or_mol
    try:
        return parse_smiles(smiles_or_mol)
    except InvalidSmilesError as err:
        if index is None:
            raise
        raise InvalidSmilesError(err.smiles, err.reason, index) from None


def as_mols(
    smiles_or_mols: str | Chem.Mol | Iterable[str | Chem.Mol],
    progress: bool = False,
    desc: str = "parsing",
) -> list[Chem.Mol]:
    """Parse a batch (a single SMILES or ``Mol`` counts as a batch of one); raises on invalid."""
    if isinstance(smiles_or_mols, str | Chem.Mol):
        smiles_or_mols = [smiles_or_mols]
    items = list(smiles_or_mols)
    return [as_mol(x, i) for i, x in enumerate(progress_bar(items, progress, desc))]


def progress_bar(items: Sequence, progress: bool, desc: str):
    """Wrap ``items`` in a tqdm bar when ``progress`` and the batch is not tiny."""
    return tqdm(items, desc=desc, disable=not progress or len(items) < PROGRESS_MIN_ITEMS)


_LARGEST_FRAGMENT = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)


def standardize_smiles(smiles: str | Chem.Mol, largest_fragment: bool = False) -> str:
    """Canonical isomeric SMILES; with ``largest_fragment`` keep only the largest organic
    fragment (drops counter-ions and solvents). Raises ``InvalidSmilesError``."""
    mol = as_mol(smiles)
    if largest_fragment:
        mol = _LARGEST_FRAGMENT.choose(mol)
    return Chem.MolToSmiles(mol)


def standardize_many(
    smiles_list: Iterable[str],
    largest_fragment: bool = False,
    progress: bool = True,
) -> tuple[list[str | None], pd.DataFrame]:
    """Standardise a batch without dropping anything silently.

    Returns ``(standardized, invalid)``: a list of the same length with ``None`` where the input
    is invalid, and a DataFrame with columns ``index, smiles, reason`` (one row per invalid input).
    """
    items = list(smiles_list)
    out: list[str | None] = []
    bad: list[dict] = []
    for i, smi in enumerate(progress_bar(items, progress, "standardising")):
        try:
            out.append(standardize_smiles(smi, largest_fragment=largest_fragment))
        except InvalidSmilesError as err:
            out.append(None)
            bad.append({"index": i, "smiles": smi, "reason": err.reason})
    return out, pd.DataFrame(bad, columns=["index", "smiles", "reason"])
