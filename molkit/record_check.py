"""What a student should never have to scroll past in an executed record: stray stderr, warnings,
object reprs and staging paths, redrawn progress bars.

`record_problems` reads one executed notebook (``papermill_runs/<profile>/*.ipynb``) and lists each
problem with its cell; ``molkit run`` prints them after a run, and a test holds the committed
record to none. A cell that shows stderr on purpose carries the tag ``show-stderr``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["SHOW_STDERR_TAG", "record_problems"]

#: Tag of a cell whose stderr output is part of the lesson (e.g. an error message shown on purpose).
SHOW_STDERR_TAG = "show-stderr"

_PATTERNS = {
    "an object repr": re.compile(r"<[\w.]+(?: object)? at 0x[0-9a-f]+>"),
    "a path repr": re.compile(r"(?:Posix|Windows)Path\("),
    "a staging folder": re.compile(r"\.staging-"),
    "a warning": re.compile(r"\b\w*Warning: |\bwarnings\.warn\("),
    "a redrawn progress bar": re.compile(r"\r[^\n]*\d+%\|"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
}


def _texts(output: dict) -> list[str]:
    if output.get("output_type") == "stream":
        return ["".join(output.get("text", ""))]
    data = output.get("data", {})
    return ["".join(data[key]) for key in ("text/plain", "text/html") if key in data]


def record_problems(path: str | Path) -> list[str]:
    """Every problem of an executed notebook, one sentence each (``cell N: ...``); empty when
    the record is clean."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    code_cells = [c for c in notebook["cells"] if c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        tags = cell.get("metadata", {}).get("tags", [])
        where = f"{Path(path).stem} code cell {number}"
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{where}: an error ({output.get('ename')})")
                continue
            if output.get("name") == "stderr" and SHOW_STDERR_TAG not in tags:
                first = "".join(output.get("text", "")).strip().splitlines()[:1]
                problems.append(f"{where}: stderr output {first[0][:80] if first else ''!r}")
                continue
            for text in _texts(output):
                for what, pattern in _PATTERNS.items():
                    found = pattern.search(text)
                    if found:
                        problems.append(f"{where}: {what} ({found.group(0)[:60]!r})")
    return problems
