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


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^ \\;]+)", line)
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _environment_pins() -> dict[str, str]:
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for requirement in pip_list:
        if requirement.startswith("-"):
            continue
        assert "==" in requirement, (
            f"environment.yml: {requirement!r} is not pinned (name==version)"
        )
        name, version = requirement.split("==")
        pins[_name(name)] = version.strip()
    return pins


def test_environment_yml_agrees_with_pyproject_and_the_lock():
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in pyproject["dependencies"]]
    for extra in pyproject["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    wanted = {_name(r.name) for r in requirements}
    env = _environment_pins()
    assert set(env) == wanted, (
        f"only in environment.yml: {set(env) - wanted}; only in pyproject: {wanted - set(env)}"
    )
    lock = _lock_pins()
    torch_spec = re.search(
        r"^TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M
    ).group(1)
    for req in requirements:
        name = _name(req.name)
        locked = torch_spec if name == "torch" else lock.get(name)
        assert locked is not None, f"requirements.lock has no {name}: run `make lock`"
        assert env[name] == locked, f"environment.yml pins {name}=={env[name]}, the lock {locked}"
        assert req.specifier.contains(locked, prereleases=True), (
            f"{name}=={locked} is outside pyproject's {req}"
        )


def test_lock_has_hashes_and_no_gpu_packages():
    text = (ROOT / "requirements.lock").read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if "==" in b.split("\n", 1)[0]]
    assert len(blocks) > 50
    assert all("--hash=sha256:" in b for b in blocks), (
        "every locked package needs its hashes (make lock)"
    )
    assert not re.search(r"^(torch|nvidia-[a-z0-9-]+|triton)==", text, re.M), (
        "torch is the CPU build, installed apart"
    )


def test_notebooks_exist_with_stable_names():
    stems = [p.stem for p in NOTEBOOKS]
    assert stems, "no notebooks"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", s) for s in stems), stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], (
                f"{path.name}: a code cell has outputs (run nbstripout)"
            )
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


RECORD = sorted((ROOT / "papermill_runs" / "default").glob("*.ipynb"))


@pytest.mark.parametrize("path", RECORD, ids=lambda p: p.stem)
def test_executed_record_keeps_its_outputs(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and sum(bool(c.get("outputs")) for c in code) >= len(code) // 2, (
        f"{path}: the executed record lost its outputs (was it committed through nbstripout?)"
    )


def test_nbstripout_applies_to_narrative_notebooks_only():
    import subprocess

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        [
            "git",
            "check-attr",
            "filter",
            "--",
            "notebooks/01_molex.ipynb",
            "papermill_runs/default/01_molex.ipynb",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].endswith("filter: nbstripout"), out
    assert out[1].endswith("filter: unspecified"), out


def test_import_layers_hold():
    """import-linter's contracts in pyproject.toml: no upward import, no method imports another."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (make env installs it)")
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
