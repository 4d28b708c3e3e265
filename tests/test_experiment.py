"""The shared method contract: typed settings per profile, overrides, claims with computed verdicts,
and CLAIMS.md built from claim rows."""

import math
from dataclasses import FrozenInstanceError, dataclass

import numpy as np
import pandas as pd
import pytest

from molkit.methods.experiment import (
    CONTRADICTED,
    HOLDS,
    UNDECIDED,
    Claim,
    Results,
    Settings,
    paired_claim,
    verdict_from_interval,
)


@dataclass(frozen=True)
class Toy(Settings):
    n_train: int | None = 100
    lr: float = 1e-3
    datasets: tuple[str, ...] = ("bbbp",)
    lm_model: str = "rxnfp-bert"
    PROFILES = {
        "smoke": {"n_train": 8, "lm_model": "tiny-random-llama"},
        "default": {},
        "full": {"n_train": None},
    }


def test_for_profile_and_overrides():
    smoke = Toy.for_profile("smoke")
    assert (smoke.profile, smoke.n_train, smoke.lm_model) == ("smoke", 8, "tiny-random-llama")
    assert Toy.for_profile("full").n_train is None and Toy.for_profile("default").n_train == 100
    assert smoke.with_overrides(n_train=None, lr=None) == smoke  # None keeps the profile's value
    changed = smoke.with_overrides({"datasets": ["mutag", "liver"]}, lr=5e-4)
    assert changed.datasets == ("mutag", "liver") and changed.lr == 5e-4 and changed.n_train == 8
    with pytest.raises(FrozenInstanceError):
        smoke.lr = 1.0  # type: ignore[misc]


def test_unknown_or_mistyped_settings_fail_at_setup():
    with pytest.raises(
        ValueError,
        match=r"no setting .n_trian.; valid settings: seed, n_train, lr, datasets, lm_model",
    ):
        Toy.for_profile("smoke").with_overrides(n_trian=3)
    with pytest.raises(TypeError, match=r"Toy.lr must be float, not 'fast'"):
        Toy.for_profile("smoke").with_overrides(lr="fast")
    with pytest.raises(ValueError, match="unknown profile 'quick'"):
        Toy.for_profile("quick")


def test_verdicts_come_from_the_interval():
    assert verdict_from_interval(0.01, 0.2) == HOLDS
    assert verdict_from_interval(-0.2, -0.01) == CONTRADICTED
    assert verdict_from_interval(-0.1, 0.1) == UNDECIDED
    assert (
        verdict_from_interval(-0.3, -0.1, higher_is_better=False) == HOLDS
    )  # RMSE: lower is better
    assert verdict_from_interval(float("nan"), 1.0) == UNDECIDED


def test_paired_claim_on_a_clear_and_an_unclear_difference():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    good, bad = y + rng.normal(scale=0.1, size=200), y + rng.normal(scale=1.0, size=200)

    def rmse(t, p):
        return float(np.sqrt(np.mean((t - p) ** 2)))

    claim = paired_claim(
        "P (arXiv 1)",
        "method beats baseline",
        "-0.5 RMSE",
        y,
        good,
        bad,
        rmse,
        "rmse",
        higher_is_better=False,
    )
    assert claim.verdict == HOLDS and claim.n == 200 and claim.high < 0
    same = paired_claim("P (arXiv 1)", "no difference", "n/a", y, good, good + 1e-9, rmse, "rmse")
    assert same.verdict == UNDECIDED


def test_results_join_and_validate_rows():
    a = Results()
    a.add_row("bbbp", "m", "roc_auc", 0.7, seed=1, split="scaffold test")
    b = Results(claims=[Claim("P", "c", "f", "roc_auc", 0.1, 0.0, 0.2, UNDECIDED, 10)])
    joined = a + b
    assert len(joined.rows) == 1 and len(joined.claims) == 1
    assert list(joined.frame().columns) == [
        "dataset",
        "method",
        "metric",
        "value",
        "seed",
        "split",
        "note",
    ]
    with pytest.raises(ValueError, match="result rows take the columns"):
        a.add_rows([{"dataset": "x", "method": "m", "metric": "r", "value": 1.0, "colour": "red"}])


def test_record_results_and_claims_md(tmp_path, monkeypatch):
    import molkit
    from molkit.run import write_claims_md

    monkeypatch.setenv("MOLKIT_RUN_DIR", str(tmp_path))
    molkit.setup(molkit.RunSettings("smoke"), notebook="98_probe", theme=False, threads=1)
    res = Results()
    res.add_row("bbbp", "m", "roc_auc", 0.7)
    res.claims.append(
        Claim(
            "MoleX (arXiv 2410.08829)",
            "IB helps",
            "+2 points",
            "roc_auc",
            0.05,
            -0.01,
            0.11,
            UNDECIDED,
            42,
            detail="BBBP",
        )
    )
    frame = molkit.record_results(res)
    assert len(frame) == 1 and len(molkit.results()) == 1
    claims = pd.read_csv(tmp_path / "claims" / "98_probe.csv", keep_default_na=False)
    assert claims[["notebook", "verdict", "n"]].values.tolist() == [["98_probe", UNDECIDED, 42]]
    text = write_claims_md(tmp_path, "smoke").read_text()
    assert "## MoleX (arXiv 2410.08829)" in text
    assert (
        "| IB helps | **undecided** | +0.050 | [-0.010, +0.110] | roc_auc | +2 points |  "
        "| 42 | 1 | reference | `98_probe` | BBBP |" in text
    )


def test_gated_reports_a_comparison_only_when_every_gate_holds():
    import dataclasses

    from molkit.methods.experiment import NOT_JUDGED, Claim, gated

    def claim(text, verdict, ours=0.2):
        return Claim("p", text, "fig", "rmse", ours, ours - 0.1, ours + 0.1, verdict, 50, "d")

    comparison = claim("A beats B", "holds")
    ok = gated(comparison, [claim("A beats mean", "holds"), claim("B beats mean", "holds")])
    assert dataclasses.replace(ok, detail="d", kind="reference", gates=()) == comparison
    assert ok.detail == "d; every arm passes its gate" and ok.kind == "comparison"
    out = gated(comparison, [claim("A beats mean", "holds"), claim("B beats mean", "undecided")])
    assert out.verdict == NOT_JUDGED and math.isnan(out.ours) and math.isnan(out.low)
    assert out.detail == "not judged: gate undecided: B beats mean" and out.n == 50
    # a Discussion prints the failed gate, never the NaNs standing for the withheld difference
    assert out.sentence == "A beats B: not judged (gate undecided: B beats mean)"
    assert ok.sentence == (
        "A beats B: holds (rmse +0.200, 95 % [+0.100, +0.300], n = 50, training seeds 1)"
    )
    with pytest.raises(ValueError, match="at least one gate"):
        gated(comparison, [])


def test_a_list_parameter_given_as_text_on_the_command_line():
    """``papermill ... -p datasets '["my.csv"]'`` hands the notebook a string: a tuple setting reads
    it as JSON, or as one value."""
    settings = Toy.for_profile("smoke")
    assert settings.with_overrides(datasets='["my.csv", "bbbp"]').datasets == ("my.csv", "bbbp")
    assert settings.with_overrides(datasets="my.csv").datasets == ("my.csv",)
    assert settings.with_overrides(datasets=["a"]).datasets == ("a",)
    assert settings.with_overrides(lm_model="[not a list").lm_model == "[not a list"
    with pytest.raises(ValueError, match="as a list"):
        settings.with_overrides(datasets="[my.csv")


def test_verdict_summary_counts_the_verdicts_per_kind():
    from molkit.methods.experiment import (
        CONTRADICTED,
        HOLDS,
        NOT_JUDGED,
        UNDECIDED,
        Claim,
        verdict_summary,
    )

    def claim(verdict, kind):
        return Claim("p", "c", "f", "auc", 0.1, 0.0, 0.2, verdict, 10, kind=kind)

    claims = [claim(HOLDS, "gate"), claim(HOLDS, "gate"), claim(UNDECIDED, "gate"),
              claim(HOLDS, "comparison"), claim(NOT_JUDGED, "comparison"),
              claim(CONTRADICTED, "reference")]  # fmt: skip
    assert verdict_summary(claims) == (
        "6 claim rows: 3 gates (2 hold, 1 undecided); 2 comparisons (1 holds, 1 not judged); "
        "1 reference (1 contradicted)"
    )
    assert verdict_summary([]) == "no claim rows"
