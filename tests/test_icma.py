"""ICMA: retrieval (no self-retrieval, no test molecule in the pool), re-ranking rules, prompts,
per-item scores, the settings per profile and the experiment functions."""

import numpy as np
import pandas as pd
import pytest

from molkit.methods.icma import (
    TEMPLATES,
    BM25Retriever,
    FingerprintRetriever,
    GraphRetriever,
    Neighbours,
    build_prompts,
    evaluate_direction,
    pretrain_gin,
    random_walk,
    rerank,
    retrieval_only,
    same_molecule_exclusions,
)

POOL = pd.DataFrame(
    {
        "smiles": ["CCO", "CCCO", "CCO", "c1ccccc1", "c1ccccc1O", "CC(=O)O", "CCC(=O)O"],
        "text": [
            "The molecule is ethanol, a primary alcohol.",
            "The molecule is propanol, a primary alcohol.",
            "The molecule is ethanol drawn again, a primary alcohol.",
            "The molecule is benzene, an aromatic hydrocarbon.",
            "The molecule is phenol, an aromatic alcohol.",
            "The molecule is acetic acid, a carboxylic acid.",
            "The molecule is propanoic acid, a carboxylic acid.",
        ],
    }
)
POOL["smiles_raw"] = POOL["smiles"]
POOL["key"] = POOL["smiles"]  # one key per molecule (the real pool uses InChIKeys)


def test_same_molecule_exclusions():
    ex = same_molecule_exclusions(POOL["key"].tolist())
    assert (
        sorted(ex[0].tolist()) == [0, 2]
        and sorted(ex[2].tolist()) == [0, 2]
        and ex[3].tolist() == [3]
    )


@pytest.fixture(scope="module")
def retrievers():
    from molkit.chem import graphs_from_smiles

    graphs = graphs_from_smiles(POOL["smiles"].tolist(), progress=False)
    gin, losses = pretrain_gin(graphs, layers=2, hidden=16, epochs=2, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    return {
        "bm25": (BM25Retriever(POOL["text"].tolist()), POOL["text"].tolist()),
        "morgan": (
            FingerprintRetriever(POOL["smiles"].tolist(), "morgan"),
            POOL["smiles"].tolist(),
        ),
        "rdkit": (FingerprintRetriever(POOL["smiles"].tolist(), "rdkit"), POOL["smiles"].tolist()),
        "gin": (GraphRetriever(graphs, gin), POOL["smiles"].tolist()),
    }


@pytest.mark.parametrize("name", ["bm25", "morgan", "rdkit", "gin"])
def test_training_queries_never_retrieve_themselves(retrievers, name):
    retriever, queries = retrievers[name]
    exclude = same_molecule_exclusions(POOL["key"].tolist())
    nb = retriever.search(queries, k=3, exclude=exclude)
    assert nb.indices.shape == (len(POOL), 3) and nb.scores.shape == (len(POOL), 3)
    for i, row in enumerate(nb.indices):
        assert not set(row.tolist()) & set(exclude[i].tolist()), (name, i, row)
        assert len(set(row.tolist())) == 3
    assert (np.diff(nb.scores, axis=1) <= 1e-9).all()  # most similar first
    # without exclusion an exact copy of a pool entry finds itself first
    if (
        name != "gin"
    ):  # GIN embeddings of different molecules may tie; fingerprints/BM25 of a copy may not
        assert retriever.search(queries[:1], k=1).indices[0, 0] in (0, 2)


def test_fingerprint_neighbours_are_chemically_sensible(retrievers):
    retriever, _ = retrievers["morgan"]
    nb = retriever.search(["CCCCO"], k=1)
    assert POOL["smiles"][nb.indices[0, 0]] in ("CCCO", "CCO")
    bm25, _ = retrievers["bm25"]
    assert bm25.search(["an aromatic alcohol called phenol"], k=1).indices[0, 0] == 4


def test_molecule_keys_identify_molecules_not_strings():
    from molkit.methods.icma import molecule_keys

    keys = molecule_keys(["CCO", "OCC", "Oc1ccccn1", "O=c1cccc[nH]1", "CCN", "not a smiles"])
    assert keys[0] == keys[1] and len(keys[0]) == 27  # an InChIKey
    assert keys[2] == keys[3]  # tautomers that canonical SMILES keep apart: one molecule
    assert keys[4] != keys[0] and keys[5] == "not a smiles"  # no InChI: the string itself


@pytest.mark.usefixtures("mirror")
def test_pool_never_contains_a_test_molecule():
    from molkit.methods.icma import load_chebi20, molecule_keys

    pool, test, note = load_chebi20("chebi20")
    assert len(test) == 3300 and len(pool) < 3301  # InChIKeys find what canonical SMILES miss
    assert not set(pool["smiles"]) & set(test["smiles"])
    assert not set(pool["key"]) & set(molecule_keys(test["smiles_raw"].tolist()))
    assert f"{3301 - len(pool)} test molecules by InChIKey" in note


def test_random_retriever_is_a_seeded_floor():
    from molkit.methods.icma import RandomRetriever

    exclude = same_molecule_exclusions(POOL["key"].tolist())
    a = RandomRetriever(len(POOL), seed=1).search(["q"] * 7, 3, exclude)
    b = RandomRetriever(len(POOL), seed=1).search(["q"] * 7, 3, exclude)
    assert (a.indices == b.indices).all() and (a.scores == 0).all()
    for i, row in enumerate(a.indices):
        assert len(set(row.tolist())) == 3 and not set(row.tolist()) & set(exclude[i].tolist())
    assert len({tuple(r) for r in a.indices.tolist()}) > 1  # not the same pick for every query


def test_graph_retriever_standardises_the_common_direction(retrievers):
    retriever, queries = retrievers["gin"]
    emb = retriever._emb
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # standardised over the pool, the mean embedding is ~0: cosines spread instead of all ~1
    assert np.abs(emb.mean(axis=0)).max() < 0.5
    nb = retriever.search(queries, k=len(POOL))
    assert nb.scores[:, -1].max() < 0.9


def test_random_walk_rule():
    ranked = np.tile(np.arange(10), (2000, 1))
    rng = np.random.default_rng(0)
    assert (random_walk(ranked[:5], 3, 0.0, rng) == np.arange(3)).all()  # never skip: plain top-k
    # always skip (p -> 1): the list runs out and the top candidates fill the slots
    assert (random_walk(ranked[:5], 3, 0.999999, rng) == np.arange(3)).all()
    picks = random_walk(ranked, 2, 0.3, rng)
    assert (np.diff(picks, axis=1) > 0).all()  # ranked order is kept
    # first pick is rank r with probability 0.3**r * 0.7
    first = np.bincount(picks[:, 0], minlength=10) / len(picks)
    assert first[0] == pytest.approx(0.7, abs=0.04) and first[1] == pytest.approx(0.21, abs=0.03)
    with pytest.raises(ValueError, match="candidates"):
        random_walk(ranked[:, :1], 2, 0.3, rng)


def test_rerank_reversal_puts_most_similar_last():
    nb = Neighbours(np.array([[5, 3, 1, 0]]), np.array([[0.9, 0.8, 0.5, 0.1]]))
    assert rerank(nb, 2, reverse=True).tolist() == [[3, 5]]
    assert rerank(nb, 2, reverse=False).tolist() == [[5, 3]]
    walked = rerank(nb, 2, reverse=True, walk_p=0.5, rng=np.random.default_rng(1))
    assert walked.shape == (1, 2) and set(walked[0]) <= {5, 3, 1, 0}


class _WordTokenizer:
    """Stands in for an LM tokenizer: one id per whitespace-separated word."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(range(len(text.split())))}


def test_build_prompts_official_shape_and_budget():
    queries = POOL.iloc[[5]]
    prompts, answers, kept = build_prompts(
        "mol2cap", queries, POOL, np.array([[4, 0]]), _WordTokenizer(), 10_000
    )
    assert kept.tolist() == [2]
    assert prompts[0] == (
        "Generate a caption for the molecule: c1ccccc1O\n"
        "Caption: The molecule is phenol, an aromatic alcohol.\n\n"
        "Generate a caption for the molecule: CCO\n"
        "Caption: The molecule is ethanol, a primary alcohol.\n\n"
        + TEMPLATES["mol2cap"].query_after_examples.format(input="CC(=O)O")
    )
    assert answers == [" The molecule is acetic acid, a carboxylic acid."]
    direct, _, kept = build_prompts("cap2mol", queries, POOL, None, _WordTokenizer(), 10_000)
    assert kept.tolist() == [0]
    assert direct == [
        "Generate a molecule for the caption: The molecule is acetic acid, a carboxylic acid.\n"
        "Molecule:"
    ]
    # a tight budget drops the front (least similar after reversal) example first
    one = len(TEMPLATES["mol2cap"].render([("CCO", POOL["text"][0])], "CC(=O)O").split())
    prompts, _, kept = build_prompts(
        "mol2cap", queries, POOL, np.array([[4, 0]]), _WordTokenizer(), one
    )
    assert kept.tolist() == [1] and "phenol" not in prompts[0] and "ethanol" in prompts[0]


def test_retrieval_only_and_evaluation():
    nb = Neighbours(np.array([[0], [5]]), np.ones((2, 1)))
    captions = retrieval_only("mol2cap", nb, POOL)
    assert captions == [POOL["text"][0], POOL["text"][5]]
    assert evaluate_direction("mol2cap", captions, captions)["rougeL"] == pytest.approx(1.0)
    smiles = retrieval_only("cap2mol", nb, POOL)
    assert evaluate_direction("cap2mol", smiles, ["OCC", "CC(O)=O"])["exact_match"] == 1.0
    with pytest.raises(ValueError, match="direction"):
        evaluate_direction("mol2mol", smiles, smiles)


# ---------------------------------------------------------------- per-item scores


def test_per_item_scores_rouge_per_caption_and_tanimoto_per_molecule():
    from molkit.methods.icma import mean_score, per_item_scores

    caps = per_item_scores("mol2cap", ["an acid", "x y z"], ["an acid", "a base"])
    assert caps.tolist() == [pytest.approx(1.0), 0.0]
    # the same molecule written two ways scores 1; an invalid or empty SMILES scores 0
    mols = per_item_scores("cap2mol", ["OCC", "C1CC", "", "CCCCCC"], ["CCO", "CCO", "CCO", "CCO"])
    assert mols[0] == pytest.approx(1.0) and mols[1] == 0.0 and mols[2] == 0.0
    assert 0 < mols[3] < 1
    assert mean_score(np.zeros(4), mols) == pytest.approx(mols.mean())
    with pytest.raises(ValueError, match="predictions"):
        per_item_scores("mol2cap", ["a"], ["a", "b"])


# ---------------------------------------------------------------- settings


def test_default_profile_measures_what_the_issue_asks():
    """The default sizes that make the record decisive (issue 15): >= 100 test molecules, k = 2 with
    a cut-off that fits every context, the controls and both test-time ablations."""
    from molkit.methods.icma import Settings

    d = Settings.for_profile("default")
    assert d.n_test >= 100 and d.k == 2 and d.cutoff >= 2048 and d.mol2cap_retriever == "auto"
    assert set(d.test_time_ablations) == {"no_reversal", "k0"} and d.no_tuning_control
    assert d.n_ablation <= d.n_test and not d.lora  # full fine-tuning: measured faster on CPU
    smoke = Settings.for_profile("smoke")
    assert smoke.k == 2 and smoke.n_test < d.n_test and smoke.lm_model == "tiny-random-llama"
    full = Settings.for_profile("full")
    assert full.dataset == "chebi20-full" and full.n_test is None and full.lora


def test_settings_overrides_as_the_notebook_passes_them():
    from molkit.methods.icma import Settings

    base = Settings.for_profile("default")
    same = base.with_overrides({"lm_model": None, "n_train": None, "n_test": None, "k": None})
    assert same == base
    changed = base.with_overrides({"n_train": 5, "k": 1}, seed=3, mol2cap_retriever="gin")
    assert (changed.n_train, changed.k, changed.seed, changed.mol2cap_retriever) == (5, 1, 3, "gin")
    assert changed.max_new_tokens("cap2mol") == base.max_new_tokens_cap2mol
    with pytest.raises(ValueError, match="valid settings"):
        base.with_overrides(n_trian=5)
    with pytest.raises(TypeError, match="mol2cap_retriever"):
        base.with_overrides(mol2cap_retriever="ecfp")
    with pytest.raises(TypeError, match="test_time_ablations"):
        base.with_overrides(test_time_ablations=("no_reversl",))
    with pytest.raises(ValueError, match="k must be at least 1"):
        base.with_overrides(k=0)
    # the mol2cap retriever must be built: a typo or a missing retriever fails at setup
    with pytest.raises(ValueError, match="mol_retrievers"):
        Settings.for_profile("smoke").with_overrides(mol2cap_retriever="rdkit")


# ---------------------------------------------------------------- generation and failure modes


def test_newline_token_ids_stop_generation_at_the_end_of_the_line(tmp_path):
    from molkit.methods.icma import newline_token_ids
    from molkit.models.lm import load_lm, save_tiny_random_lm

    path = save_tiny_random_lm(tmp_path / "lm", ["a b\nc d\n\ne", "CCO\nCCN"] * 20, vocab_size=300)
    _, tok = load_lm(path, device="cpu")
    ids = newline_token_ids(tok)
    assert ids and all("\n" in tok.decode([i]) for i in ids)
    others = [i for i in range(len(tok)) if i not in ids]
    assert not any("\n" in tok.decode([i]) for i in others[:200])


def test_failure_modes_on_hand_made_outputs():
    from molkit.methods.icma import failure_modes

    context = [["The molecule is ethanol, a primary alcohol.", "The molecule is phenol."]] * 3
    caps = failure_modes(
        "mol2cap",
        [
            "The molecule is ethanol, a primary alcohol.",  # the context, unedited
            "an acid an acid an acid an acid an acid an acid",  # a loop
            "",
        ],
        context,
    )
    assert caps.to_dict("list") == {
        "empty": [False, False, True],
        "copies_context": [True, False, False],
        "repeats": [False, True, False],
    }
    mols = failure_modes("cap2mol", ["OCC", "C1CC", "CCN"], [["CCO", "CC"]] * 3)
    assert mols["copies_context"].tolist() == [True, False, False]  # same molecule, other string
    assert mols["invalid"].tolist() == [False, True, False]
    assert not failure_modes("cap2mol", ["CCO"], None)["copies_context"].any()
    with pytest.raises(ValueError, match="context lists"):
        failure_modes("mol2cap", ["a", "b"], [["a"]])


# ---------------------------------------------------------------- experiment functions

TEST = pd.DataFrame(
    {
        "smiles": ["CCCCO", "c1ccc(C)cc1"],
        "text": [
            "The molecule is butanol, a primary alcohol.",
            "The molecule is toluene, aromatic.",
        ],
    }
)
TEST["smiles_raw"] = TEST["smiles"]
TEST["key"] = TEST["smiles"]


def _toy_setup():
    from molkit.methods.icma import ChebiData, RandomRetriever, Retrievers, Settings

    settings = Settings.for_profile("smoke").with_overrides(
        mol_retrievers=("morgan",),
        mol2cap_retriever="morgan",
        k=2,
        random_walk_candidates=3,
        cutoff=1024,
        max_new_tokens_mol2cap=4,
        max_new_tokens_cap2mol=4,
        batch_size=2,
        gen_batch_size=2,
    )
    data = ChebiData(
        pool=POOL,
        test=TEST,
        train_idx=np.array([0, 3, 5, 6]),
        test_lm=TEST,
        test_retrieval=TEST,
        ablation_idx=np.array([1]),
        val_idx=np.array([0, 1, 3, 4, 5]),
        note="toy",
    )
    retrievers = Retrievers(
        BM25Retriever(POOL["text"].tolist()),
        {
            "morgan": FingerprintRetriever(POOL["smiles"].tolist(), "morgan"),
            "random": RandomRetriever(len(POOL)),
        },
        [],
        "morgan",
    )
    return settings, data, retrievers


def test_rerank_prompts_tune_and_replay_on_toy_data(tmp_path, monkeypatch):
    from molkit.methods.icma import build_prompt_sets, fine_tune, rerank_contexts

    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    settings, data, retrievers = _toy_setup()
    res = rerank_contexts(settings, data, retrievers)
    assert not res.rows and not res.claims
    contexts = res.artefacts["contexts"]
    exclusions = same_molecule_exclusions(POOL["key"].tolist())
    for direction in ("mol2cap", "cap2mol"):
        assert set(contexts[direction]) == {"train", "test", "no reversal", "k = 0"}
        assert contexts[direction]["train"].shape == (4, 2)
        for row, i in zip(contexts[direction]["train"], data.train_idx, strict=True):
            assert not set(row.tolist()) & set(exclusions[i].tolist())
        no_rev = contexts[direction]["no reversal"]  # on the ablation subset only
        assert no_rev.shape == (1, 2) and contexts[direction]["k = 0"] is None
        assert (contexts[direction]["test"][data.ablation_idx] == no_rev[:, ::-1]).all()
        assert 0 <= res.artefacts["off_top"][direction] <= 1

    res = build_prompt_sets(settings, data, contexts, tmp_path)
    prompts = res.artefacts["prompts"]
    assert (tmp_path / "tiny-random-llama").is_dir()
    assert res.artefacts["fit"]["mol2cap"] == {"train": 1.0, "test": 1.0}
    tight = build_prompt_sets(settings.with_overrides(cutoff=200), data, contexts, tmp_path)
    assert tight.artefacts["fit"]["mol2cap"]["train"] < 1  # the share reports dropped examples
    assert len(prompts["mol2cap"].icma_train) == 4 and len(prompts["cap2mol"].direct_test) == 2
    assert prompts["mol2cap"].answers[0] == " " + POOL["text"][0]
    assert set(prompts["cap2mol"].ablations) == {"no reversal", "k = 0"}
    assert prompts["cap2mol"].ablations["k = 0"] == [prompts["cap2mol"].direct_test[1]]
    assert len(res.artefacts["lengths"]["mol2cap ICMA train"]) == 4
    assert res.artefacts["memory"].startswith(f"memory: {_lm(tmp_path)} needs about")
    assert f"fp32, full fine-tuning, batch {settings.batch_size} x " in res.artefacts["memory"]

    res = fine_tune(settings, prompts, res.artefacts["lm_path"])
    assert [(r["method"], r["metric"]) for r in res.rows if r["dataset"] == "chebi20-mol2cap"] == [
        ("ICMA", "train_tokens_per_second"),
        ("ICMA", "generation_tokens_per_second"),
        ("direct fine-tuning", "train_tokens_per_second"),
        ("direct fine-tuning", "generation_tokens_per_second"),
        ("in-context prompting (no tuning)", "generation_tokens_per_second"),
    ]
    outputs = res.artefacts["outputs"]["cap2mol"]
    assert list(outputs) == ["ICMA", "direct fine-tuning", "in-context prompting (no tuning)"]
    assert all(len(preds) == 2 for preds in outputs.values())
    ablated = res.artefacts["ablation_outputs"]["cap2mol"]
    assert list(ablated) == ["ICMA, test-time no reversal", "ICMA, test-time k = 0"]
    assert all(len(preds) == 1 for preds in ablated.values())
    stats = res.artefacts["run_stats"]
    assert not stats["replayed"].any() and (stats["train examples"].tolist() == [4, 4, 0] * 2)

    # a re-run replays every trained model from the cache: nothing trains, the outputs are equal
    import molkit.models.lm.train as lm_training

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights are cached")

    monkeypatch.setattr(lm_training, "train_causal_lm", no_training)
    again = fine_tune(settings, prompts, _lm(tmp_path))
    assert again.artefacts["outputs"] == res.artefacts["outputs"]
    replayed = again.artefacts["run_stats"]
    assert replayed.loc[replayed["train examples"] > 0, "replayed"].all()
    # changed settings miss the cache (and so would train)
    with pytest.raises(AssertionError, match="cached"):
        fine_tune(settings.with_overrides(lr=5e-4), prompts, _lm(tmp_path))


def _lm(tmp_path):
    return str(tmp_path / "tiny-random-llama")


@pytest.mark.usefixtures("mirror")
def test_load_data_draws_the_notebooks_seeded_subsets():
    from molkit.methods.icma import Settings, load_chebi20, load_data

    settings = Settings.for_profile("smoke").with_overrides(seed=3)
    data = load_data(settings).artefacts["data"]
    pool, test, _ = load_chebi20("chebi20")
    rng = np.random.default_rng(3)  # draw by draw, in the documented order
    train_idx = np.sort(rng.choice(len(pool), 8, replace=False))
    test_sub = test.iloc[np.sort(rng.choice(len(test), 6, replace=False))]
    test_rv = test.iloc[np.sort(rng.choice(len(test), 200, replace=False))]
    ablation = np.sort(rng.choice(6, 4, replace=False))
    val = np.sort(rng.choice(len(pool), 100, replace=False))
    assert data.train_idx.tolist() == train_idx.tolist()
    assert data.test_lm["id"].tolist() == test_sub["id"].tolist()
    assert data.test_retrieval["id"].tolist() == test_rv["id"].tolist()
    assert data.ablation_idx.tolist() == ablation.tolist() and data.val_idx.tolist() == val.tolist()
    assert data.lm_split == "test subset (6)" and data.retrieval_split == "test (200)"
    assert data.test_ablation["id"].tolist() == test_sub["id"].iloc[ablation].tolist()


@pytest.fixture(scope="module")
def chebi_smoke():
    """Smoke data with Morgan + BM25 retrievers only (no GIN: fast)."""
    import os
    from pathlib import Path

    if not Path(os.environ.get("MOLKIT_DATA_MIRROR", ""), "MANIFEST.csv").exists():
        pytest.skip("no offline data mirror (set MOLKIT_DATA_MIRROR)")
    from molkit.methods.icma import RandomRetriever, Retrievers, Settings, load_data

    settings = Settings.for_profile("smoke").with_overrides(mol_retrievers=("morgan",))
    data = load_data(settings).artefacts["data"]
    retrievers = Retrievers(
        BM25Retriever(data.pool["text"].tolist()),
        {
            "morgan": FingerprintRetriever(data.pool["smiles"].tolist(), "morgan"),
            "random": RandomRetriever(len(data.pool)),
        },
        [],
    )
    return settings, data, retrievers


def test_metric_check_both_directions_and_retrieval_quality(chebi_smoke):
    from molkit.methods.experiment import HOLDS
    from molkit.methods.icma import check_metrics, retrieval_baselines

    settings, data, retrievers = chebi_smoke
    res = check_metrics(settings, data)
    assert {r["split"] for r in res.rows} == {"test (200)"}
    check = res.artefacts["check"]
    assert abs(check["mol2cap"].loc["rougeL", "difference"]) < 0.02  # ROUGE as MolT5's
    assert {"exact_match", "morgan_fts", "morgan_fts_all", "validity"} <= set(
        check["cap2mol"].index
    )
    assert np.isnan(check["cap2mol"].loc["morgan_fts_all", "MolT5 paper"])  # not in the paper
    res = retrieval_baselines(settings, data, retrievers)
    assert retrievers.mol2cap == "morgan" == res.artefacts["chosen"]  # auto: best on validation
    validation = res.artefacts["validation"]
    assert validation.loc["morgan", "rougeL_per_item"] > validation.loc["random", "rougeL_per_item"]
    assert validation["chosen"].tolist() == [True, False]
    [claim] = res.claims
    assert claim.claim.startswith("mol2cap retrieval: morgan") and claim.verdict == HOLDS
    assert claim.n == len(data.val_idx)
    methods = list(dict.fromkeys(r["method"] for r in res.rows))
    assert methods == [
        "retrieval only (morgan)",
        "retrieval only (random)",
        "retrieval only (bm25)",
    ]
    assert res.artefacts["table"].loc[("mol2cap", "morgan"), "top1_score"] > 0
    assert set(res.artefacts["neighbours"]["neighbours"]) == {"morgan", "random"}


def test_evaluate_returns_rows_and_paired_claims(chebi_smoke):
    from molkit.methods.experiment import HOLDS
    from molkit.methods.icma import evaluate, metrics_vs_baselines

    settings, data, retrievers = chebi_smoke
    retrievers.mol2cap = "morgan"
    n, m = len(data.test_lm), len(data.ablation_idx)
    captions = data.test_lm["text"].tolist()
    smiles = data.test_lm["smiles_raw"].tolist()
    outputs = {  # a perfect "ICMA", poor controls and a poor ablation
        "mol2cap": {
            "ICMA": captions,
            "direct fine-tuning": ["The molecule."] * n,
            "in-context prompting (no tuning)": ["The molecule is a thing."] * n,
        },
        "cap2mol": {
            "ICMA": smiles,
            "direct fine-tuning": ["C"] * n,
            "in-context prompting (no tuning)": ["not a smiles"] * n,
        },
    }
    ablations = {
        "mol2cap": {"ICMA, test-time no reversal": ["The molecule."] * m},
        "cap2mol": {"ICMA, test-time k = 0": ["not a smiles"] * m},
    }
    res = evaluate(settings, data, retrievers, outputs, ablations)
    methods = list(
        dict.fromkeys(r["method"] for r in res.rows if r["dataset"] == "chebi20-mol2cap")
    )
    assert methods == [
        "ICMA",
        "direct fine-tuning",
        "in-context prompting (no tuning)",
        "retrieval only (morgan)",
        "MolT5-base (published outputs)",
        "ICMA, test-time no reversal",
    ]
    assert {r["split"] for r in res.rows} == {f"test subset ({n})", f"test ablation subset ({m})"}
    first = [c.claim.split(": ")[1] for c in res.claims[:6]]
    assert first == [  # every LM row against the trivial baseline first
        f"{method} beats copying the best-retrieved {out}"
        for out in ("caption", "molecule")
        for method in ("ICMA", "in-context prompting (no tuning)", "direct fine-tuning")
    ]
    controls = [c for c in res.claims[6:12]]
    assert [c.claim.split(": ICMA beats ")[1].split(" ")[0] for c in controls] == [
        "in-context", "direct", "MolT5-base's"
    ] * 2  # fmt: skip
    direct = [c for c in controls if "direct fine-tuning" in c.claim]
    assert [c.verdict for c in direct] == [HOLDS, HOLDS] and all(c.low > 0 for c in direct)
    assert "0.625 vs 0.547" in direct[0].paper_figure
    assert "NOT both above retrieval only" in direct[0].detail  # the direct model fails the floor
    ablation_claims = res.claims[12:]
    assert [c.claim for c in ablation_claims] == [
        "mol2cap: sequence reversal (most similar example last) helps",
        "cap2mol: the retrieved context examples help the tuned model at test time",
    ]
    assert all(c.n == m and c.verdict == HOLDS for c in ablation_claims)
    assert all(c.n == n for c in res.claims[:12])
    scores = res.artefacts["scores"]["cap2mol"]
    assert scores["ICMA"].tolist() == pytest.approx([1.0] * n)
    assert scores["in-context prompting (no tuning)"].tolist() == [0.0] * n
    assert res.artefacts["tables"]["mol2cap"].loc["ICMA", "rougeL"] == pytest.approx(1.0)
    assert res.artefacts["ablation_tables"]["cap2mol"].loc["ICMA", "exact_match"] == 1.0
    assert list(res.artefacts["predictions"]["cap2mol"].columns)[0] == "truth"
    assert "HOLDS" in res.artefacts["findings"] and res.artefacts["findings"].count("\n") == 13
    fig = metrics_vs_baselines(res.artefacts["tables"], n)
    assert len(fig.axes) == 2


def test_paper_claims_order_and_gate_from_per_item_scores():
    from molkit.methods.experiment import CONTRADICTED, HOLDS, UNDECIDED
    from molkit.methods.icma import PAPER, paper_claims

    good, bad = np.linspace(0.6, 0.9, 12), np.linspace(0.1, 0.4, 12)
    scores = {
        "mol2cap": {
            "ICMA": good,
            "direct fine-tuning": bad,
            "retrieval only (morgan)": good + 0.05,
        },
        "cap2mol": {"ICMA": good, "direct fine-tuning": good, "retrieval only (bm25)": bad},
    }
    claims = paper_claims(scores, seed=0, scale="toy")
    assert [c.claim for c in claims] == [
        "mol2cap: ICMA beats copying the best-retrieved caption",
        "mol2cap: direct fine-tuning beats copying the best-retrieved caption",
        "cap2mol: ICMA beats copying the best-retrieved molecule",
        "cap2mol: direct fine-tuning beats copying the best-retrieved molecule",
        "mol2cap: ICMA beats direct fine-tuning of the same LM on the same training pairs",
        "cap2mol: ICMA beats direct fine-tuning of the same LM on the same training pairs",
    ]  # no control or ablation row without its scores
    assert [c.verdict for c in claims] == [
        CONTRADICTED, CONTRADICTED, HOLDS, HOLDS, HOLDS, UNDECIDED
    ]  # fmt: skip
    assert all(c.paper == PAPER and c.n == 12 for c in claims)
    assert "NOT both above retrieval only: ICMA fails, direct fine-tuning fails" in claims[4].detail
    assert "both beat retrieval only" in claims[5].detail and claims[5].detail.endswith("toy")
    assert claims[4].ours == pytest.approx(0.5)


# ---------------------------------------------------------------- paper scale: loading and memory


def test_full_profile_loads_galactica_in_bf16_with_lora_and_checks_memory(tmp_path, monkeypatch):
    """Issue 19: ``full`` fine-tunes Galactica-125m (not a 7B model: no 4-bit) with LoRA on bf16
    weights; a tiny random OPT (the same architecture) goes through `fine_tune_and_generate` that
    way (bf16 base, float32 adapters that train); 4-bit without CUDA names the setting; the memory
    line, its refusal and the unavailable estimate."""
    import torch

    from molkit.methods.icma import Settings, fine_tune_and_generate, lm_memory
    from molkit.models import lm as lm_training
    from molkit.models.lm.memory import InsufficientMemoryError

    smoke, default, full = (Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert (full.lm_dtype, full.lm_quantization, full.lora) == ("bf16", None, True)
    assert (smoke.lm_dtype, smoke.lm_quantization) == (default.lm_dtype, None) == ("fp32", None)
    with pytest.raises(ValueError, match="lm_dtype setting"):
        smoke.with_overrides(lm_dtype="half")
    with pytest.raises(ValueError, match="lm_quantization setting"):
        smoke.with_overrides(lm_quantization="int8")
    with pytest.raises(ValueError, match="lm_quantization='4bit' trains through LoRA only"):
        smoke.with_overrides(lm_quantization="4bit")
    corpus = POOL["text"].tolist() + POOL["smiles"].tolist()
    path = str(lm_training.save_tiny_random_lm(tmp_path / "opt", corpus, "opt", vocab_size=300))
    loaded = []
    real_load = lm_training.load_lm

    def recording_load(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        loaded.append(model)
        return model, tokenizer

    monkeypatch.setattr(lm_training, "load_lm", recording_load)
    train = lm_training.TrainConfig(epochs=1, batch_size=2, seed=0)
    run, _ = fine_tune_and_generate(
        path, ["Molecule: CCO Caption:"] * 2, [" ethanol"] * 2, ["Molecule: CCO Caption:"],
        train, cutoff=64, max_new_tokens=2, gen_batch_size=1, lora=True, cache=False,
        lm_dtype=full.lm_dtype, lm_quantization=full.lm_quantization,
    )  # fmt: skip
    (model,) = loaded
    assert run.train is not None and len(run.predictions) == 1
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n and params[n].dtype == torch.float32 for n in trainable)
    assert {p.dtype for n, p in params.items() if n not in trainable} == {torch.bfloat16}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="lm_quantization='4bit'.*no CUDA device"):
        fine_tune_and_generate(
            path, None, None, ["Molecule: CCO Caption:"], train, cutoff=64, max_new_tokens=2,
            gen_batch_size=1, lora=True, lm_quantization="4bit",
        )  # fmt: skip
    settings = smoke.with_overrides(lm_dtype="bf16", lora=True)
    line = lm_memory(settings, path, 64, "cpu", free_bytes=10**12)
    assert line.startswith(f"memory: {path} needs about")
    assert "bf16, LoRA r 32, batch 4 x 64 tokens" in line
    assert "full fine-tuning" in lm_memory(smoke, path, 64, "cpu", free_bytes=10**12)
    with pytest.raises(InsufficientMemoryError, match="lm_dtype='bf16' with lora=True"):
        lm_memory(settings, path, 64, "cpu", free_bytes=1000)
    absent = lm_memory(full, "no-such-org/no-such-model-xyz", 2048, local_files_only=True)
    assert absent.startswith("memory: no estimate for no-such-org/no-such-model-xyz")
