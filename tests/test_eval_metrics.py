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
