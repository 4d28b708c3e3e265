"""One contract over every method (scikit-learn's `check_estimator` is the model): the five rooms
exist, every profile instantiates and validates, every section of an experiment takes the
settings first and returns `Results`, every module of molkit stays under 650 lines, and the
ledger checker (`ledger_problems`) catches an ungated comparison, a verdict judged past a failed
gate and a verdict its interval does not give. Each notebook's smoke run holds its own claim rows
to `ledger_problems` (tests/test_notebooks_smoke.py)."""

import importlib
import inspect
import typing
from pathlib import Path

import pytest

from molkit._profiles import PROFILES
from molkit.methods.experiment import (
    HOLDS,
    NOT_JUDGED,
    UNDECIDED,
    Claim,
    Results,
    Settings,
    gated,
    ledger_problems,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("molex", "icma", "lardo", "moltc")
ROOMS = ("settings", "method", "experiment", "claims", "figures")
MAX_MODULE_LINES = 650


@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_the_five_rooms(method):
    package = ROOT / "molkit" / "methods" / method
    missing = [room for room in ROOMS if not (package / f"{room}.py").is_file()]
    assert not missing, f"molkit.methods.{method} lacks the rooms {missing}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_instantiates_and_validates(method, profile):
    settings_cls = importlib.import_module(f"molkit.methods.{method}.settings").Settings
    assert issubclass(settings_cls, Settings)
    settings = settings_cls.for_profile(profile)
    assert settings.profile == profile and settings.problems() == []
    assert settings.table().shape[0] >= 1  # the compact display every notebook shows
    # the notebook's parameters enter once, through for_profile (a None keeps the profile's value)
    assert settings_cls.for_profile(profile, seed=settings.seed, lm_model=None) == settings


def _sections(method: str):
    module = importlib.import_module(f"molkit.methods.{method}.experiment")
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if fn.__module__ == module.__name__ and not name.startswith("_"):
            yield name, fn


@pytest.mark.parametrize("method", METHODS)
def test_every_section_takes_settings_first_and_returns_results(method):
    sections = list(_sections(method))
    assert len(sections) >= 3, f"{method}: {len(sections)} sections"
    for name, fn in sections:
        params = list(inspect.signature(fn).parameters)
        assert params and params[0] == "settings", f"{method}.{name}: settings must come first"
        returned = typing.get_type_hints(fn).get("return")
        assert inspect.isclass(returned) and issubclass(returned, Results), (
            f"{method}.{name} must return Results (or a subclass), not {returned!r}"
        )


def test_no_module_of_molkit_is_too_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "molkit").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _claim(text, verdict=HOLDS, low=0.1, high=0.3, **fields):
    return Claim("P", text, "-", "m", 0.2, low, high, verdict, 10, **fields)


def test_the_ledger_checker_catches_what_makes_a_verdict_untrustworthy():
    gate_a = _claim("A beats its baseline", kind="gate")
    gate_b = _claim("B beats its baseline", UNDECIDED, -0.1, 0.3, kind="gate")
    sound = [gate_a, gate_b, gated(_claim("A beats B"), [gate_a, gate_b])]
    assert sound[2].verdict == NOT_JUDGED and ledger_problems(sound) == []
    # a comparison judged outside gated(), and one whose verdict survived a failed gate
    ungated = _claim("A beats C", kind="comparison")
    forged = _claim("A beats B again", kind="comparison", gates=("B beats its baseline",))
    orphan = _claim("A beats D", kind="comparison", gates=("D beats its baseline",))
    wrong = _claim("E beats F", HOLDS, -0.2, 0.1)
    problems = ledger_problems([gate_a, gate_b, ungated, forged, orphan, wrong])
    text = "\n".join(problems)
    assert "'A beats C': a comparison that did not go through gated()" in text
    assert "'A beats B again': judged holds although gate 'B beats its baseline' failed" in text
    assert "'D beats its baseline' is not among the claim rows" in text
    assert "'E beats F': verdict holds but interval" in text
    assert len(problems) == 4
