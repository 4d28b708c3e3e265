"""The report of a user CSV check (`molkit.data.user_csv`): every problem a file can have, what it
means and how to fix it, and the one message that lists them all with counts, file line numbers
(header = line 1) and examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from molkit.data.registry import DataError

__all__ = ["CsvProblem", "CsvReport", "DataCheckError"]

_EXAMPLES = 3
_LINES_SHOWN = 8

#: Every problem a check reports: reason -> (fatal, what it means and how to fix it).
_PROBLEMS = {
    "not a CSV": (True, "{why}"),
    "not UTF-8": (True, "{why}; save the file as UTF-8 (Excel: 'CSV UTF-8')."),
    "missing columns": (True, "{why}"),
    "ambiguous columns": (True, "names match case-insensitively, so {why} clash; rename one."),
    "wrong task": (True, "a {kind} file cannot have the task {task!r}."),
    "malformed row": (False, "more fields than the header's {width} columns (an unquoted comma "
                             "inside a value? quote it)."),
    "invalid SMILES": (False, "RDKit cannot parse them; {action}. Fix or remove them."),
    "non-numeric label": (False, "not numbers, in the numeric column {name!r}: read as missing."),
    "empty label": (False, "no label in any target column (empty, or not a number)."),
    "empty text": (False, "no text to pair with the molecule."),
    "conflicting duplicate": (False, "the same molecule{what} with different labels (compared by "
                                     "canonical SMILES): every copy is dropped."),
    "duplicate molecule": (False, "the same molecule{what} with the same labels: kept, but a "
                                  "random split may put copies on both sides."),
    "not a label": (True, "column {name!r} {why}"),
    "single class": (True, "column {name!r} has only the class {only!r} in its {n} usable rows: "
                           "a classifier needs two classes."),
    "rare class": (False, "class {cls!r} of {name!r} has one row: a stratified split needs two."),
    "constant label": (True, "column {name!r} holds one value in its usable rows: nothing to "
                             "regress."),
    "unknown split": (True, "the split column must say train, valid or test (validation, val, "
                            "dev and training are read too)."),
    "too few rows": (True, "{n} usable rows of {read}; a train/valid/test split needs at least "
                           "min_rows={min_rows}. Add rows, or lower min_rows."),
}  # fmt: skip
_KIND_NAMES = {"property": "single molecule", "pair": "molecule pair", "text": "molecule-text"}


class DataCheckError(DataError, ValueError):
    """A CSV file molkit cannot use; the message lists every problem (``.report``: `CsvReport`)."""

    def __init__(self, report: CsvReport):
        self.report = report
        super().__init__(report.render())


@dataclass(frozen=True)
class CsvProblem:
    """One kind of problem: ``lines`` are 1-based file lines (header = 1); ``dropped`` the rows
    dropped for it (each row counts under its first reason only)."""

    reason: str
    fatal: bool
    detail: str
    lines: tuple[int, ...] = ()
    examples: tuple[str, ...] = ()
    dropped: int = 0

    def render(self) -> str:
        where = f" ({_fmt(self.lines)})" if self.lines else ""
        if self.lines and self.reason not in ("not UTF-8", "not a CSV"):
            where = f" ({_rows(len(self.lines))} on {_fmt(self.lines)})"
        e_g = f" E.g. {'; '.join(self.examples[:_EXAMPLES])}." if self.examples else ""
        return f"{self.reason}{where}: {self.detail}{e_g}"


@dataclass
class CsvReport:
    """What a check found: the file, what it was read as, notes and every problem."""

    path: Path
    sha256: str
    rows_read: int = 0
    rows_usable: int = 0
    kind: str | None = None
    task: str | None = None
    targets: tuple[str, ...] = ()
    problems: list[CsvProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fatal(self) -> list[CsvProblem]:
        return [p for p in self.problems if p.fatal]

    @property
    def ok(self) -> bool:
        """True when the file can be used (rows may have been dropped)."""
        return not self.fatal

    @property
    def dropped(self) -> dict[str, int]:
        """Rows dropped per reason (each row under its first reason)."""
        return {p.reason: p.dropped for p in self.problems if p.dropped}

    def add(self, reason: str, lines=(), examples=(), dropped: int = 0, fatal: bool | None = None,
            **fields) -> None:  # fmt: skip
        """Record a `_PROBLEMS` entry, its detail filled in from ``fields``."""
        default, template = _PROBLEMS[reason]
        lines = tuple(int(x) for x in lines)
        fatal = default if fatal is None else fatal
        self.problems.append(
            CsvProblem(reason, fatal, template.format(**fields), lines, tuple(examples), dropped)
        )

    def render(self) -> str:
        """The human-readable report (what ``molkit data check`` prints)."""
        out = [f"{self.path}: {_rows(self.rows_read)} read (sha256 {self.sha256[:16]})"]
        if self.kind:
            targets = ", ".join(self.targets) or "-"
            out.append(f"  read as: {self.kind} ({_KIND_NAMES[self.kind]}), task "
                       f"{self.task or '-'}, targets {targets}")  # fmt: skip
        out += [f"  note: {n}" for n in self.notes]
        for p in sorted(self.problems, key=lambda p: (not p.fatal, not p.dropped)):
            out.append(f"  {'FATAL' if p.fatal else 'dropped' if p.dropped else 'warning'}: "
                       f"{p.render()}")  # fmt: skip
        if self.ok:
            gone = self.rows_read - self.rows_usable
            why = ", ".join(f"{n} {r}" for r, n in self.dropped.items())
            out.append(f"  usable: {self.rows_usable} of {self.rows_read} rows"
                       + (f" ({gone} dropped: {why})" if gone else ""))  # fmt: skip
        else:
            out.append(f"  not usable: {len(self.fatal)} fatal problem(s); fix them and run "
                       f"`molkit data check {self.path}` again")  # fmt: skip
        return "\n".join(out)


def _rows(n: int) -> str:
    return f"{n} row" + "s" * (n != 1)


def _fmt(lines: tuple[int, ...]) -> str:
    shown = ", ".join(str(x) for x in lines[:_LINES_SHOWN])
    more = f" and {len(lines) - _LINES_SHOWN} more" if len(lines) > _LINES_SHOWN else ""
    return f"line{'s' * (len(lines) > 1)} {shown}{more}"


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
