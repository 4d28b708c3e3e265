"""Project-level invariants: environment files agree, notebooks are stripped and well-formed."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    import yaml

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in pyproject["dependencies"]}
    for extra in pyproject["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_list if not r.startswith("-")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    # same version constraints where pyproject pins one
    env_specs = {_name(r): r.replace(" ", "") for r in pip_list if not r.startswith("-")}
    for req in pyproject["dependencies"]:
        if any(op in req for op in "<>="):
            assert env_specs[_name(req)] == req.replace(" ", "")


def test_notebooks_exist_with_stable_names():
    stems = [p.stem for p in NOTEBOOKS]
    assert stems, "no notebooks"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", s) for s in stems), stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name}: a code cell has outputs (run nbstripout)"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts left in"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_literals(path):
    import ast

    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(tagged[0]["source"]))
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds only assignments"
        ast.literal_eval(node.value)  # literals only
        names |= {t.id for t in node.targets}
    assert "profile" in names and "seed" in names
