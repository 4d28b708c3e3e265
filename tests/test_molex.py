"""MoleX (molkit.methods.molex) and explanation scoring (molkit.eval.explain) on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molkit.data.explain import tu_ground_truth
from molkit.eval.explain import atom_auc, explanation_auc, random_attributions
from molkit.methods import molex
from molkit.methods.experiment import CLAIM_COLUMNS, HOLDS, Results
from molkit.methods.molex.benchmark import READING_METRICS
from molkit.models.prefix import encode_prefix, load_chemical_lm

TOY_SMILES = [
    "c1ccccc1[N+](=O)[O-]",
    "Cc1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1ccc(Cl)cc1",
    "Nc1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1cccc2ccccc12",
    "CC(=O)O",
    "CCO",
    "CCCCO",
    "OC(=O)c1ccccc1",
    "CC(N)=O",
    "Oc1ccccc1",
    "CCOC(C)=O",
    "c1ccc(cc1)[N+](=O)[O-]",
    "CC(C)O",
    "CCCC(=O)O",
    "O=[N+]([O-])c1ccc(O)cc1",
]


# ------------------------------------------------------------------ explanation AUC


def test_atom_auc_known_answers():
    assert atom_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert atom_auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert atom_auc([1, 1, 1, 1], [1, 0, 0, 0]) == 0.5  # ties count one half
    assert atom_auc([3, 0, 2, 1], [1, 0, 0, 1]) == 0.75
    assert np.isnan(atom_auc([1, 2], [1, 1]))
    with pytest.raises(ValueError, match="same atom order"):
        atom_auc([1, 2, 3], [1, 0])


def test_explanation_auc_skips_molecules_without_ground_truth():
    mean, n = explanation_auc([[1, 0], [0, 1], [5, 5], [1, 2]], [[1, 0], [1, 0], None, [1, 1]])
    assert (mean, n) == (0.5, 2)
    assert explanation_auc([[1.0]], [None])[1] == 0
    rand = random_attributions([3, 5], seed=1)
    assert [len(r) for r in rand] == [3, 5]
    assert np.allclose(rand[0], random_attributions([3, 5], seed=1)[0])


# ------------------------------------------------------------------ n-grams and exact contributions


def test_ngram_table_shares_unique_texts():
    table = molex.build_ngram_table(
        ["c1ccccc1[N+](=O)[O-]", "Cc1ccccc1[N+](=O)[O-]"], n_max=2, progress=False
    )
    assert len(table) == 2 and table.n_atoms.tolist() == [9, 10]
    assert len(set(table.texts)) == len(table.texts)
    # molecule 0: tokens benzene + nitro -> 2 unigrams + 1 bigram; the nitro unigram is shared
    assert len(table.occurrences[0]) == 3
    nitro = table.texts.index("O=[N+][O-]")
    assert table.counts[0, nitro] == 1 and table.counts[1, nitro] == 1
    unigram_atoms = sorted(a for t, atoms in table.occurrences[0] for a in atoms if len(atoms) < 9)
    assert unigram_atoms == list(range(9))  # unigrams cover every atom exactly once


def test_features_contributions_and_atom_scores_split_exactly():
    rng = np.random.default_rng(0)
    table = molex.build_ngram_table(TOY_SMILES, progress=False)
    emb = rng.normal(size=(len(table.texts), 6))
    train = np.arange(10)
    X, centred = molex.molex_features(table, emb, train)
    train_counts = np.asarray(table.counts[train].sum(0)).ravel()
    assert np.allclose(train_counts @ centred, 0)  # centred on the training n-gram occurrences
    assert np.allclose(X, table.counts @ centred)
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    model = molex.fit_molex(
        X[:12], y[:12], X[12:], y[12:], 2, n_components=3, complement_components=2, calib_rounds=5
    )
    W, c = model.weights()
    contrib = model.ngram_contributions(centred)
    logits = model.decision_function(X)[:, 0]
    atoms = molex.atom_scores_from_ngrams(table, contrib, range(len(TOY_SMILES)))
    for i in range(len(TOY_SMILES)):
        per_ngram = sum(contrib[t] for t, _ in table.occurrences[i])
        assert per_ngram + c[0] == pytest.approx(logits[i])
        assert atoms[i].sum() + c[0] == pytest.approx(logits[i])
    assert model.n_parameters == W.size + c.size == 7


def test_multiclass_contributions_are_centred_logits():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    y = np.argmax(X[:, :3] + 0.1 * rng.normal(size=(60, 3)), 1)
    model = molex.fit_molex(
        X[:40], y[:40], X[40:], y[40:], 3, n_components=4, complement_components=1
    )
    logits = model.decision_function(X)
    assert logits.shape == (60, 3) and model.predict_proba(X).sum(1) == pytest.approx(np.ones(60))
    W, c = model.weights()
    contrib = model.ngram_contributions(X, target=2)
    assert contrib == pytest.approx((logits - c)[:, 2] - (logits - c).mean(1))
    assert molex.classification_scores(y[40:], model.predict_proba(X[40:]))["accuracy"] > 0.6


# ------------------------------------------------------------------ reduction and calibration


def test_sparse_loadings_reduce_to_pca_and_sparsify():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(2).normal(size=(80, 10)) @ np.diag(np.arange(10, 0, -1))
    X -= X.mean(0)
    dense = molex.sparse_loadings(X, 3, alpha=0.0)
    pca = PCA(3).fit(X).components_
    assert np.abs(np.abs(dense @ pca.T) - np.eye(3)).max() < 1e-6
    sparse = molex.sparse_loadings(X, 3, alpha=0.5)
    assert np.allclose(np.linalg.norm(sparse, axis=1), 1) and (sparse == 0).mean() > 0.3
    with pytest.raises(ValueError, match="relative soft threshold"):
        molex.sparse_loadings(X, 1, alpha=1.5)


@pytest.mark.parametrize("method", ["sparse", "pca"])
def test_reduction_is_affine_and_standardised(method):
    X = np.random.default_rng(3).normal(size=(50, 8)) * 5 + 2
    red = molex.fit_reduction(X, 4, method)
    Z = red.transform(X)
    assert Z.shape == (50, 4) and np.allclose(Z.mean(0), 0) and np.allclose(Z.std(0), 1)
    assert np.allclose(red.transform(X[:3] + X[3:6]) - red.b, (Z[:3] - red.b) + (Z[3:6] - red.b))


def test_calibration_reads_only_the_orthogonal_complement_and_stops_early():
    from molkit.methods.molex.method import _standardiser

    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 12))
    y = (X[:, 0] + X[:, 7] - X[:, 9] > 0).astype(int)
    model = molex.fit_molex(
        X[:80],
        y[:80],
        X[80:100],
        y[80:100],
        2,
        n_components=2,
        complement_components=6,
        calib_rounds=300,
        calib_patience=10,
    )
    _, scale = _standardiser(X[:80])
    main = model.reduction.A * scale[:, None]  # directions in standardised coordinates
    comp = model.complement.A * scale[:, None]
    assert np.abs(np.linalg.qr(main)[0].T @ comp).max() < 1e-8
    hist = model.history
    assert 0 < model.calib_rounds < len(hist) <= 301
    assert hist["valid_loss"].iloc[model.calib_rounds] == hist["valid_loss"].min()
    assert model.predict_proba(X[100:], calibrated=True).shape == (20, 2)
    uncal = molex.fit_molex(
        X[:80], y[:80], X[80:100], y[80:100], 2, n_components=2, calibrate=False
    )
    assert uncal.complement is None and np.allclose(
        uncal.weights()[0], model.weights(calibrated=False)[0]
    )


FIXTURES = Path(__file__).parent / "fixtures"


def test_complement_reduction_on_the_matrix_that_broke_divide_and_conquer_svd():
    """Issue #39: MUTAG's first fold at bf16 gave training features whose projection onto the
    main reduction's complement made LAPACK's gesdd raise "SVD did not converge" (the fixture;
    the projected matrix has rank 48 of 64 columns). The complement reduction now works in an
    orthonormal basis of the complement and uses the QR-iteration SVD: it returns 16 standardised
    components orthogonal to the main directions, equal (up to sign) to the principal axes of the
    projected features computed from the covariance's eigenvectors."""
    from molkit.methods.molex.method import LinearReduction, _complement, _standardiser

    data = np.load(FIXTURES / "molex_complement_gesdd_failure.npz")
    X, A = data["X"], data["A"]
    main = LinearReduction(A, np.zeros(A.shape[1]), A.T, "sparse")
    comp = _complement(X, main, 16)
    Z = comp.transform(X)
    assert Z.shape == (148, 16) and np.allclose(Z.mean(0), 0) and np.allclose(Z.std(0), 1)
    mean, scale = _standardiser(X)
    main_dirs, comp_dirs = A * scale[:, None], comp.A * scale[:, None]
    assert np.abs(np.linalg.qr(main_dirs)[0].T @ comp_dirs).max() < 1e-10
    # reference: eigenvectors of the projected features' covariance (eigh converges on it)
    Q, _ = np.linalg.qr(main_dirs)
    M = ((X - mean) / scale) @ (np.eye(64) - Q @ Q.T)
    M = M - M.mean(0)
    evals, evecs = np.linalg.eigh(M.T @ M)
    top = evecs[:, np.argsort(evals)[::-1][:16]]
    unit = comp_dirs / np.linalg.norm(comp_dirs, axis=0)
    assert np.allclose(np.abs((top * unit).sum(0)), 1, atol=1e-6)


def test_principal_axes_on_rank_deficient_and_degenerate_inputs():
    from molkit._linalg import orthonormal_complement, pca_scores, principal_axes

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 10))  # rank 3 in 10 columns
    V = principal_axes(X, 5)
    assert V.shape == (5, 10) and np.allclose(V @ V.T, np.eye(5), atol=1e-10)
    assert np.allclose(np.abs(V[:3]).max(1), V[:3].max(1))  # the largest entry is positive
    assert pca_scores(X, 5)[:, 3:].std() < 1e-10  # no variance beyond the rank
    assert principal_axes(np.ones((6, 4)), 2).shape == (2, 4)  # zero variance: no error
    B = orthonormal_complement(np.column_stack([X[0], X[0], X[1]]))  # rank 2 of 3 columns
    assert B.shape == (10, 8) and np.allclose(B.T @ B, np.eye(8))
    assert np.abs(B.T @ X[:2].T).max() < 1e-10
    with pytest.raises(ValueError, match="2-D"):
        principal_axes(np.ones(4), 1)


# ----------------------------------------------- tiny LM: fine-tuning, no test leakage


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory, tiny_smiles_bert):
    path = tmp_path_factory.mktemp("tiny_bert")
    return tiny_smiles_bert(path, TOY_SMILES, num_layers=2, extra_tokens="()=#123cCNOS")


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_path):
    return load_chemical_lm(tiny_lm_path)


def test_prefix_then_top_layers_equals_the_whole_model(tiny_lm):
    import torch

    model, tok = tiny_lm
    texts = ["CCO", "c1ccccc1[N+](=O)[O-]", "CC(=O)O"]
    prefix = encode_prefix(model, tok, texts, n_trainable_layers=1, progress=False)
    assert prefix.n_frozen == 1 and [len(s) for s in prefix.states] == [5, 16, 9]
    clf = molex.IBClassifier(model, 2, n_trainable_layers=1, bottleneck_dim=4)
    ours = molex.embed_prefix(clf, prefix, space="pooled")
    enc = tok(texts, return_tensors="pt")
    with torch.no_grad():
        hidden = model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1)
    assert np.allclose(ours, ((hidden * mask).sum(1) / mask.sum(1)).numpy(), atol=1e-5)


def test_finetune_ib_trains_a_copy(tiny_lm):
    import torch

    model, tok = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prefix = encode_prefix(model, tok, TOY_SMILES, n_trainable_layers=1, progress=False)
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    clf, hist = molex.finetune_ib(
        model,
        prefix.subset(range(12)),
        y[:12],
        prefix.subset(range(12, 16)),
        y[12:],
        2,
        1,
        beta=0.01,
        epochs=3,
        patience=3,
        lr=1e-3,
        batch_size=4,
        bottleneck_dim=4,
        progress=False,
    )
    assert (
        list(hist.records.columns) == ["epoch", "train_ce", "train_kl", "valid_ce"]
        and len(hist.records) == 3
    )
    assert hist.records["valid_ce"].iloc[hist.best_epoch - 1] == hist.records["valid_ce"].min()
    # the pretrained LM is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    proba = molex.predict_proba_lm(clf, prefix)
    assert proba.shape == (16, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    with pytest.raises(ValueError, match="another number of trainable layers"):
        molex.finetune_ib(model, prefix, y, prefix, y, 2, n_trainable_layers=2)


def _toy_frame(labels: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(
        {"smiles": TOY_SMILES, "label": labels, "split": ["train"] * 11 + ["test"] * 5}
    )
    df["truth"] = [
        tu_ground_truth(s, [1], (1,)) if y == 1 else None
        for s, y in zip(TOY_SMILES, labels, strict=True)
    ]
    df.attrs.update({"name": "toy", "n_classes": 2, "explain_class": 1})
    return df


def _toy_settings(**changes) -> molex.Settings:
    return molex.Settings.for_profile("smoke").with_overrides(
        datasets=["toy"],
        cv_folds=2,
        valid_fraction=0.2,
        n_trainable_layers=1,
        finetune_epochs=1,
        ablation_datasets=["toy"],
        n_components=2,
        complement_components=2,
        calib_rounds=5,
        rf_trees=5,
        gin_epochs=1,
        gin_hidden=8,
        bottleneck_dim=4,
        **changes,
    )


TOY_LABELS = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0])


def test_permuting_test_labels_leaves_every_prediction_unchanged(tiny_lm):
    settings = _toy_settings()
    df = _toy_frame(TOY_LABELS)
    splits = molex.dataset_splits(settings, df)
    test = splits[0]["test"]
    permuted = TOY_LABELS.copy()
    permuted[test] = np.roll(TOY_LABELS[test], 1)  # fold 0's test labels permuted
    assert (permuted != TOY_LABELS).any()
    first = molex.run_dataset(settings, df, tiny_lm)
    second = molex.run_dataset(settings, _toy_frame(permuted), tiny_lm)
    assert {m for _, m in first.predictions} >= {
        "MoleX",
        "MoleX w/o calibration",
        "MoleX (beta=0)",
        "MoleX (pooled h)",
        "MoleX (no fine-tuning)",
        "Fine-tuned LM",
        "GIN",
        "Training prior",
    }
    for key, proba in first.predictions.items():
        if key[0] == 0:  # fold 0 never trains on its own test molecules
            assert np.array_equal(proba, second.predictions[key]), key
    metrics = set(first.rows["metric"])
    assert metrics >= {"accuracy", "roc_auc", "explanation_auc", "token_auc_abs", "n_parameters"}
    # the folds' test parts partition the molecules: every molecule is tested once
    tested = np.concatenate([first.tests[k] for k in first.splits])
    assert sorted(tested.tolist()) == list(range(len(TOY_SMILES)))
    assert first.labels[0].tolist() == TOY_LABELS[test].tolist()


def test_per_molecule_explanations_average_to_the_recorded_auc(tiny_lm):
    settings = _toy_settings()
    run = molex.run_dataset(settings, _toy_frame(TOY_LABELS), tiny_lm)
    rows = run.rows[run.rows["seed"] == 0].set_index(["method", "metric"])["value"]
    for method in ("MoleX", "MoleX w/o calibration", "Morgan FP + LR", "Random attribution"):
        for reading, (metric, n_metric) in READING_METRICS.items():
            per_molecule = run.explanations[0, method, reading]
            assert len(per_molecule) == len(run.tests[0])  # NaN without ground truth
            assert np.nanmean(per_molecule) == pytest.approx(rows[method, metric])
            assert np.isfinite(per_molecule).sum() == rows[method, n_metric]
    train = molex.dataset_splits(settings, _toy_frame(TOY_LABELS))[0]["train"]
    shares = np.bincount(TOY_LABELS[train], minlength=2) / len(train)
    assert np.allclose(run.predictions[0, "Training prior"], shares)  # the training class shares


def test_molex_features_are_the_bottleneck_mean(tiny_lm):
    import torch

    model, tok = tiny_lm
    prefix = encode_prefix(model, tok, TOY_SMILES[:4], n_trainable_layers=1, progress=False)
    clf = molex.IBClassifier(model, 2, n_trainable_layers=1, bottleneck_dim=3)
    pooled = molex.embed_prefix(clf, prefix, space="pooled")
    mu = molex.embed_prefix(clf, prefix)  # the default: what MoleX sums
    assert mu.shape == (4, 3) and pooled.shape == (4, model.config.hidden_size)
    with torch.no_grad():
        assert np.allclose(mu, clf.mu(torch.from_numpy(pooled)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="space must be one of"):
        molex.embed_prefix(clf, prefix, space="cls")
    # in the benchmark, MoleX's reduction reads bottleneck_dim features
    run = molex.run_dataset(_toy_settings(), _toy_frame(TOY_LABELS), tiny_lm)
    assert run.models["molex"].reduction.A.shape[0] == 4  # _toy_settings' bottleneck_dim
    assert run.models["features"].shape == (len(TOY_SMILES), 4)


def test_experiment_sections_return_results_and_claims(tiny_lm_path):
    settings = _toy_settings(lm_model=str(tiny_lm_path), speed_molecules=8, n_boot=200)
    data = Results(artefacts={"frames": {"toy": _toy_frame(TOY_LABELS)}})
    texts = molex.ngram_texts(settings, data)
    assert [r["metric"] for r in texts.rows] == ["unk_token_rate"] * 2
    assert list(texts.artefacts["example"].columns) == ["group n-gram", "text for the LM", "atoms"]
    bench = molex.benchmark(settings, data)
    frame = bench.frame()
    assert set(frame["dataset"]) == {"toy"} and set(frame["split"]) == {"test"}
    assert set(frame["seed"]) == {0, 1}  # the two folds
    assert frame.equals(bench.artefacts["runs"]["toy"].rows[frame.columns].astype(frame.dtypes))
    walk = molex.walkthrough(settings, bench)
    logit = walk.artefacts["logit"]
    assert logit["intercept + sum"] == pytest.approx(logit["model logit"])  # exactly additive
    tokens = walk.artefacts["tokens"]
    assert tokens["contribution"].sum() == pytest.approx(logit["sum of n-gram contributions"])
    expl = molex.explanation_scores(settings, bench)
    assert set(expl.artefacts["scores"]["reading"]) == set(READING_METRICS)
    speed = molex.throughput(settings, bench)
    steps = speed.artefacts["steps"]
    assert speed.artefacts["dataset"] == "toy" and len(steps) == 5
    assert (steps["seconds_per_molecule"] > 0).all()
    summary = speed.artefacts["summary"]
    assert summary["molex_parameters"] == 31 + 1  # one contribution per n-gram text + intercept
    assert list(speed.artefacts["table"]["pipeline"])[0] == "MoleX, known n-grams (end to end)"
    calib = molex.calibration_gain(settings, bench)
    assert [r["metric"] for r in calib.rows] == [
        "accuracy_points",
        "explanation_auc_points",
        "explanation_auc_abs_points",
        "token_auc_points",
        "token_auc_abs_points",
    ]
    claims = pd.concat([r.claims_frame() for r in (bench, expl, calib)], ignore_index=True)
    assert list(claims.columns) == list(CLAIM_COLUMNS)
    assert len(claims) == len(molex.experiment.ACCURACY_CLAIMS) + 4 + 2 + 2
    assert set(claims["paper"]) == {molex.PAPER}
    assert set(claims["verdict"]) <= {"holds", "contradicted", "undecided"}
    decided = claims.dropna(subset=["low"])
    assert (decided["low"] <= decided["ours"] + 1e-12).all()
    assert (decided["ours"] <= decided["high"] + 1e-12).all()
    assert (claims.loc[claims["metric"] == "accuracy", "n"] == len(TOY_SMILES)).all()


def test_accuracy_claim_is_a_paired_difference_on_the_same_molecules():
    from molkit.methods.molex.benchmark import DatasetRun
    from molkit.methods.molex.experiment import _accuracy_claim

    y = np.array([0, 1] * 20)
    right = np.eye(2)[y]
    wrong = np.eye(2)[1 - y]
    run = DatasetRun(pd.DataFrame(), {(0, "a"): right, (0, "b"): wrong}, pd.DataFrame(), {}, {})
    run.labels[0], run.tests[0] = y, np.arange(40)
    settings = molex.Settings.for_profile("smoke").with_overrides(n_boot=200)
    claim = _accuracy_claim(settings, {"d": run}, "a", "b", "a beats b", "not reported", "")
    assert (claim.ours, claim.low, claim.high, claim.n) == (1.0, 1.0, 1.0, 40)
    assert claim.verdict == HOLDS


# ------------------------------------------------------------------ group-token explanations


def test_token_level_scoring_on_a_hand_made_molecule():
    from molkit.eval.explain import token_scores, token_truth

    # 4-nitrotoluene: atom 0 the methyl C, 1-4 and 8-9 the ring, 5-7 the nitro N, O, O
    smiles = "Cc1ccc([N+](=O)[O-])cc1"
    table = molex.build_ngram_table([smiles], progress=False)
    tokens = dict(table.tokens[0])
    assert tokens == {"CH3": (0,), "benzene": (1, 2, 3, 4, 8, 9), "nitro": (5, 6, 7)}
    truth = np.zeros(10, dtype=int)
    truth[[5, 6, 7]] = 1  # the nitro group only
    atom_scores = np.array([0.1, 0, 0, 0, 0.5, 0, 0.2, 0.2, 0.2, 0.0]) + 0.01
    atoms = [a for _, a in table.tokens[0]]
    scores = token_scores(atom_scores, atoms)
    assert scores.sum() == pytest.approx(atom_scores.sum())  # token scores keep the sum
    names = [n for n, _ in table.tokens[0]]
    assert scores[names.index("benzene")] == pytest.approx(0.76)
    assert scores[names.index("nitro")] == pytest.approx(0.43)
    gt = token_truth(truth, atoms)
    assert gt.tolist() == [n == "nitro" for n in names]
    # per atom the nitro atoms rank high; per token the (larger) ring token outranks the nitro
    assert atom_auc(atom_scores, truth) == pytest.approx(13 / 21)
    assert atom_auc(scores, gt) == 0.5  # nitro beats CH3, loses to benzene
    half = np.zeros(10, dtype=int)
    half[[1, 2, 3]] = 1  # half of the ring's atoms: the ring token counts as ground truth
    assert token_truth(half, atoms)[names.index("benzene")] == 1
    assert token_truth(None, atoms) is None
    with pytest.raises(ValueError, match="same atom order"):
        token_truth(np.zeros(3), atoms)
    per_molecule = molex.token_scores_from_ngrams(table, [atom_scores], [0])
    assert np.allclose(per_molecule[0], scores)


# ------------------------------------------------------------------ baselines' attributions


def test_morgan_atom_scores_conserve_the_set_bits_weight():
    from molkit.chem import morgan_bits

    weights = np.random.default_rng(5).normal(size=256)
    smiles = ["c1ccccc1[N+](=O)[O-]", "CCO"]
    scores = molex.morgan_atom_scores(smiles, weights, radius=2, n_bits=256)
    bits = morgan_bits(smiles, radius=2, n_bits=256, progress=False)
    for s, b in zip(scores, bits, strict=True):
        assert s.sum() == pytest.approx(weights[b.astype(bool)].sum())


def test_classification_scores_known_answer():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    scores = molex.classification_scores([0, 1, 1, 0], proba)
    assert scores == {"accuracy": 0.5, "roc_auc": 0.75}


# ------------------------------------------------------------------ settings


def test_settings_profiles_hold_the_sizes_of_each_profile():
    smoke, default, full = (molex.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert (smoke.datasets, smoke.cv_folds, smoke.max_molecules) == (("mutag",), 2, 80)
    assert (smoke.n_components, smoke.calib_rounds, smoke.rf_trees, smoke.lr) == (8, 30, 50, 1e-4)
    assert default.datasets == ("mutag", "ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr", "liver")
    assert (default.cv_folds, default.liver_folds) == (10, 3)  # the TU-dataset convention
    assert default.ablation_datasets == default.datasets  # every ablation on every dataset
    assert default == molex.Settings(
        profile="default"
    )  # the field defaults are the default profile
    assert (full.n_trainable_layers, full.finetune_epochs, full.gin_hidden) == (12, 20, 300)
    assert full.llm_lora_datasets == full.datasets and full.llm_molecules is None
    assert {s.lm_model for s in (smoke, default, full)} == {"rxnfp-bert"}


def test_settings_overrides_like_the_notebook_parameters():
    smoke = molex.Settings.for_profile("smoke")
    same = smoke.with_overrides(datasets=None, cv_folds=None, lm_model=None, beta=None)
    assert same == smoke
    changed = smoke.with_overrides(datasets=["mutag", "liver"], cv_folds=5, beta=0.01)
    assert changed.datasets == ("mutag", "liver") and changed.cv_folds == 5
    assert changed.beta == 0.01 and changed.profile == "smoke"
    with pytest.raises(ValueError, match="valid settings: .*n_trainable_layers"):
        smoke.with_overrides(n_trainable_layer=2)
    with pytest.raises(TypeError, match="n_components"):
        smoke.with_overrides(n_components="8")
    with pytest.raises(TypeError, match="pooling"):
        smoke.with_overrides(pooling="max")
