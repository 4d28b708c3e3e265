"""Every notebook has one shape: the same sections in the same order, the parameters cell in the
same place, thin code cells (no function definitions, at most 15 lines)."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SECTIONS = [
    "Aim",
    "Contents",
    "Theory",
    "Practical",
    "Results",
    "Discussion",
    "Exercises",
    "References",
]
MAX_LINES = 15


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sections_in_order(path):
    headings = [
        m.group(1).strip()
        for c in _cells(path)
        if c["cell_type"] == "markdown"
        for m in re.finditer(r"^## +(.+)$", _source(c), re.M)
    ]
    top = [h.split(" ")[0].rstrip(":") for h in headings]
    found = [s for s in top if s in SECTIONS]
    assert found == SECTIONS, (
        f"{path.name}: level-2 sections {top}, wanted {SECTIONS} in this order"
    )
    assert re.match(r"^# ", _source(_cells(path)[0])), (
        f"{path.name}: the first cell holds the # title"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first_after_aim_and_contents(path):
    cells = _cells(path)
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    first = cells[code[0]]
    assert "parameters" in first.get("metadata", {}).get("tags", []), (
        f"{path.name}: first code cell is not `parameters`"
    )
    before = "\n".join(_source(c) for c in cells[: code[0]])
    assert "## Aim" in before and "## Contents" in before, (
        f"{path.name}: Aim and Contents precede the parameters"
    )
    assert "molkit.setup(" in _source(cells[code[1]]), (
        f"{path.name}: the second code cell calls molkit.setup"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_thin(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        lines = [line for line in src.splitlines() if line.strip()]
        assert len(lines) <= MAX_LINES, (
            f"{path.name} cell {i}: {len(lines)} lines (at most {MAX_LINES})"
        )
        tree = ast.parse(src)
        defs = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
        ]
        assert not defs, f"{path.name} cell {i}: defines a function or class (put it in molkit/)"
