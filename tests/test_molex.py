"""MoleX (molkit.methods.molex) and explanation scoring (molkit.eval.explain) on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molkit.data.explain import tu_ground_truth
from molkit.eval.explain import atom_auc, explanation_auc, random_attributions
from molkit.methods import molex
from molkit.methods.experiment import CLAIM_COLUMNS
from molkit.methods.molex.crossval import READING_METRICS
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
#: The toy set the cross-validation tests run on: TOY_SMILES and 16 more (8 nitro-aromatics).
CV_SMILES = [
    *TOY_SMILES,
    "CC(=O)c1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1ccc(Br)cc1",
    "O=[N+]([O-])c1cccc([N+](=O)[O-])c1",
    "COc1ccc([N+](=O)[O-])cc1",
    "O=[N+]([O-])c1ccc2ccccc2c1",
    "Nc1cccc([N+](=O)[O-])c1",
    "O=C(O)c1ccc([N+](=O)[O-])cc1",
    "Cc1ccc(C)c([N+](=O)[O-])c1",
    "CCCCCC",
    "CCN",
    "CC(C)(C)O",
    "OCCO",
    "CCOCC",
    "Cc1ccccc1C",
    "CCCCN",
    "NCCO",
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
    return tiny_smiles_bert(path, CV_SMILES, num_layers=2, extra_tokens="()=#123cCNOS")


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
    columns = ["epoch", "train_ce", "train_kl", "valid_ce", "valid_accuracy"]
    assert list(hist.records.columns) == columns
    assert hist.records["epoch"].tolist() == [0, 1, 2, 3]  # epoch 0: the untrained head
    assert hist.records["valid_ce"].iloc[hist.best_epoch] == hist.records["valid_ce"].min()
    assert (hist.max_epochs, hist.epochs_run) == (3, 3)
    # the pretrained LM is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    proba = molex.predict_proba_lm(clf, prefix)
    assert proba.shape == (16, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    # the kept state is the one whose validation cross-entropy the history reports
    kept = -np.mean(np.log(proba[np.arange(12, 16), y[12:]]))
    assert kept == pytest.approx(hist.records["valid_ce"].min(), abs=1e-5)
    with pytest.raises(ValueError, match="another number of trainable layers"):
        molex.finetune_ib(model, prefix, y, prefix, y, 2, n_trainable_layers=2)


def _toy_frame(labels: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"smiles": CV_SMILES, "label": labels})
    df["truth"] = [
        tu_ground_truth(s, [1], (1,)) if y == 1 else None
        for s, y in zip(CV_SMILES, labels, strict=True)
    ]
    df.attrs.update({"name": "toy.csv", "n_classes": 2, "explain_class": 1})
    return df


def _toy_settings(**changes) -> molex.Settings:
    return molex.Settings.for_profile("smoke").with_overrides(
        datasets=["toy.csv"],
        cv_folds=2,
        tune_fraction=0.25,
        valid_fraction=0.2,
        lm_layer_grid=[1, 1],
        lm_lr_grid=[1e-3, 1e-3],
        beta_grid=[0.01, 0.1],
        finetune_epochs=1,
        lm_seeds=2,
        ablation_datasets=["toy.csv"],
        n_components=2,
        complement_components=2,
        calib_rounds=5,
        rf_trees=5,
        gin_epochs=1,
        gin_width_grid=[8],
        bottleneck_dim=4,
        n_boot=200,
        **changes,
    )


TOY_LABELS = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0] + [1] * 8 + [0] * 8)


def _toy_run(settings, df, tiny_lm, splits=None):
    """Everything `run_dataset` needs for the toy frame: its splits (made from its labels unless
    given), n-grams, prefixes, graphs and the configurations its tuning part chose."""
    from molkit.chem import graphs_from_smiles
    from molkit.methods.molex.protocol import PrefixCache, select_gin, select_lm

    splits = molex.dataset_splits(settings, df) if splits is None else splits
    table = molex.build_ngram_table(df["smiles"].tolist(), progress=False)
    prefixes = PrefixCache(tiny_lm, df["smiles"].tolist(), table.texts, 64)
    graphs = graphs_from_smiles(df["smiles"].tolist(), progress=False)
    lm = select_lm(settings, df, splits, prefixes)
    gin = select_gin(settings, df, splits, graphs)
    run = molex.run_dataset(settings, df, splits, table, prefixes, lm, gin, graphs)
    return splits, run


def test_splits_hold_out_a_tuning_part_and_test_every_other_molecule_once():
    settings = _toy_settings()
    splits = molex.dataset_splits(settings, _toy_frame(TOY_LABELS))
    assert len(splits.tune) == 8 and len(splits.folds) == 2
    tested = np.sort(splits.tested)
    assert tested.tolist() == sorted(set(range(32)) - set(splits.tune.tolist()))
    for fold in splits.folds:
        parts = [set(fold[k].tolist()) for k in ("train", "valid", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert not set(splits.tune.tolist()) & set().union(*parts)
    assert np.bincount(TOY_LABELS[splits.tune]).tolist() == [4, 4]  # stratified


def test_permuting_test_labels_leaves_every_prediction_unchanged(tiny_lm):
    settings = _toy_settings()
    df = _toy_frame(TOY_LABELS)
    splits = molex.dataset_splits(settings, df)
    test = splits.folds[0]["test"]
    permuted = TOY_LABELS.copy()
    permuted[test] = np.roll(TOY_LABELS[test], 1)  # fold 0's test labels permuted
    assert (permuted != TOY_LABELS).any()
    _, first = _toy_run(settings, df, tiny_lm, splits)
    _, second = _toy_run(settings, _toy_frame(permuted), tiny_lm, splits)  # the same protocol
    assert set(first.methods) == {
        "Training prior",
        "Fine-tuned LM",
        "MoleX",
        "MoleX w/o calibration",
        "MoleX (PCA)",
        "MoleX (pooled h)",
        "MoleX (beta=0)",
        "MoleX (no fine-tuning)",
        "Morgan FP + LR",
        "Morgan FP + RF",
        "GIN",
    }
    for key, proba in first.predictions.items():
        if key[0] == 0:  # fold 0 never trains on its own test molecules
            assert np.array_equal(proba, second.predictions[key]), key
    # two training seeds for the LM arms, one for beta = 0 and the baselines
    assert first.predictions[0, "MoleX"].shape == (2, len(test), 2)
    assert first.predictions[0, "MoleX (beta=0)"].shape == (1, len(test), 2)
    assert first.predictions[0, "GIN"].shape == (1, len(test), 2)
    assert not np.allclose(first.predictions[0, "MoleX"][0], first.predictions[0, "MoleX"][1])


def test_test_labels_are_sealed_outside_the_final_scoring(tiny_lm):
    from molkit.data import final_scoring
    from molkit.data.sealed import TestLabelAccessError

    settings = _toy_settings()
    df = _toy_frame(TOY_LABELS)
    splits, run = _toy_run(settings, df, tiny_lm)
    with pytest.raises(TestLabelAccessError):
        run.pooled("MoleX")
    with final_scoring():
        idx, y, proba = run.pooled("MoleX")
    assert y.tolist() == TOY_LABELS[idx].tolist() and proba.shape == (2, len(idx), 2)
    # the choices the protocol makes on validation labels raise if handed test labels instead
    fold = splits.folds[0]
    sealed = run.labels[0]
    X = np.random.default_rng(0).normal(size=(32, 5))
    with pytest.raises(TestLabelAccessError):
        molex.fit_molex(
            X[fold["train"]],
            TOY_LABELS[fold["train"]],
            X[fold["test"]],
            sealed,
            2,
            n_components=2,
            complement_components=2,
        )
    from molkit.methods.molex.baselines import fingerprint_baselines

    with pytest.raises(TestLabelAccessError):
        fingerprint_baselines(
            df["smiles"].tolist(),
            TOY_LABELS[fold["train"]],
            sealed,
            {**fold, "valid": fold["test"]},
            2,
            1,
            n_bits=64,
            rf_trees=2,
        )
    model, tok = tiny_lm
    prefix = encode_prefix(model, tok, CV_SMILES, n_trainable_layers=1, progress=False)
    with pytest.raises(TestLabelAccessError):
        molex.finetune_ib(
            model,
            prefix.subset(fold["train"]),
            TOY_LABELS[fold["train"]],
            prefix.subset(fold["test"]),
            sealed,
            2,
            1,
            epochs=1,
        )


def test_per_molecule_explanations_average_to_the_recorded_auc(tiny_lm):
    from molkit.data import final_scoring

    settings = _toy_settings()
    splits, run = _toy_run(settings, _toy_frame(TOY_LABELS), tiny_lm)
    rows = run.rows[run.rows["split"] == "fold 0"].set_index(["method", "metric"])["value"]
    for method in ("MoleX", "MoleX w/o calibration", "Morgan FP + LR", "Random attribution"):
        for reading, (metric, n_metric) in READING_METRICS.items():
            per_molecule = run.explanations[0, method, reading]  # (seeds, molecules)
            assert per_molecule.shape[1] == len(run.tests[0])  # NaN without ground truth
            ok = np.isfinite(per_molecule[0])
            assert per_molecule[:, ok].mean() == pytest.approx(rows[method, metric])
            assert ok.sum() == rows[method, n_metric]
    train = splits.folds[0]["train"]
    shares = np.bincount(TOY_LABELS[train], minlength=2) / len(train)
    assert np.allclose(run.predictions[0, "Training prior"], shares)  # the training class shares
    with final_scoring():
        _, y, proba = run.pooled("MoleX")
    accuracy = np.mean([np.mean(p.argmax(1) == y) for p in proba])
    folds = run.rows[(run.rows["method"] == "MoleX") & (run.rows["metric"] == "accuracy")]
    sizes = [len(run.tests[k]) for k in run.splits]
    assert np.average(folds["value"], weights=sizes) == pytest.approx(accuracy)


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
    # in the cross-validation, MoleX's reduction reads bottleneck_dim features
    _, run = _toy_run(_toy_settings(), _toy_frame(TOY_LABELS), tiny_lm)
    assert run.first.molex.reduction.A.shape[0] == 4  # _toy_settings' bottleneck_dim
    assert run.first.features.shape == (len(CV_SMILES), 4)


def test_no_fine_tuning_trains_the_bottleneck_head_on_the_frozen_lm(tiny_lm):
    model, tok = tiny_lm
    prefix = encode_prefix(model, tok, TOY_SMILES, n_trainable_layers=0, progress=False)
    assert prefix.n_frozen == len(model.encoder.layer)
    y = TOY_LABELS[:16]
    clf, hist = molex.finetune_ib(
        model,
        prefix.subset(range(12)),
        y[:12],
        prefix.subset(range(12, 16)),
        y[12:],
        2,
        0,
        epochs=3,
        patience=3,
        head_lr=1e-2,
        batch_size=4,
        bottleneck_dim=4,
        progress=False,
    )
    assert len(clf.layers) == 0 and hist.records["epoch"].tolist() == [0, 1, 2, 3]
    untrained = molex.IBClassifier(model, 2, 0, bottleneck_dim=4)
    # the pooled output under the head is the frozen LM's, the head is trained
    assert np.allclose(
        molex.embed_prefix(clf, prefix, "pooled"), molex.embed_prefix(untrained, prefix, "pooled")
    )
    assert not np.allclose(molex.embed_prefix(clf, prefix), molex.embed_prefix(untrained, prefix))
    assert "kept epoch" in hist.summary() and "of at most 3 epochs" in hist.summary()


def _toy_sections(settings, df):
    """A DataSection for the toy frame, as `load_data` makes it for a registered dataset."""
    from molkit.methods.molex.llm import generic_prompt
    from molkit.methods.molex.protocol import truth_enrichment
    from molkit.methods.molex.records import DataSection

    data = DataSection(
        frames={"toy.csv": df}, splits={"toy.csv": molex.dataset_splits(settings, df)}
    )
    data.enrichment = {"toy.csv": truth_enrichment(df)}
    data.prompts = {"toy.csv": generic_prompt("a nitro compound")}
    return data


def test_experiment_sections_return_typed_results_and_gated_claims(tiny_lm_path):
    from molkit.methods.experiment import HOLDS, NOT_JUDGED

    settings = _toy_settings(lm_model=str(tiny_lm_path), speed_molecules=8)
    df = _toy_frame(TOY_LABELS)
    df["truth"] = [tu_ground_truth(s, [1], (1,)) for s in CV_SMILES]  # a truth on every row
    data = _toy_sections(settings, df)
    texts = molex.ngram_texts(settings, data)
    assert [r["metric"] for r in texts.rows] == ["unk_token_rate"] * 2
    assert list(texts.example.columns) == ["group n-gram", "text for the LM", "atoms"]
    tuning = molex.tune(settings, data)
    assert tuning.lm["toy.csv"].chosen.beta in (0.01, 0.1) and len(tuning.lm_table) == 2
    assert tuning.lm_table["chosen"].sum() == 1 and tuning.gin_table["chosen"].sum() == 1
    chosen = tuning.lm_table[tuning.lm_table["chosen"]].iloc[0]
    assert chosen["tuning log-loss"] == tuning.lm_table["tuning log-loss"].min()
    cv = molex.cross_validate(settings, data, tuning)
    frame = cv.frame()
    folds = frame[frame["metric"] != "section_seconds"]
    assert set(frame["dataset"]) == {"toy.csv"} and set(folds["split"]) == {"fold 0", "fold 1"}
    row = cv.lm_gain.iloc[0]
    assert row["seeds"] == "2 / 1" and row["n"] == 24
    assert row["difference"] == pytest.approx(row["LM accuracy"] - row["prior accuracy"])
    walk = molex.walkthrough(settings, cv)
    assert walk.logit["intercept + sum"] == pytest.approx(walk.logit["model logit"])
    assert walk.tokens["contribution"].sum() == pytest.approx(
        walk.logit["sum of n-gram contributions"]
    )
    expl = molex.explanation_scores(settings, data, cv)
    assert set(expl.scores["reading"]) == set(READING_METRICS)
    speed = molex.throughput(settings, tuning, cv)
    report = speed.report
    assert set(report) >= {"molex", "rxnfp_bert", "speedup_vs_rxnfp_bert", "targets"}
    assert report["speedup_vs_rxnfp_bert"] == pytest.approx(
        report["rxnfp_bert"]["seconds"] / report["molex"]["seconds"]
    )
    assert sum(report["molex"]["shares"].values()) == pytest.approx(1.0)
    calib = molex.calibration_gain(settings, cv)
    assert [r["metric"] for r in calib.rows] == [
        "accuracy_points",
        "explanation_auc_points",
        "explanation_auc_abs_points",
        "token_auc_points",
        "token_auc_abs_points",
    ]
    claims = molex.build_claims(settings, data, cv, None, calib)
    frame = claims.claims_frame()
    assert list(frame.columns) == list(CLAIM_COLUMNS) and set(frame["paper"]) == {molex.PAPER}
    assert set(frame["kind"]) == {"gate", "comparison"}
    gates = {c.claim: c for c in claims.claims if c.kind == "gate"}
    for c in claims.claims:
        if c.kind == "comparison":
            assert c.gates, c.claim  # every comparison names its gates
            failed = [g for g in c.gates if gates[g].verdict != HOLDS]
            assert (c.verdict == NOT_JUDGED) == bool(failed), c.claim
    lm_gate = gates["Fine-tuned LM is more accurate than the training class prior"]
    assert (lm_gate.seeds, lm_gate.seeds_baseline, lm_gate.n) == (2, 1, 24)
    calibration = next(c for c in claims.claims if c.claim.startswith("residual calibration makes"))
    assert calibration.paper_value == pytest.approx(0.07)
    assert len(frame["claim"]) == len(set(frame["claim"]))  # every row says what it compares


def test_accuracy_claim_resamples_training_seeds():
    from molkit.data import final_scoring, seal
    from molkit.methods.molex.claims import _Judge
    from molkit.methods.molex.crossval import DatasetRun

    y = np.array([0, 1] * 20)
    right, wrong = np.eye(2)[y], np.eye(2)[1 - y]
    run = DatasetRun("d", 2)
    run.predictions = {(0, "a"): np.stack([right, right, wrong]), (0, "b"): wrong[None]}
    run.labels[0], run.tests[0] = seal(y), np.arange(40)
    judge = _Judge(molex.Settings.for_profile("smoke").with_overrides(n_boot=300), {"d": run})
    with final_scoring():
        claim = judge.accuracy_claim({"d": run}, "a", "b", "a beats b", "not reported", "gate")
    # seeds 1, 1, 0 accuracy: mean 2/3 against 0; the interval resamples the three seeds
    assert claim.ours == pytest.approx(2 / 3) and (claim.seeds, claim.seeds_baseline) == (3, 1)
    # every item is right for two seeds and wrong for one: only the seeds move the interval
    assert claim.low <= 1 / 3 + 1e-12 and claim.high == pytest.approx(1.0)
    assert claim.n == 40 and claim.kind == "gate"


def test_truth_enrichment_on_known_counts():
    from molkit.methods.molex.protocol import truth_enrichment

    df = pd.DataFrame({"smiles": ["C"] * 20, "label": [2] * 10 + [0] * 5 + [1] * 5})
    df["truth"] = [np.ones(1)] * 9 + [None] + [np.ones(1)] * 2 + [None] * 8
    df.attrs.update(name="toy", explain_class=2)
    e = truth_enrichment(df)
    assert (e.positives, e.others) == (10, 10)
    assert (e.share_positives, e.share_others) == (0.9, 0.2) and e.ratio == pytest.approx(4.5)
    assert e.enriched and e.p_value < 0.01
    df["truth"] = [np.ones(1)] * 20
    flat = truth_enrichment(df)
    assert flat.ratio == 1.0 and not flat.enriched and flat.p_value == pytest.approx(1.0)
    df["truth"] = None
    assert truth_enrichment(df).share_positives is None


def test_calibration_cap_is_reported():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 12))
    y = (X[:, 0] + X[:, 7] - X[:, 9] > 0).astype(int)
    capped = molex.fit_molex(
        X[:80],
        y[:80],
        X[80:100],
        y[80:100],
        2,
        n_components=2,
        complement_components=6,
        calib_rounds=3,
        calib_lr=0.01,
    )
    assert capped.calib_rounds == 3 and capped.calibration_capped
    free = molex.fit_molex(
        X[:80],
        y[:80],
        X[80:100],
        y[80:100],
        2,
        n_components=2,
        complement_components=6,
        calib_rounds=3000,
        calib_patience=10,
    )
    assert 0 < free.calib_rounds < 3000 and not free.calibration_capped


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
    assert (smoke.lm_seeds, default.lm_seeds, full.lm_seeds) == (2, 3, 5)  # >= 3 beyond smoke
    assert default.datasets == ("mutag", "ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr", "liver")
    assert (default.cv_folds, default.liver_folds, default.tune_fraction) == (5, 5, 0.1)
    assert default.lm_grid == [(2, 3e-4, 0.01), (2, 3e-4, 0.1)]  # 12 layers: full, Exercise 1
    assert default.ablation_datasets == default.datasets  # every ablation on every dataset
    assert default == molex.Settings(profile="default")  # the field defaults are the default
    assert max(full.lm_layer_grid) == 12 and full.cv_folds == 10
    assert full.llm_lora_datasets == full.datasets and full.llm_molecules is None
    assert {s.lm_model for s in (smoke, default, full)} == {"rxnfp-bert"}
    assert smoke.folds_of("liver") == 2 and default.folds_of("mutag") == 5


def test_settings_overrides_like_the_notebook_parameters():
    smoke = molex.Settings.for_profile("smoke")
    same = smoke.with_overrides(datasets=None, cv_folds=None, lm_model=None, beta_grid=None)
    assert same == smoke
    changed = smoke.with_overrides(datasets=["mutag", "liver"], cv_folds=5, beta_grid=[0.5, 0.5])
    assert changed.datasets == ("mutag", "liver") and changed.cv_folds == 5
    assert changed.beta_grid == (0.5, 0.5) and changed.profile == "smoke"
    assert smoke.with_overrides(datasets=["my.csv"]).datasets == ("my.csv",)
    with pytest.raises(ValueError, match="valid settings: .*lm_layer_grid"):
        smoke.with_overrides(n_trainable_layers=2)
    with pytest.raises(TypeError, match="n_components"):
        smoke.with_overrides(n_components="8")
    with pytest.raises(TypeError, match="pooling"):
        smoke.with_overrides(pooling="max")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"datasets": ["tox21"]}, "datasets: 'tox21' unknown"),
        ({"beta_grid": [0.1]}, "one candidate per position"),
        ({"beta_grid": [0.0, 0.1]}, "beta_grid: use betas > 0"),
        ({"lm_layer_grid": [0, 1]}, "train at least 1 top layer"),
        ({"lm_seeds": 0}, "lm_seeds: must be at least 1"),
        ({"tune_fraction": 0.6}, "tune_fraction"),
        ({"gin_pooling_grid": ["attention"]}, "gin_pooling_grid"),
    ],
)
def test_settings_problems_name_the_setting_and_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        molex.Settings.for_profile("smoke").with_overrides(**changes)


def test_gin_baseline_takes_its_pooling():
    from molkit.chem import graphs_from_smiles
    from molkit.methods.baselines import GINBaseline

    graphs = graphs_from_smiles(TOY_SMILES, progress=False)
    y = np.asarray(TOY_LABELS[:16], dtype=float)
    for pooling in ("mean", "sum"):
        gin = GINBaseline(num_layers=1, hidden=8, epochs=1, pooling=pooling)
        gin.fit(graphs[:12], y[:12], graphs[12:], y[12:])
        assert gin.model_.gin.pooling == pooling and gin.get_params()["pooling"] == pooling
        assert gin.predict(graphs).shape == (16, 1)
