"""molkit.eval.metrics: the paired bootstrap behind the notebooks' verdicts on small test sets."""

import numpy as np
import pytest

from molkit.eval.metrics import paired_bootstrap, regression_metrics


def rmse(y, p):
    return regression_metrics(y, p)["rmse"]


def test_paired_bootstrap_separates_a_clearly_better_model():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    good, bad = y + rng.normal(scale=0.1, size=200), y + rng.normal(scale=1.0, size=200)
    out = paired_bootstrap(y, good, bad, rmse, n_boot=500)
    assert out["diff"] == pytest.approx(rmse(y, good) - rmse(y, bad))
    assert out["low"] < out["diff"] < out["high"] < 0 and out["p_lower"] == 1.0 and out["n"] == 500


def test_paired_bootstrap_interval_straddles_zero_for_equal_models():
    rng = np.random.default_rng(1)
    y = rng.normal(size=40)
    a, b = y + rng.normal(size=40), y + rng.normal(size=40)
    out = paired_bootstrap(y, a, b, rmse, n_boot=500, seed=3)
    assert out["low"] < 0 < out["high"] and 0.02 < out["p_lower"] < 0.98
    assert paired_bootstrap(y, a, b, rmse, n_boot=500, seed=3) == out  # seeded


def test_paired_bootstrap_skips_undefined_resamples_and_checks_input():
    from sklearn.metrics import roc_auc_score

    def auc(y, p):
        return roc_auc_score(y, p) if len(set(y)) == 2 else float("nan")

    y = np.array([1, 0, 0, 0, 0])
    out = paired_bootstrap(y, [0.9, 0.1, 0.2, 0.3, 0.4], [0.1, 0.9, 0.2, 0.3, 0.4], auc, n_boot=200)
    assert 0 < out["n"] < 200  # resamples without the positive are skipped
    with pytest.raises(ValueError, match="one value per item"):
        paired_bootstrap([1, 2, 3], [1, 2], [1, 2, 3], rmse)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1, 2, 3], [1, 2, 3], [1, 2, 3], rmse, level=1.5)


def old_paired_bootstrap(y_true, pred_a, pred_b, metric, n_boot=2000, seed=0, level=0.95):
    """The unstratified bootstrap as it was before ``groups`` (a reference copy)."""
    import warnings

    y_true, pred_a, pred_b = (np.asarray(v, dtype=float).ravel() for v in (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = metric(y_true[idx], pred_a[idx]) - metric(y_true[idx], pred_b[idx])
        if np.isfinite(d):
            diffs.append(d)
    diffs = np.asarray(diffs)
    a, b = float(metric(y_true, pred_a)), float(metric(y_true, pred_b))
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return {
        "a": a, "b": b, "diff": a - b, "low": float(low), "high": float(high),
        "p_lower": float(np.mean(diffs < 0)), "n": int(len(diffs)),
    }  # fmt: skip


def test_paired_bootstrap_without_groups_is_unchanged_and_one_group_is_the_same():
    from molkit.eval.metrics import roc_auc_fast

    rng = np.random.default_rng(2)
    y = rng.normal(size=30)
    a, b = y + rng.normal(size=30), y + rng.normal(size=30)
    plain = paired_bootstrap(y, a, b, rmse, n_boot=300, seed=4)
    assert plain.pop("seeds_a") == plain.pop("seeds_b") == 1  # one training seed each
    assert plain == old_paired_bootstrap(y, a, b, rmse, n_boot=300, seed=4)  # bit-identical
    grouped = paired_bootstrap(y, a, b, rmse, n_boot=300, seed=4, groups=["s0"] * 30)
    assert {k: v for k, v in grouped.items() if not k.startswith("seeds")} == plain
    labels = (rng.random(30) > 0.5).astype(float)
    auc = paired_bootstrap(labels, a, b, roc_auc_fast, n_boot=300, seed=1)
    assert {k: v for k, v in auc.items() if not k.startswith("seeds")} == old_paired_bootstrap(
        labels, a, b, roc_auc_fast, n_boot=300, seed=1
    )
    assert paired_bootstrap(labels, a, b, roc_auc_fast, n_boot=300, seed=1, groups=np.zeros(30)) \
        == auc  # fmt: skip


def test_stratified_bootstrap_averages_the_metric_over_groups():
    from molkit.eval.metrics import roc_auc_fast

    # group A: model a ranks perfectly; group B: exactly backwards. b ranks both perfectly.
    y = np.array([0, 1] * 10, dtype=float)
    groups = np.repeat(["A", "B"], 10)
    a = np.where(groups == "A", y, 1 - y)
    out = paired_bootstrap(y, a, y, roc_auc_fast, n_boot=200, groups=groups)
    assert out["a"] == pytest.approx(0.5) and out["b"] == 1.0 and out["diff"] == pytest.approx(-0.5)
    # each group keeps its size in every resample: a's AUC is 1 on A and 0 on B in every one
    assert out["low"] == pytest.approx(-0.5) and out["high"] == pytest.approx(-0.5)
    # RMSE: errors 0 on 10 items, 2 on 10 others: the mean over groups is 1, pooled sqrt(2)
    y_reg = np.zeros(20)
    pred = np.where(groups == "A", 0.0, 2.0)
    base = np.full(20, 0.5)
    stratified = paired_bootstrap(y_reg, pred, base, rmse, n_boot=200, groups=groups)
    assert stratified["a"] == pytest.approx(1.0) and stratified["b"] == pytest.approx(0.5)
    assert stratified["low"] == pytest.approx(0.5) == stratified["high"]
    pooled = paired_bootstrap(y_reg, pred, base, rmse, n_boot=200)
    assert pooled["a"] == pytest.approx(np.sqrt(2)) and pooled["low"] < pooled["high"]
    # groups of unequal size weigh the same
    uneven = np.array(["A"] * 5 + ["B"] * 15)
    out = paired_bootstrap(y_reg, np.where(uneven == "A", 0.0, 2.0), base, rmse, groups=uneven)
    assert out["a"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="groups has 3 labels for 20 items"):
        paired_bootstrap(y_reg, pred, base, rmse, groups=["A", "B", "A"])


def test_paired_claim_passes_groups_on():
    from molkit.methods.experiment import paired_claim

    groups = np.repeat([0, 1], 10)
    y = np.zeros(20)
    pred = np.where(groups == 0, 0.0, 2.0)
    base = np.full(20, 0.5)
    claim = paired_claim("paper", "claim", "fig", y, pred, base, rmse, "rmse",
                         higher_is_better=False, n_boot=200, groups=groups)  # fmt: skip
    boot = paired_bootstrap(y, pred, base, rmse, n_boot=200, groups=groups)
    assert (claim.ours, claim.low, claim.high) == (boot["diff"], boot["low"], boot["high"])
    assert claim.n == 20 and claim.verdict == "contradicted"
    ungrouped = paired_claim("paper", "claim", "fig", y, pred, base, rmse, "rmse", n_boot=200)
    assert ungrouped.ours == pytest.approx(np.sqrt(2) - 0.5)


def test_two_level_bootstrap_resamples_training_seeds_as_well_as_items():
    """Three training seeds of model A that disagree widely (RMSE about 0.5, 1 and 3 on the same
    300 items): the point estimate is the mean over seeds, and the interval, which resamples the
    seeds as well as the items, holds that spread; one seed alone gives a narrow interval that
    knows nothing of it."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    runs = np.stack([y + rng.normal(scale=s, size=300) for s in (0.5, 1.0, 3.0)])
    base = y + rng.normal(scale=1.2, size=300)
    two = paired_bootstrap(y, runs, base, rmse, n_boot=500, seed=0)
    assert two["seeds_a"] == 3 and two["seeds_b"] == 1
    assert two["a"] == pytest.approx(np.mean([rmse(y, r) for r in runs]))
    one = paired_bootstrap(y, runs[1], base, rmse, n_boot=500, seed=0)
    assert (two["high"] - two["low"]) > 5 * (one["high"] - one["low"])
    # the seed spread reaches both sides: a seed 1.5 below the baseline and one 1.8 above
    assert two["low"] < -0.4 and two["high"] > 1.0
    with pytest.raises(ValueError, match="one value per item"):
        paired_bootstrap(y, runs[:, :10], base, rmse)
