"""The shared baselines are scikit-learn estimators with one definition each."""

import numpy as np
import pytest
from sklearn.base import clone

from molkit.methods import baselines

SMILES = [
    "CCO",
    "CCN",
    "c1ccccc1",
    "c1ccccc1O",
    "CC(=O)O",
    "CCCC",
    "c1ccncc1",
    "CCOC",
    "OCCO",
    "c1ccc2ccccc2c1",
]
AROMATIC = np.array([0, 0, 1, 1, 0, 0, 1, 0, 0, 1])


@pytest.mark.parametrize("estimator", baselines.MORGAN_ESTIMATORS)
def test_morgan_models_are_pipelines_with_params(estimator):
    model = baselines.morgan_model(estimator, "classification", radius=2, n_bits=512, seed=0)
    params = model.get_params()
    assert params["morgan__n_bits"] == 512 and params["morgan__radius"] == 2
    clone(model).fit(SMILES, AROMATIC)
    proba = model.fit(SMILES, AROMATIC).predict_proba(SMILES)
    assert proba.shape == (10, 2)
    if estimator != "gbm":  # 10 molecules are too few for boosting's default leaf size
        assert ((proba[:, 1] > 0.5) == AROMATIC).mean() >= 0.8


def test_morgan_fingerprint_and_unknown_estimator():
    bits = baselines.MorganFingerprint(n_bits=128).fit_transform(SMILES)
    assert (
        bits.shape == (10, 128) and bits.dtype == np.float32 and set(np.unique(bits)) <= {0.0, 1.0}
    )
    with pytest.raises(ValueError, match="estimator must be one of"):
        baselines.morgan_model("svm")
    with pytest.raises(ValueError, match="task must be"):
        baselines.training_mean("ranking")


def test_training_mean_and_probe():
    x = np.random.default_rng(0).normal(size=(10, 3))
    mean = baselines.training_mean("regression").fit(x, np.arange(10.0))
    assert np.allclose(mean.predict(x), 4.5)
    prior = baselines.training_mean("classification").fit(x, AROMATIC)
    assert np.allclose(prior.predict_proba(x)[:, 1], 0.4)
    probe = baselines.linear_probe("classification").fit(x + AROMATIC[:, None] * 3, AROMATIC)
    assert probe.score(x + AROMATIC[:, None] * 3, AROMATIC) == 1.0


def test_drug_prior():
    pairs = [("a", "b"), ("a", "c"), ("b", "c"), ("d", "e")]
    prior = baselines.DrugPrior(smoothing=0.0).fit(pairs, [1, 1, 0, 0])
    p = prior.predict_proba([("a", "a"), ("x", "y")])[:, 1]
    assert p[0] == pytest.approx(1.0) and p[1] == pytest.approx(0.25)  # unseen: global rate squared
    assert prior.get_params() == {"smoothing": 0.0}
    with pytest.raises(RuntimeError, match="fit"):
        baselines.DrugPrior().predict_proba(pairs)


def test_fit_predict_per_task_skips_missing_labels():
    x = np.random.default_rng(0).normal(size=(12, 4))
    y = np.column_stack([x[:, 0] > 0, x[:, 1] > 0]).astype(float)
    y[:3, 1] = np.nan
    out = baselines.fit_predict_per_task(
        lambda: baselines.linear_probe("classification"), x, y, x[:5]
    )
    assert out.shape == (5, 2) and np.isfinite(out).all()


def test_fit_predict_per_task_predicts_with_one_thread_inside_a_pipeline():
    seen = []

    def make():
        model = baselines.morgan_model(
            "rf", "classification", n_bits=128, n_estimators=5, n_jobs=-1
        )
        seen.append(model)
        return model

    baselines.fit_predict_per_task(
        make,
        np.array(SMILES, dtype=object),
        AROMATIC[:, None].astype(float),
        np.array(SMILES[:3], dtype=object),
    )
    assert seen[0].get_params()["rf__n_jobs"] == 1


def test_fit_gradient_boosting_stops_early_and_is_deterministic():
    from molkit.methods.baselines import fit_gradient_boosting

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = 2 * x[:, 0] + rng.normal(scale=0.1, size=300)
    x[:10, 1] = np.nan  # missing values are allowed
    args = (x[:200], y[:200], x[200:250], y[200:250], "regression", 2000, 0.1, 0)
    a = fit_gradient_boosting(*args, num_leaves=7, patience=20)
    b = fit_gradient_boosting(*args, num_leaves=7, patience=20)
    assert a.best_iteration_ < 2000  # early stopping on the validation RMSE
    np.testing.assert_array_equal(a.predict(x[250:]), b.predict(x[250:]))
    assert np.corrcoef(a.predict(x[250:]), y[250:])[0, 1] > 0.9
    with pytest.raises(ValueError, match="non-empty validation part"):
        fit_gradient_boosting(x[:200], y[:200], x[:0], y[:0], "regression")
