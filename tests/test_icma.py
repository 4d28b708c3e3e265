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


def test_same_molecule_exclusions():
    ex = same_molecule_exclusions(POOL["smiles"].tolist())
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
    exclude = same_molecule_exclusions(POOL["smiles"].tolist())
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


@pytest.mark.usefixtures("mirror")
def test_pool_never_contains_a_test_molecule():
    from molkit.methods.icma import load_chebi20

    pool, test, _ = load_chebi20("chebi20")
    assert len(pool) == 3301 and len(test) == 3300
    assert not set(pool["smiles"]) & set(test["smiles"])


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

#: The values of the former ``icma.PROFILE_SIZES`` (lists are tuples now).
OLD_PROFILE_SIZES = {
    "smoke": dict(dataset="chebi20", lm_model="tiny-random-llama", n_train=8, n_test=4,
                  n_retrieval_eval=200, k=2, cutoff=256, max_new_tokens_mol2cap=16,
                  max_new_tokens_cap2mol=16, epochs=1.0, lr=1e-3, batch_size=4, grad_accum=1,
                  lora=False, gen_batch_size=4, mol2cap_retriever="gin",
                  mol_retrievers=("morgan", "gin"), random_walk_p=0.3, random_walk_candidates=4,
                  gin_layers=2, gin_hidden=32, gin_epochs=1,
                  test_time_ablations=("no_reversal",)),
    "default": dict(dataset="chebi20", lm_model="smollm2-135m-instruct", n_train=24, n_test=16,
                    n_retrieval_eval=None, k=1, cutoff=384, max_new_tokens_mol2cap=128,
                    max_new_tokens_cap2mol=96, epochs=1.0, lr=1e-4, batch_size=2, grad_accum=1,
                    lora=False, gen_batch_size=8, mol2cap_retriever="morgan",
                    mol_retrievers=("morgan", "rdkit", "gin"), random_walk_p=0.3,
                    random_walk_candidates=4, gin_layers=3, gin_hidden=64, gin_epochs=2,
                    test_time_ablations=()),
    "full": dict(dataset="chebi20-full", lm_model="facebook/galactica-125m", n_train=None,
                 n_test=None, n_retrieval_eval=None, k=2, cutoff=1024, max_new_tokens_mol2cap=256,
                 max_new_tokens_cap2mol=256, epochs=1.0, lr=2e-5, batch_size=8, grad_accum=4,
                 lora=True, gen_batch_size=32, mol2cap_retriever="gin",
                 mol_retrievers=("morgan", "rdkit", "gin"), random_walk_p=0.3,
                 random_walk_candidates=6, gin_layers=5, gin_hidden=300, gin_epochs=50,
                 test_time_ablations=("no_reversal", "morgan_contexts", "rdkit_contexts")),
}  # fmt: skip


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_settings_profiles_keep_the_old_sizes(profile):
    from molkit.methods.icma import Settings
    from molkit.models.lm_training import SMOKE_LM

    settings = Settings.for_profile(profile)
    got = {name: getattr(settings, name) for name in OLD_PROFILE_SIZES[profile]}
    assert got == OLD_PROFILE_SIZES[profile]
    assert settings.profile == profile and settings.seed == 0
    if profile == "smoke":
        assert settings.lm_model == SMOKE_LM


def test_settings_overrides_as_the_notebook_passes_them():
    from molkit.methods.icma import Settings

    base = Settings.for_profile("default")
    same = base.with_overrides({"lm_model": None, "n_train": None, "n_test": None, "k": None})
    assert same == base
    changed = base.with_overrides({"n_train": 5, "k": 2}, seed=3, mol2cap_retriever="gin")
    assert (changed.n_train, changed.k, changed.seed, changed.mol2cap_retriever) == (5, 2, 3, "gin")
    assert changed.max_new_tokens("cap2mol") == 96
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


def _toy_setup():
    from molkit.methods.icma import ChebiData, Retrievers, Settings

    settings = Settings.for_profile("smoke").with_overrides(
        mol_retrievers=("morgan",),
        mol2cap_retriever="morgan",
        k=2,
        random_walk_candidates=3,
        cutoff=160,
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
        note="toy",
    )
    retrievers = Retrievers(
        BM25Retriever(POOL["text"].tolist()),
        {"morgan": FingerprintRetriever(POOL["smiles"].tolist(), "morgan")},
        [],
    )
    return settings, data, retrievers


def test_rerank_prompts_and_fine_tune_on_toy_data(tmp_path):
    from molkit.methods.icma import build_prompt_sets, fine_tune, rerank_contexts

    settings, data, retrievers = _toy_setup()
    res = rerank_contexts(settings, data, retrievers)
    assert not res.rows and not res.claims
    contexts = res.artefacts["contexts"]
    exclusions = same_molecule_exclusions(POOL["smiles"].tolist())
    for direction in ("mol2cap", "cap2mol"):
        assert set(contexts[direction]) == {"train", "test", "test, no reversal"}
        assert contexts[direction]["train"].shape == (4, 2)
        for row, i in zip(contexts[direction]["train"], data.train_idx, strict=True):
            assert not set(row.tolist()) & set(exclusions[i].tolist())
        no_rev = contexts[direction]["test, no reversal"]
        assert (contexts[direction]["test"] == no_rev[:, ::-1]).all()
        assert 0 <= res.artefacts["off_top"][direction] <= 1

    res = build_prompt_sets(settings, data, contexts, tmp_path)
    prompts = res.artefacts["prompts"]
    assert (tmp_path / "tiny-random-llama").is_dir()
    assert len(prompts["mol2cap"].icma_train) == 4 and len(prompts["cap2mol"].direct_test) == 2
    assert prompts["mol2cap"].answers[0] == " " + POOL["text"][0]
    assert set(prompts["cap2mol"].test) == {"test", "test, no reversal"}

    res = fine_tune(settings, prompts, res.artefacts["lm_path"])
    assert [(r["dataset"], r["method"], r["metric"]) for r in res.rows[:4]] == [
        ("chebi20-mol2cap", "ICMA", "train_tokens_per_second"),
        ("chebi20-mol2cap", "ICMA", "generation_tokens_per_second"),
        ("chebi20-mol2cap", "direct fine-tuning", "train_tokens_per_second"),
        ("chebi20-mol2cap", "direct fine-tuning", "generation_tokens_per_second"),
    ]
    assert len(res.rows) == 8 and res.rows[1]["split"] == "test subset (2)"
    outputs = res.artefacts["outputs"]["cap2mol"]
    assert list(outputs) == ["ICMA", "direct fine-tuning", "ICMA, test-time no reversal"]
    assert all(len(preds) == 2 for preds in outputs.values())


@pytest.mark.usefixtures("mirror")
def test_load_data_draws_the_notebooks_seeded_subsets():
    from molkit.methods.icma import Settings, load_chebi20, load_data

    settings = Settings.for_profile("smoke").with_overrides(seed=3)
    data = load_data(settings).artefacts["data"]
    pool, test, _ = load_chebi20("chebi20")
    rng = np.random.default_rng(3)  # the former notebook cell, draw by draw
    train_idx = np.sort(rng.choice(len(pool), 8, replace=False))
    test_sub = test.iloc[np.sort(rng.choice(len(test), 4, replace=False))]
    test_rv = test.iloc[np.sort(rng.choice(len(test), 200, replace=False))]
    assert data.train_idx.tolist() == train_idx.tolist()
    assert data.test_lm["id"].tolist() == test_sub["id"].tolist()
    assert data.test_retrieval["id"].tolist() == test_rv["id"].tolist()
    assert data.lm_split == "test subset (4)" and data.retrieval_split == "test (200)"


@pytest.fixture(scope="module")
def chebi_smoke():
    """Smoke data with Morgan + BM25 retrievers only (no GIN: fast)."""
    import os
    from pathlib import Path

    if not Path(os.environ.get("MOLKIT_DATA_MIRROR", ""), "MANIFEST.csv").exists():
        pytest.skip("no offline data mirror (set MOLKIT_DATA_MIRROR)")
    from molkit.methods.icma import Retrievers, Settings, load_data

    settings = Settings.for_profile("smoke").with_overrides(
        mol_retrievers=("morgan",), mol2cap_retriever="morgan"
    )
    data = load_data(settings).artefacts["data"]
    retrievers = Retrievers(
        BM25Retriever(data.pool["text"].tolist()),
        {"morgan": FingerprintRetriever(data.pool["smiles"].tolist(), "morgan")},
        [],
    )
    return settings, data, retrievers


def test_metric_check_and_retrieval_baselines(chebi_smoke):
    from molkit.methods.icma import check_metrics, retrieval_baselines

    settings, data, retrievers = chebi_smoke
    res = check_metrics(settings, data)
    assert len(res.rows) == 6 + 7 and {r["split"] for r in res.rows} == {"test (200)"}
    assert abs(res.artefacts["check"].loc["rougeL", "difference"]) < 0.02  # ROUGE as MolT5's
    res = retrieval_baselines(settings, data, retrievers)
    methods = list(dict.fromkeys(r["method"] for r in res.rows))
    assert methods == ["retrieval only (morgan)", "retrieval only (bm25)"]
    assert res.artefacts["table"].loc[("mol2cap", "morgan"), "top1_score"] > 0


def test_evaluate_returns_rows_and_paired_claims(chebi_smoke):
    from molkit.methods.experiment import HOLDS
    from molkit.methods.icma import evaluate, metrics_vs_baselines

    settings, data, retrievers = chebi_smoke
    captions = data.test_lm["text"].tolist()
    smiles = data.test_lm["smiles_raw"].tolist()
    outputs = {  # a perfect "ICMA", a poor direct model and a poor ablation
        "mol2cap": {
            "ICMA": captions,
            "direct fine-tuning": ["The molecule."] * 4,
            "ICMA, test-time no reversal": ["The molecule."] * 4,
        },
        "cap2mol": {
            "ICMA": smiles,
            "direct fine-tuning": ["C"] * 4,
            "ICMA, test-time no reversal": ["not a smiles"] * 4,
        },
    }
    res = evaluate(settings, data, retrievers, outputs)
    methods = list(
        dict.fromkeys(r["method"] for r in res.rows if r["dataset"] == "chebi20-mol2cap")
    )
    assert methods == [
        "ICMA",
        "direct fine-tuning",
        "ICMA, test-time no reversal",
        "retrieval only (morgan)",
        "MolT5-base (published outputs)",
    ]
    assert {r["split"] for r in res.rows} == {"test subset (4)"}
    assert len(res.claims) == 6 and all(c.n == 4 for c in res.claims)
    assert [c.claim.split(": ")[1] for c in res.claims[:2]] == [
        "ICMA beats copying the best-retrieved caption",
        "ICMA beats copying the best-retrieved molecule",
    ]  # the trivial baseline is judged first
    direct = [c for c in res.claims if "direct fine-tuning" in c.claim]
    assert [c.verdict for c in direct] == [HOLDS, HOLDS] and all(c.low > 0 for c in direct)
    assert "0.625 vs 0.547" in direct[0].paper_figure
    scores = res.artefacts["scores"]["cap2mol"]
    assert scores["ICMA"].tolist() == pytest.approx([1.0] * 4)
    assert scores["ICMA, test-time no reversal"].tolist() == [0.0] * 4
    assert res.artefacts["tables"]["mol2cap"].loc["ICMA", "rougeL"] == pytest.approx(1.0)
    assert list(res.artefacts["predictions"]["cap2mol"].columns)[0] == "truth"
    fig = metrics_vs_baselines(res.artefacts["tables"], 4)
    assert len(fig.axes) == 2


def test_paper_claims_order_and_verdicts_from_per_item_scores():
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
        "cap2mol: ICMA beats copying the best-retrieved molecule",
        "mol2cap: ICMA beats direct fine-tuning of the same LM",
        "cap2mol: ICMA beats direct fine-tuning of the same LM",
    ]  # no reversal claim without its ablation
    assert [c.verdict for c in claims] == [CONTRADICTED, HOLDS, HOLDS, UNDECIDED]
    assert all(c.paper == PAPER and c.n == 12 for c in claims)
    assert claims[2].detail.endswith("ICMA vs retrieval only: contradicted")
    assert claims[2].ours == pytest.approx(0.5)
