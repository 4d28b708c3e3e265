"""Your own molecules: a local CSV file wherever a registered dataset name is accepted.

`load_csv` (and `molkit.data.load_dataset` given a path) reads a UTF-8 CSV into the schema of the
registered loaders of its kind, inferred from the column names (any case): ``property``:
``smiles`` + label columns; ``pair``: ``smiles_1``, ``smiles_2``, a label (``label``, else the
first other column) and context columns; ``text``: ``smiles``, ``text`` (README: "Your own
molecules"). A few classes as labels make a classification task (coded 0..k-1), other labels a
regression; ``kind=``, ``task=`` and ``targets=`` override. Every problem
(`molkit.data.csv_report`) is reported at once, with counts, file line numbers (header = line 1)
and examples; rows no method can use are dropped and listed in ``df.attrs["dropped"]`` and
``df.attrs["report"]``; fatal problems raise `DataCheckError`. The file is only read: nothing is
written beside it and nothing is cached (``df.attrs["sha256"]`` is there for caches downstream to
key on).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molkit.data.csv_report import (
    _KIND_NAMES,
    CsvProblem,
    CsvReport,
    DataCheckError,
    _short,
)
from molkit.data.datasets import _SPECS, DatasetSpec, _standardise_column

__all__ = ["MIN_ROWS", "CsvProblem", "CsvReport", "DataCheckError", "check_csv", "csv_spec",
           "is_csv_path", "load_csv"]  # fmt: skip

#: Usable rows a file needs by default: an 80/10/10 split of fewer leaves under 2 molecules to
#: validate on and under 2 to test on.
MIN_ROWS = 20
#: Distinct text values a label column may hold (more: a name or a comment, not a label).
MAX_CLASSES = 20
#: Integer labels with at most this many distinct values are read as classes.
MAX_INTEGER_CLASSES = 10
Targets = str | list[str] | tuple[str, ...] | None

_KINDS = {"property": "property", "single": "property", "pair": "pair", "text": "text"}
_EXPECTED = {"property": "'smiles' + one or more label columns", "text": "'smiles' + 'text'",
             "pair": "'smiles_1', 'smiles_2' + a label column (+ context columns)"}  # fmt: skip
_SMILES = {"property": ("smiles",), "pair": ("smiles_1", "smiles_2"), "text": ("smiles",)}
_REQUIRED = {"property": ("smiles",), "pair": ("smiles_1", "smiles_2"), "text": ("smiles", "text")}
_RESERVED = {"property": ("smiles", "id", "name", "split"),
             "text": ("smiles", "text", "id", "split"),
             "pair": ("smiles_1", "smiles_2", "id_1", "id_2", "split")}  # fmt: skip
_MISSING = {"", "na", "n/a", "nan", "null", "none"}
_SPLITS = {"train": "train", "training": "train", "valid": "valid", "validation": "valid",
           "val": "valid", "dev": "valid", "test": "test"}  # fmt: skip
_BINARY_LABELS = [("false", "true"), ("no", "yes"), ("n", "y"), ("inactive", "active"),
                  ("negative", "positive"), ("neg", "pos")]  # fmt: skip
_MAGIC = [(b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"), (b"%PDF", "a PDF"),
          (b"\xd0\xcf\x11\xe0", "an Office file (an Excel .xls workbook?)"),
          (b"\x1f\x8b", "gzip-compressed"), (b"\x89PNG", "a PNG image")]  # fmt: skip


# ---------------------------------------------------------------- public API


def is_csv_path(name_or_path: object) -> bool:
    """True for an ``os.PathLike``, or a string that is not a registered dataset name and ends in
    ``.csv`` or names an existing file."""
    if isinstance(name_or_path, os.PathLike):
        return True
    if not isinstance(name_or_path, str) or name_or_path.strip().lower() in _SPECS:
        return False
    return name_or_path.lower().endswith(".csv") or Path(name_or_path).expanduser().is_file()


def check_csv(path: str | os.PathLike, *, kind: str | None = None, task: str | None = None,
              targets: Targets = None, min_rows: int = MIN_ROWS, on_invalid: str = "drop",
              ) -> CsvReport:  # fmt: skip
    """Check a CSV without raising for what it holds: the `CsvReport` (``.ok``, ``.render()``).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a bad option."""
    return _check(path, kind, task, targets, min_rows, on_invalid)[1]


def load_csv(path: str | os.PathLike, *, kind: str | None = None, task: str | None = None,
             targets: Targets = None, min_rows: int = MIN_ROWS, on_invalid: str = "drop",
             ) -> pd.DataFrame:  # fmt: skip
    """Load a CSV in its kind's registered schema (see the module docstring); raises
    `DataCheckError` listing every problem when one is fatal, and warns (one line) when rows were
    dropped. ``on_invalid`` as in `load_dataset`: ``"drop"``, ``"keep"`` (rows kept with
    ``smiles = None``) or ``"raise"`` (invalid SMILES are fatal)."""
    df, report = _check(path, kind, task, targets, min_rows, on_invalid)
    if df is None:
        raise DataCheckError(report)
    if report.dropped:
        why = ", ".join(f"{n} {r}" for r, n in report.dropped.items())
        warnings.warn(
            f"{report.path.name}: {report.rows_read - len(df)} of {report.rows_read} rows "
            f"dropped ({why}); see df.attrs['report']",
            stacklevel=3,
        )
    return df


def csv_spec(path: str | os.PathLike, *, kind: str | None = None, task: str | None = None,
             targets: Targets = None, min_rows: int = MIN_ROWS) -> DatasetSpec:  # fmt: skip
    """A `DatasetSpec` read from a CSV: kind, task and targets as `load_csv` infers them, ``files``
    the absolute path, ``extra`` with ``path``, ``sha256``, ``context``, ``classes`` and
    ``min_rows``; its reader loads the file again. Raises `DataCheckError` when it is unusable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_csv(path, kind=kind, task=task, targets=targets, min_rows=min_rows).attrs
    return DatasetSpec(
        name=a["name"], kind=a["kind"], task=a["task"], files=tuple(a["files"]),
        reader=_read_spec, targets=tuple(a["targets"]), description=a["description"],
        smiles_columns=_SMILES[a["kind"]],
        extra={"path": a["path"], "sha256": a["sha256"], "context": tuple(a["context"]),
               "classes": a["classes"], "min_rows": min_rows},
    )  # fmt: skip


def _read_spec(spec: DatasetSpec) -> pd.DataFrame:
    return load_csv(spec.files[0], kind=spec.kind, task=spec.task, targets=spec.targets,
                    min_rows=spec.extra["min_rows"])  # fmt: skip


# ---------------------------------------------------------------- reading the file


def _decode(data: bytes, report: CsvReport) -> str | None:
    """The file's text; None (and a fatal problem) when it is not text at all."""
    what = next((w for magic, w in _MAGIC if data.startswith(magic)), None)
    if what is None and b"\x00" in data[:8192]:
        what = "binary (it contains NUL bytes)"
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        report.add("not UTF-8", why="the file is UTF-16 text")
    elif not data.strip() or what is not None:
        why = f"the file is {what}, not comma-separated text; export it as CSV (UTF-8)."
        report.add("not a CSV", why=why if data.strip() else "the file is empty.")
    if not report.ok:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        bad, examples = [], []
        for number, line in enumerate(data.split(b"\n"), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                bad.append(number)
                shown = _short(line.decode("utf-8", errors="replace").strip())
                examples.append(f"line {number} byte 0x{line[err.start]:02x} in {shown!r}")
        why = "bytes that are not UTF-8 (Latin-1 or Windows-1252, as older Excel writes?)"
        report.add("not UTF-8", bad, examples, why=why)
        return data.decode("utf-8-sig", errors="replace")  # go on, to report everything else


def _parse(text: str, report: CsvReport) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """``(header, [(line, fields)])``, blank lines skipped. A header without commas but with
    semicolons or tabs sets the delimiter."""
    first = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = ","
    if "," not in first and first.count(";") + first.count("\t"):
        delimiter = max(";\t", key=first.count)
        report.notes.append(f"the delimiter is {delimiter!r}, not a comma")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            why = f"line {start}: {err} (an unclosed quote?); the rest was not read."
            report.add("not a CSV", [start], why=why)
            break
        if not any(f.strip() for f in fields):
            continue
        if header:
            rows.append((start, fields))
        else:
            header = fields
    return header, rows


@dataclass
class _Layout:
    """Column positions by role."""

    kind: str
    roles: dict[str, int]  # schema name (smiles, text, id, split, ...) -> position
    targets: list[int]
    extras: list[int]  # context (pair) and other columns, kept under their own names


def _layout(header: list[str], kind: str | None, targets: tuple[str, ...] | None,
            report: CsvReport) -> _Layout | None:  # fmt: skip
    """Find the columns of ``kind`` (inferred when None); None when the SMILES are missing."""
    names = [h.strip() for h in header]
    unnamed = {i for i, n in enumerate(names) if not n or re.fullmatch(r"unnamed: \d+", n, re.I)}
    if unnamed:
        report.notes.append(f"column(s) {sorted(i + 1 for i in unnamed)} have no name: ignored "
                            "(an index written by pandas without index=False?)")  # fmt: skip
    col: dict[str, int] = {}
    for i, n in enumerate(names):
        if i not in unnamed and n.lower() in col:
            report.add("ambiguous columns", why=f"{names[col[n.lower()]]!r} and {n!r}")
        elif i not in unnamed:
            col[n.lower()] = i
    found = [names[i] for i in sorted(col.values())]
    if kind is None:
        if "smiles" not in col and not {"smiles_1", "smiles_2"} & set(col):
            _missing(report, None, ["smiles"], found)
            return None
        kind = "pair" if {"smiles_1", "smiles_2"} & set(col) else "property"
        kind = "text" if kind == "property" and "text" in col else kind
        report.notes.append(f"kind {kind} inferred from the columns (pass kind= to override)")
    missing = [c for c in _REQUIRED[kind] if c not in col]
    roles = {c: col[c] for c in _RESERVED[kind] if c in col}
    free = [i for i in sorted(col.values()) if i not in roles.values()]
    if targets is not None:
        missing += [t for t in targets if t.strip().lower() not in col]
        chosen = [col[t.strip().lower()] for t in targets if t.strip().lower() in col]
    elif kind == "pair":
        chosen = [col["label"]] if "label" in col else free[:1]
    else:
        chosen = free if kind == "property" else []
    if kind != "text" and not chosen and targets is None:
        missing.append("a label column")
    if missing:
        _missing(report, kind, missing, found)
    if any(c not in col for c in _REQUIRED[kind]):
        return None
    return _Layout(kind, roles, chosen, [i for i in free if i not in chosen])


def _missing(report: CsvReport, kind: str | None, missing: list[str], found: list[str]) -> None:
    kinds = [kind] if kind else list(_EXPECTED)
    expected = "; or ".join(f"{_EXPECTED[k]} ({_KIND_NAMES[k]})" for k in kinds)
    what = ", ".join(m if " " in m else repr(m) for m in missing)
    why = f"missing {what}: expected {expected}; found the columns {found}."
    close = {m: c for m in missing for c in found if c.lower() != m and " " not in m
             and difflib.SequenceMatcher(None, c.lower(), m).ratio() > 0.7}  # fmt: skip
    if close:
        why += " Rename " + ", ".join(f"{c!r} to {m!r}" for m, c in close.items()) + "?"
    if len(found) == 1:
        why += " There is a single column: is the file comma-separated, with a header line?"
    elif _looks_like_data(found):
        why += " The first line looks like data: add a header line such as 'smiles,label'."
    report.add("missing columns", why=why)


def _looks_like_data(header: list[str]) -> bool:
    from molkit.chem import standardize_many

    return any(standardize_many([h for h in header if len(h) > 2], progress=False)[0])


# ---------------------------------------------------------------- labels


@dataclass
class _Labels:
    name: str
    column: int  # position in the header
    raw: list[str]
    values: np.ndarray  # float; NaN where empty or not a number
    text: bool  # text labels (e.g. active / inactive)
    classes: list[str] | None = None  # class names by code (classification)


def _read_labels(name: str, column: int, raw: list[str]) -> tuple[_Labels, list[int]]:
    """The column parsed, and the positions of values that are not numbers in a numeric one."""
    present = np.array([v.lower() not in _MISSING for v in raw], dtype=bool)
    values = pd.to_numeric(pd.Series(raw, dtype=object).where(present), errors="coerce")
    values = np.array(values, dtype=float)  # a writable copy
    values[~np.isfinite(values)] = np.nan
    numeric = np.isfinite(values)
    text = bool(present.any()) and numeric[present].mean() < 0.5
    bad = [] if text else np.flatnonzero(present & ~numeric).tolist()
    return _Labels(name, column, raw, np.full(len(raw), np.nan) if text else values, text), bad


def _distinct_text(lab: _Labels) -> list[str]:
    return sorted({v for v in lab.raw if v.lower() not in _MISSING})


def _looks_like_classes(lab: _Labels) -> bool:
    if lab.text:
        return len(_distinct_text(lab)) <= MAX_CLASSES
    v = np.unique(lab.values[np.isfinite(lab.values)])
    return 0 < len(v) <= MAX_INTEGER_CLASSES and bool(np.all(v == np.round(v)))


def _encode_classes(lab: _Labels, lines: np.ndarray, report: CsvReport) -> bool:
    """Class codes 0..k-1 into ``lab.values``, names into ``lab.classes``; False (and a fatal
    problem) when the column holds no classes."""
    if lab.text:
        names = _distinct_text(lab)
        if len(names) > MAX_CLASSES:
            why = (f"holds {len(names)} distinct text values: not classes (at most "
                   f"{MAX_CLASSES}); pass targets= to choose the label columns.")  # fmt: skip
            report.add("not a label", examples=[repr(n) for n in names], name=lab.name, why=why)
            return False
        pair = next((p for p in _BINARY_LABELS if {n.lower() for n in names} == set(p)), None)
        if pair is not None:  # false / true, inactive / active, ...: the positive class is 1
            names = sorted(names, key=lambda n: pair.index(n.lower()))
        code = {n: float(k) for k, n in enumerate(names)}
        lab.values, lab.classes = np.array([code.get(v, np.nan) for v in lab.raw]), names
        return True
    finite = np.isfinite(lab.values)
    fractional = np.flatnonzero(finite & (lab.values != np.round(lab.values)))
    if len(fractional):
        why = "holds numbers that are not integers: not classes (task='regression' for those)."
        examples = [f"line {lines[i]} {lab.raw[i]!r}" for i in fractional]
        report.add("not a label", lines[fractional], examples, name=lab.name, why=why)
        return False
    numbers = np.unique(lab.values[finite])
    lab.classes = [str(int(x)) for x in numbers]
    lab.values = np.where(finite, np.searchsorted(numbers, lab.values), np.nan)
    if len(numbers) > 1 and not np.array_equal(numbers, np.arange(len(numbers))):
        report.notes.append(f"column {lab.name!r}: the classes {', '.join(lab.classes)} are "
                            f"coded 0..{len(numbers) - 1} (df.attrs['classes'])")  # fmt: skip
    return True


def _labels(layout: _Layout, header: list[str], cells: list[list[str]], lines: np.ndarray,
            task: str | None, targets, report: CsvReport) -> tuple[list[_Labels], str | None]:  # noqa: E501  # fmt: skip
    """Parse every target column, infer the task, encode classes."""
    labels = []
    for i in layout.targets:
        lab, bad = _read_labels(header[i].strip(), i, [r[i] for r in cells])
        if bad:
            examples = [f"line {lines[b]} {lab.raw[b]!r}" for b in bad]
            report.add("non-numeric label", lines[bad], examples, name=lab.name)
        labels.append(lab)
    many = [lab for lab in labels if lab.text and len(_distinct_text(lab)) > MAX_CLASSES]
    if targets is None and layout.kind == "property" and many and len(many) < len(labels):
        for lab in many:
            report.notes.append(f"column {lab.name!r} holds text with many values: kept as an "
                                "extra column, not a label (targets= overrides)")  # fmt: skip
        layout.extras = sorted(layout.extras + [lab.column for lab in many])
        labels = [lab for lab in labels if lab not in many]
    if not labels:
        return [], task
    if task is None:
        looks = [_looks_like_classes(lab) for lab in labels]
        task = "classification" if all(looks) else "regression"
        names = [lab.name for lab, c in zip(labels, looks, strict=True) if c == all(looks)]
        what = "a few classes" if all(looks) else "continuous numbers"
        report.notes.append(f"task {task} inferred from the labels ({what} in "
                            f"{', '.join(map(repr, names))}; pass task= to override)")  # fmt: skip
    usable = []
    for lab in labels:
        if task == "classification" and not _encode_classes(lab, lines, report):
            continue
        if task == "regression" and lab.text:
            why = "holds text, not numbers: no regression target (task='classification'?)."
            examples = [repr(v) for v in _distinct_text(lab)]
            report.add("not a label", examples=examples, name=lab.name, why=why)
            continue
        usable.append(lab)
    return usable, task


# ---------------------------------------------------------------- the check


def _check(path, kind, task, targets, min_rows, on_invalid) -> tuple[pd.DataFrame | None, CsvReport]:  # noqa: E501  # fmt: skip
    """Read and check a CSV: ``(frame or None when unusable, report)``."""
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
    if task not in (None, "classification", "regression", "generation"):
        raise ValueError(f"task must be classification, regression or generation, not {task!r}")
    if on_invalid not in ("drop", "keep", "raise"):
        raise ValueError(f"on_invalid must be 'drop', 'keep' or 'raise', not {on_invalid!r}")
    kind = _KINDS[kind] if kind else None
    targets = (targets,) if isinstance(targets, str) else tuple(targets) if targets else None
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such CSV file: {str(path)!r} (looked for {path.resolve()}); "
                                "registered dataset names: `molkit data list`")  # fmt: skip
    data = path.read_bytes()
    report = CsvReport(path=path, sha256=hashlib.sha256(data).hexdigest())
    text = _decode(data, report)
    header, rows = _parse(text, report) if text is not None else ([], [])
    report.rows_read = len(rows)
    if text is not None and not header and report.ok:
        report.add("not a CSV", why="there is no header line and no row.")
    layout = _layout(header, kind, targets, report) if header else None
    if layout is None:
        return None, report
    report.kind = layout.kind
    if task is not None and (task == "generation") != (layout.kind == "text"):
        report.add("wrong task", kind=_KIND_NAMES[layout.kind], task=task)
        task = None
    width = len(header)
    long = [len(f) > width and any(x.strip() for x in f[width:]) for _, f in rows]
    if any(long):
        malformed = [(ln, f) for (ln, f), b in zip(rows, long, strict=True) if b]
        examples = [f"line {ln}: {len(f)} fields" for ln, f in malformed]
        report.add("malformed row", [ln for ln, _ in malformed], examples, sum(long), width=width)
    rows = [(ln, [x.strip() for x in (f + [""] * width)[:width]])
            for (ln, f), b in zip(rows, long, strict=True) if not b]  # fmt: skip
    lines = np.array([ln for ln, _ in rows], dtype=int)
    cells = [f for _, f in rows]
    df = pd.DataFrame({name: [r[i] for r in cells] for name, i in layout.roles.items()})
    drop = np.full(len(rows), "", dtype=object)  # the first reason a row is dropped for

    invalid: list[dict] = []  # SMILES, standardised as the registered loaders do
    for smiles in _SMILES[layout.kind]:
        raw = smiles.replace("smiles", "smiles_raw")
        df = df.rename(columns={smiles: raw})
        _standardise_column(df, raw, smiles, invalid)
    for rec in invalid:
        rec["line"] = int(lines[rec["row"]])
    bad = sorted({rec["row"] for rec in invalid})
    if bad:
        action = {"drop": "these rows are dropped", "keep": "kept with smiles=None",
                  "raise": "fatal with on_invalid='raise'"}[on_invalid]  # fmt: skip
        examples = [f"line {r['line']} {_short(r['smiles'], 40)!r} ({_short(r['reason'], 80)})"
                    for r in invalid]  # fmt: skip
        dropped = len(bad) if on_invalid == "drop" else 0
        fatal = on_invalid == "raise"
        report.add("invalid SMILES", lines[bad], examples, dropped, fatal, action=action)
        drop[bad] = "invalid SMILES" if on_invalid == "drop" else ""

    labels: list[_Labels] = []
    if layout.kind == "text":
        task = "generation"
        empty = np.flatnonzero((df["text"] == "").to_numpy())
        _drop(report, drop, empty, lines, "empty text", df["smiles_raw"].tolist())
    else:
        labels, task = _labels(layout, header, cells, lines, task, targets, report)
    report.task, report.targets = task, tuple(lab.name for lab in labels)
    if labels:
        y = np.column_stack([lab.values for lab in labels])
        empty = np.flatnonzero(np.isnan(y).all(axis=1))
        show = df[_SMILES[layout.kind][0].replace("smiles", "smiles_raw")].tolist()
        _drop(report, drop, empty, lines, "empty label", show)
        partial = np.isnan(y).any(axis=1) & (drop == "")
        if partial.any():
            report.notes.append(f"{int(partial.sum())} rows miss some of their labels: kept, "
                                "with NaN for a missing label (as in Tox21)")  # fmt: skip
        _duplicates(df, layout, labels, cells, lines, drop, report)
        for lab in labels:
            df[lab.name] = lab.values
    for i in layout.extras:
        values = pd.Series([r[i] for r in cells], dtype=object)
        numbers = pd.to_numeric(values.where(values != ""), errors="coerce")
        numeric = numbers.notna().sum() == (values != "").sum()
        words = pd.Series([v or None for v in values])
        df[header[i].strip()] = numbers.astype(float) if numeric else words
    for role in ("id", "id_1", "id_2", "name"):
        if role in df:
            df[role] = df[role].where(df[role] != "", None)
    keep = drop == ""
    report.rows_usable = int(keep.sum())
    _final_checks(df, layout, labels, lines, keep, min_rows, report)
    if not report.ok:
        return None, report
    out = _assemble(df, layout, labels, lines, keep, report)
    resolved = str(path.resolve())
    out.attrs.update(
        {
            "name": path.name, "kind": layout.kind, "task": task,
            "targets": [lab.name for lab in labels], "description": f"your CSV file {path}",
            "citation": "", "licence": "", "files": [resolved], "path": resolved,
            "sha256": report.sha256, "invalid": invalid, "n_invalid_rows": len(bad),
            "rows_read": report.rows_read, "dropped": report.dropped, "report": report.render(),
            "context": [header[i].strip() for i in layout.extras] * (layout.kind == "pair"),
            "classes": {lab.name: lab.classes for lab in labels if lab.classes is not None},
        }
    )  # fmt: skip
    return out, report


def _drop(report: CsvReport, drop: np.ndarray, rows, lines: np.ndarray, reason: str,
          show: list | None = None, examples: list | None = None, **fields) -> None:  # fmt: skip
    """Drop the ``rows`` not dropped yet, for ``reason``, and report them (examples: ``show``,
    one value per row, after each line number; or ``examples``)."""
    rows = np.asarray([r for r in rows if drop[r] == ""], dtype=int)
    if len(rows):
        drop[rows] = reason
        if examples is None:
            examples = [f"line {lines[r]}" + (f" {_short(str(show[r]), 40)!r}" if show else "")
                        for r in rows]  # fmt: skip
        report.add(reason, lines[rows], examples, len(rows), **fields)


def _duplicates(df, layout, labels, cells, lines, drop, report) -> None:
    """Drop every row of a molecule (a pair and its context) whose copies disagree on a label;
    report consistent copies (kept)."""
    smiles = [df[c].tolist() for c in _SMILES[layout.kind]]
    context = [[r[i] for r in cells] for i in layout.extras] if layout.kind == "pair" else []
    groups: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(drop == ""):
        key = tuple(s[i] for s in smiles)
        if all(isinstance(k, str) for k in key):  # an invalid SMILES kept is None / NaN
            groups.setdefault(key + tuple(c[i] for c in context), []).append(int(i))
    conflict, repeat, examples = [], [], []
    for key, idx in groups.items():
        if len(idx) < 2:
            continue
        disagree = []
        for lab in labels:
            v = lab.values[idx][np.isfinite(lab.values[idx])]
            if len(v) > 1 and not np.allclose(v, v[0], rtol=1e-6, atol=1e-9):
                disagree.append(f"{lab.name} {' / '.join(lab.raw[i] for i in idx)}")
        if disagree:
            shown = ", ".join(str(lines[i]) for i in idx)
            smi = _short(" + ".join(key[: len(smiles)]), 40)
            examples.append(f"{smi!r} on lines {shown}: {'; '.join(disagree)}")
        (conflict if disagree else repeat).extend(idx)
    what = " pair (and context)" if layout.kind == "pair" else ""
    conflict = np.array(sorted(conflict), dtype=int)
    _drop(report, drop, conflict, lines, "conflicting duplicate", examples=examples, what=what)
    if repeat:
        report.add("duplicate molecule", lines[sorted(repeat)], what=what)


def _final_checks(df, layout, labels, lines, keep, min_rows, report) -> None:
    """The usable rows: two classes, a varying label, known split names, enough rows."""
    for lab in labels:
        v = lab.values[keep & np.isfinite(lab.values)]
        values = np.unique(v)
        if not len(v):  # no usable row: "too few rows" says so
            continue
        if report.task == "classification" and len(values) < 2:
            report.add("single class", name=lab.name, only=lab.classes[int(values[0])], n=len(v))
        elif report.task == "classification":
            for c in values[[int((v == c).sum()) < 2 for c in values]]:
                report.add("rare class", cls=lab.classes[int(c)], name=lab.name)
        elif len(values) < 2:
            report.add("constant label", name=lab.name)
    if "split" in df:
        names = df["split"].str.lower().map(_SPLITS)
        unknown = np.flatnonzero(names.isna().to_numpy() & keep)
        if len(unknown):
            examples = [f"line {lines[i]} {df['split'].iat[i]!r}" for i in unknown]
            report.add("unknown split", lines[unknown], examples)
        df["split"] = names
    if report.rows_usable < min_rows:
        report.add("too few rows", n=report.rows_usable, read=report.rows_read, min_rows=min_rows)


def _assemble(df, layout, labels, lines, keep, report) -> pd.DataFrame:
    """The registered schema: ids, canonical SMILES, raw SMILES, targets or text, split, extras."""
    from molkit.data.splits import random_split

    df = df[keep].reset_index(drop=True)
    if layout.kind == "text" and "id" not in df:
        df["id"] = [str(x) for x in lines[keep]]
    if layout.kind == "text" and "split" not in df:
        df["split"] = ""
        for part, idx in random_split(len(df), seed=0).items():
            df.loc[idx, "split"] = part
        report.notes.append("no split column: a seeded random 80/10/10 split was assigned "
                            "(molkit.data.random_split, seed 0)")  # fmt: skip
    for k in ("1", "2") if layout.kind == "pair" else ():
        if f"id_{k}" not in df:
            df[f"id_{k}"] = df[f"smiles_raw_{k}"]
    smiles = list(_SMILES[layout.kind])
    body = [s.replace("smiles", "smiles_raw") for s in smiles] + ["text"] * (layout.kind == "text")
    front = [c for c in ("id", "id_1", "id_2") if c in df] + smiles + body
    front += [lab.name for lab in labels] + ["split"] * ("split" in df)
    return df[front + [c for c in df.columns if c not in front]]
