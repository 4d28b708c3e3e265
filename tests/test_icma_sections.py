"""ICMA's Practical sections (`molkit.methods.icma.experiment`): the seeded subsets, re-ranking,
prompts, tuning to the validation optimum and replay on toy data, the final scoring, and the test
references that only the final scoring reads."""

import numpy as np
import pandas as pd
import pytest

from molkit.data import TestLabelAccessError
from molkit.methods.icma import (
    ICMA,
    NO_TUNING,
    ChebiData,
    FingerprintRetriever,
    LuceneBM25Retriever,
    OkapiBM25Retriever,
    RandomRetriever,
    Retrievers,
    Settings,
    same_molecule_exclusions,
)
from molkit.methods.icma.records import seal_references

POOL = pd.DataFrame(
    {
        "smiles": ["CCO", "CCCO", "CCO", "c1ccccc1", "c1ccccc1O", "CC(=O)O", "CCC(=O)O", "CCN"],
        "text": [
            "The molecule is ethanol, a primary alcohol.",
            "The molecule is propanol, a primary alcohol.",
            "The molecule is ethanol drawn again, a primary alcohol.",
            "The molecule is benzene, an aromatic hydrocarbon.",
            "The molecule is phenol, an aromatic alcohol.",
            "The molecule is acetic acid, a carboxylic acid.",
            "The molecule is propanoic acid, a carboxylic acid.",
            "The molecule is ethylamine, a primary amine.",
        ],
    }
)
POOL["smiles_raw"] = POOL["smiles"]
POOL["key"] = POOL["smiles"]
TEST = pd.DataFrame(
    {
        "smiles": ["CCCCO", "c1ccc(C)cc1"],
        "text": ["The molecule is butanol, a primary alcohol.", "The molecule is toluene."],
    }
)
TEST["smiles_raw"] = TEST["smiles"]
TEST["key"] = TEST["smiles"]


def _toy_setup(**overrides):
    settings = Settings.for_profile("smoke").with_overrides(
        mol_retrievers=("morgan",), mol2cap_retriever="morgan", k=2, random_walk_candidates=3,
        max_new_tokens_mol2cap=4, max_new_tokens_cap2mol=4, batch_size=2, gen_batch_size=2,
        lm_seeds=2, direct_seeds=1, **overrides,
    )  # fmt: skip
    data = ChebiData(
        pool=POOL, test=TEST, train_idx=np.array([0, 3, 5, 6]), lm_valid_idx=np.array([1, 4]),
        test_lm=TEST, test_retrieval=TEST, ablation_idx=np.array([1]),
        val_idx=np.array([0, 1, 3, 4, 5]), gin_valid_idx=np.array([7]),
        truth=seal_references(TEST, "toy test"), truth_retrieval=seal_references(TEST, "toy"),
        note="toy",
    )  # fmt: skip
    texts = POOL["text"].tolist()
    retrievers = Retrievers(
        OkapiBM25Retriever(texts),
        LuceneBM25Retriever(texts),
        {
            "morgan": FingerprintRetriever(POOL["smiles"].tolist(), "morgan"),
            "random": RandomRetriever(len(POOL)),
        },
        "morgan",
    )
    return settings, data, retrievers


def test_the_test_references_are_sealed():
    """Reading the test references outside the final scoring raises: a selection that peeked
    (a retriever, an early-stopping step, a threshold chosen on the test split) fails loudly."""
    from molkit.data import final_scoring
    from molkit.methods.icma import per_item_scores

    _, data, _ = _toy_setup()
    truth = data.truth["mol2cap"]
    assert len(truth) == 2  # how many there are is no secret
    for peek in (lambda: truth.read(), lambda: np.asarray(truth), lambda: list(truth),
                 lambda: per_item_scores("mol2cap", ["a", "b"], truth)):  # fmt: skip
        with pytest.raises(TestLabelAccessError, match="final scoring"):
            peek()
    with final_scoring():
        assert truth.read().tolist() == TEST["text"].tolist()


def test_selection_never_reads_the_test_references(monkeypatch):
    """With the seal kept shut (`final_scoring` replaced by a context that opens nothing), the
    retriever is still chosen on the pool's validation queries before the final test scoring
    raises; re-ranking and prompt building need no test reference at all."""
    import contextlib

    import molkit.data
    from molkit.methods.icma import evaluate, rerank_contexts, retrieval_baselines

    settings, data, retrievers = _toy_setup()
    retrievers.mol2cap = None
    settings = settings.with_overrides(mol2cap_retriever="auto")
    monkeypatch.setattr(molkit.data, "final_scoring", contextlib.nullcontext)
    with pytest.raises(TestLabelAccessError):
        retrieval_baselines(settings, data, retrievers)
    assert retrievers.mol2cap == "morgan"  # chosen before the test split was touched
    contexts = rerank_contexts(settings, data, retrievers).contexts
    assert set(contexts) == {"mol2cap", "cap2mol"}
    from molkit.methods.icma import Tuning

    with pytest.raises(TestLabelAccessError):
        evaluate(settings, data, retrievers, Tuning(), {})


def test_rerank_prompts_tune_and_replay_on_toy_data(tmp_path, monkeypatch):
    from molkit.methods.icma import ARMS, build_prompt_sets, fine_tune, rerank_contexts

    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    settings, data, retrievers = _toy_setup(retrained_ablations=("no_reversal", "no_random_walk"))
    res = rerank_contexts(settings, data, retrievers)
    assert not res.rows and not res.claims
    exclusions = same_molecule_exclusions(POOL["key"].tolist())
    for direction, ctx in res.contexts.items():
        assert set(ctx.walked) == {0, 1} and ctx.walked[0].shape == (4, 2)
        for seed, picks in ctx.walked.items():
            for row, i in zip(picks, data.train_idx, strict=True):
                assert not set(row.tolist()) & set(exclusions[i].tolist()), (direction, seed)
        icma, no_rev, no_walk = ARMS["icma"], ARMS["no_reversal"], ARMS["no_random_walk"]
        assert (ctx.train_for(icma, 1) == ctx.walked[1][:, ::-1]).all()  # walked, reversed
        assert (ctx.train_for(no_rev, 1) == ctx.walked[1]).all()  # walked, ranked order
        assert (ctx.train_for(no_walk, 0) == ctx.top_train[:, ::-1]).all()  # top-k, reversed
        assert ctx.train_for(ARMS["direct"], 0) is None and ctx.test_for(ARMS["direct"]) is None
        assert (ctx.test_for(icma) == ctx.test[:, ::-1]).all() and ctx.valid.shape == (2, 2)
        assert ctx.probes["k0"] is None
        assert (ctx.probes["no_reversal"] == ctx.test[data.ablation_idx]).all()
        walked_off = [set(a) != set(b) for a, b in zip(ctx.walked[0], ctx.top_train, strict=True)]
        assert ctx.off_top == pytest.approx(np.mean(walked_off))

    prompts_res = build_prompt_sets(settings, data, res.contexts, tmp_path)
    prompts = prompts_res.prompts
    assert (tmp_path / "tiny-random-llama").is_dir()
    assert prompts_res.fit["mol2cap"] == {"train": 1.0, "test": 1.0}
    p = prompts["cap2mol"]
    assert list(p.arms) == ["icma", "no_tuning", "direct", "no_reversal", "no_random_walk"]
    assert p.arms["icma"].seeds == [0, 1] and p.arms["direct"].seeds == [0]
    assert p.arms["no_tuning"].train == {} and p.arms["no_tuning"].test == p.arms["icma"].test
    assert len(p.arms["icma"].train[0]) == 4 and len(p.arms["icma"].valid) == 2
    assert p.answers[0] == " " + POOL["smiles"][0] and p.valid_answers == [" CCCO", " c1ccccc1O"]
    assert all("Based on the above" not in q for q in p.arms["direct"].train[0])
    assert set(p.probes) == {"no_reversal", "k0"}
    assert p.probes["k0"] == [p.arms["direct"].test[1]]  # k = 0: the bare query
    assert prompts_res.memory.startswith("memory: tiny-random-llama needs about")
    assert f"fp32, LoRA r 32, batch {settings.batch_size} x " in prompts_res.memory

    tuning = fine_tune(settings, prompts, prompts_res.lm_path)
    runs = tuning.runs
    assert runs["arm"].tolist()[:6] == [ICMA, ICMA, NO_TUNING, "direct fine-tuning",
                                        "ICMA without reversal (retrained)",
                                        "ICMA without random walk (retrained)"]  # fmt: skip
    assert not runs["replayed"].any() and len(runs) == 12
    outputs = tuning.outputs["cap2mol"]
    assert [len(o) for o in outputs.values()] == [2, 1, 1, 1, 1]  # one list per training seed
    assert all(len(preds) == 2 for o in outputs.values() for preds in o)
    assert set(tuning.probe_outputs["mol2cap"]) == {
        "ICMA, test-time no reversal (probe)", "ICMA, test-time k = 0 (probe)"
    }  # fmt: skip
    report = tuning.reports["mol2cap"][ICMA][0]
    assert report.curve[0]["step"] == 0 and report.validated  # validated before the first step
    assert report.best_step in [row["step"] for row in report.curve]
    assert tuning.reports["mol2cap"][NO_TUNING] == [None]
    metrics = {(r["method"], r["metric"], r["seed"]) for r in tuning.rows}
    assert {(ICMA, "chosen_step", 1), (ICMA, "valid_loss", 0), (ICMA, "train_tokens", 0),
            (NO_TUNING, "generation_tokens_per_second", 0)} <= metrics  # fmt: skip
    assert "mol2cap ICMA seed 1: " in tuning.training_summary()

    # a re-run replays every trained model from the cache: nothing trains, the outputs are equal
    import molkit.models.lm.train as lm_training

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights are cached")

    monkeypatch.setattr(lm_training, "train_causal_lm", no_training)
    again = fine_tune(settings, prompts, prompts_res.lm_path)
    assert again.outputs == tuning.outputs and again.probe_outputs == tuning.probe_outputs
    assert again.runs.loc[again.runs["train examples"] > 0, "replayed"].all()
    # changed settings miss the cache (and so would train)
    with pytest.raises(AssertionError, match="cached"):
        fine_tune(settings.with_overrides(lr=5e-4), prompts, prompts_res.lm_path)


@pytest.mark.usefixtures("mirror")
def test_load_data_draws_the_notebooks_seeded_subsets():
    from molkit.methods.icma import load_chebi20, load_data

    settings = Settings.for_profile("smoke").with_overrides(seed=3)
    data = load_data(settings).data
    pool, test, _ = load_chebi20("chebi20")
    rng = np.random.default_rng(3)  # draw by draw, in the documented order
    order = rng.permutation(len(pool))
    test_sub = test.iloc[np.sort(rng.choice(len(test), 6, replace=False))]
    test_rv = test.iloc[np.sort(rng.choice(len(test), 200, replace=False))]
    ablation = np.sort(rng.choice(6, 4, replace=False))
    val = np.sort(rng.choice(len(pool), 100, replace=False))
    gin_valid = np.sort(rng.choice(len(pool), round(0.1 * len(pool)), replace=False))
    assert data.lm_valid_idx.tolist() == np.sort(order[:4]).tolist()
    assert data.train_idx.tolist() == np.sort(order[4:12]).tolist()
    assert data.test_lm["id"].tolist() == test_sub["id"].tolist()
    assert data.test_retrieval["id"].tolist() == test_rv["id"].tolist()
    assert data.ablation_idx.tolist() == ablation.tolist() and data.val_idx.tolist() == val.tolist()
    assert data.gin_valid_idx.tolist() == gin_valid.tolist()
    assert data.lm_split == "test subset (6)" and data.retrieval_split == "test (200)"
    assert data.test_ablation["id"].tolist() == test_sub["id"].iloc[ablation].tolist()
    with pytest.raises(TestLabelAccessError):
        data.truth["cap2mol"].read()


@pytest.fixture(scope="module")
def chebi_smoke():
    """Smoke data with Morgan + BM25 retrievers only (no GIN: fast)."""
    import os
    from pathlib import Path

    if not Path(os.environ.get("MOLKIT_DATA_MIRROR", ""), "MANIFEST.csv").exists():
        pytest.skip("no offline data mirror (set MOLKIT_DATA_MIRROR)")
    from molkit.methods.icma import load_data

    settings = Settings.for_profile("smoke").with_overrides(mol_retrievers=("morgan",))
    data = load_data(settings).data
    texts = data.pool["text"].tolist()
    retrievers = Retrievers(
        OkapiBM25Retriever(texts),
        LuceneBM25Retriever(texts),
        {
            "morgan": FingerprintRetriever(data.pool["smiles"].tolist(), "morgan"),
            "random": RandomRetriever(len(data.pool)),
        },
    )
    return settings, data, retrievers


def test_metric_check_and_retrieval_quality(chebi_smoke):
    from molkit.methods.experiment import HOLDS
    from molkit.methods.icma import (
        check_metrics,
        metric_check_table,
        retrieval_baselines,
        retrieval_claims,
    )

    settings, data, retrievers = chebi_smoke
    check = check_metrics(settings, data)
    assert {r["split"] for r in check.rows} == {"test (200)"} and not check.skipped
    table = metric_check_table(check)
    assert abs(table["mol2cap"].loc["rougeL", "difference"]) < 0.03  # ROUGE as MolT5's
    assert table["cap2mol"].loc["validity", "ours"] == pytest.approx(0.79, abs=0.05)
    assert np.isnan(table["cap2mol"].loc["morgan_fts_all", "MolT5 paper"])  # not in the paper
    res = retrieval_baselines(settings, data, retrievers)
    assert retrievers.mol2cap == "morgan" == res.chosen  # auto: the best on validation
    assert res.validation["chosen"].tolist() == [True, False]
    assert res.val_scores["morgan"].mean() > res.val_scores["random"].mean() + 0.1
    assert set(res.bm25_scores) == {"okapi", "lucene"} and res.n_val == 100
    methods = list(dict.fromkeys(r["method"] for r in res.rows))
    assert methods == [
        "retrieval only (morgan)", "retrieval only (random)", "retrieval only (bm25 okapi)",
        "retrieval only (bm25 lucene)", "retrieval only (bm25)",
    ]  # fmt: skip
    assert res.table.loc[("mol2cap", "morgan"), "top1_score"] > 0.5
    assert set(res.example.neighbours) == {"morgan", "random"}
    gate, bm25 = retrieval_claims(settings, res)  # no GIN: no graph-vs-fingerprint row
    assert gate.claim.startswith("mol2cap retrieval: morgan") and gate.verdict == HOLDS
    assert gate.kind == "gate" and gate.n == 100
    assert bm25.kind == "reference" and "official" in bm25.claim


def _tuning(data, outputs, probes):
    from molkit.methods.icma import Tuning

    return Tuning(
        outputs=outputs,
        seeds={m: list(range(len(runs))) for m, runs in outputs["mol2cap"].items()},
        probe_outputs=probes,
    )


def test_evaluate_scores_every_seed_and_gates_every_arm(chebi_smoke):
    from molkit.methods.experiment import HOLDS, NOT_JUDGED
    from molkit.methods.icma import DIRECT, all_claims, evaluate, retrieval_baselines

    settings, data, retrievers = chebi_smoke
    retrieval = retrieval_baselines(settings, data, retrievers)
    n, m = len(data.test_lm), len(data.ablation_idx)
    captions, smiles = data.test_lm["text"].tolist(), data.test_lm["smiles_raw"].tolist()
    outputs = {  # a perfect "ICMA" (two seeds), a poor untuned control, a direct arm of chance
        "mol2cap": {ICMA: [captions, captions[:-1] + ["The molecule."]],
                    NO_TUNING: [["The molecule is a thing."] * n], DIRECT: [["x"] * n]},
        "cap2mol": {ICMA: [smiles, smiles], NO_TUNING: [["not a smiles"] * n],
                    DIRECT: [["C"] * n]},
    }  # fmt: skip
    probes = {
        "mol2cap": {"ICMA, test-time k = 0 (probe)": ["The molecule."] * m},
        "cap2mol": {"ICMA, test-time no reversal (probe)": ["not a smiles"] * m},
    }
    prompts = {d: type("P", (), {"test_context_outputs": [["a", "b"]] * n})() for d in outputs}
    ev = evaluate(settings, data, retrievers, _tuning(data, outputs, probes), prompts)
    mol2cap = ev.directions["mol2cap"]
    assert list(mol2cap.table.index) == [
        ICMA, NO_TUNING, DIRECT, "retrieval only (morgan)", "random pool caption",
        "MolT5-base (published outputs)",
    ]  # fmt: skip
    assert mol2cap.scores[ICMA].shape == (2, n)
    assert mol2cap.scores["random pool caption"].shape == (n,)
    # an arm's table row is the mean over its seeds
    mean_rouge = (1 + mol2cap.scores[ICMA][1].mean()) / 2
    assert mol2cap.table.loc[ICMA, "rougeL"] == pytest.approx(mean_rouge)
    icma_rows = [r for r in ev.rows if r["method"] == ICMA and r["metric"] == "rougeL"]
    assert [r["seed"] for r in icma_rows] == [0, 1]  # one row per training seed
    assert {r["split"] for r in ev.rows} == {f"test subset ({n})", f"test ablation subset ({m})"}
    assert list(mol2cap.probe_table.index) == [ICMA, "ICMA, test-time k = 0 (probe)"]
    assert list(mol2cap.predictions.columns)[0] == "truth"
    assert ev.summary.loc[ICMA, ("cap2mol", "exact_match")] == 1.0

    claims = all_claims(settings, retrieval, ev, scale="toy").claims
    by_text = {c.claim: c for c in claims}
    gate = by_text["mol2cap: ICMA beats a caption drawn at random from the pool"]
    assert gate.kind == "gate" and gate.verdict == HOLDS
    assert (gate.seeds, gate.seeds_baseline) == (2, 1)
    direct_gate = by_text[
        "cap2mol: direct fine-tuning beats a molecule drawn at random from the pool"
    ]
    assert direct_gate.verdict != HOLDS  # "C" is no molecule of ChEBI-20
    versus_direct = by_text[
        "cap2mol: ICMA beats direct fine-tuning of the same LM on the same training pairs"
    ]
    assert versus_direct.verdict == NOT_JUDGED and math_isnan(versus_direct.ours)
    assert versus_direct.kind == "comparison" and direct_gate.claim in versus_direct.gates
    headline = by_text["mol2cap: ICMA beats in-context prompting of the same LM without tuning"]
    assert headline.kind == "comparison" and headline.seeds == 2 and headline.n == n
    molt5 = by_text["mol2cap: ICMA beats MolT5-base's published outputs"]
    assert molt5.paper_value == pytest.approx(0.047)  # 0.625 - 0.578, ROUGE-L
    direct = by_text[
        "mol2cap: ICMA beats direct fine-tuning of the same LM on the same training pairs"
    ]
    assert direct.paper_value == pytest.approx(0.078) and "0.625 vs 0.547" in direct.paper_figure
    probe = by_text["mol2cap: probe: ICMA's context examples help it at test time (k vs k = 0)"]
    assert probe.n == m and probe.paper_figure.startswith("not comparable: a test-time probe")
    # the order of judgement: retrieval, then per direction the gates before the comparisons,
    # the probes last; no row says "holds" or "contradicted" when one of its arms failed its gate
    kinds = [c.kind for c in claims if c.claim.startswith("cap2mol: ")]
    assert kinds == ["gate"] * 4 + ["comparison"] * 4 + ["comparison"]
    gates = {c.claim: c.verdict for c in claims if c.kind == "gate"}
    for c in claims:
        if c.kind == "comparison" and any(gates[g] != HOLDS for g in c.gates):
            assert c.verdict == NOT_JUDGED


def math_isnan(x) -> bool:
    return isinstance(x, float) and x != x


def test_discussion_and_closing_note_are_made_from_the_outputs(chebi_smoke):
    from molkit.methods.icma import all_claims, closing_note, discussion, evaluate

    settings, data, retrievers = chebi_smoke
    retrievers.mol2cap = "morgan"
    n = len(data.test_lm)
    captions, smiles = data.test_lm["text"].tolist(), data.test_lm["smiles_raw"].tolist()
    half = [" ".join(c.split()[: len(c.split()) // 2]) for c in captions]
    outputs = {"mol2cap": {ICMA: [captions, captions], NO_TUNING: [half]},
               "cap2mol": {ICMA: [smiles, smiles], NO_TUNING: [["C"] * n]}}  # fmt: skip
    probes = {"mol2cap": {}, "cap2mol": {}}
    context = {"mol2cap": [[c, "z"] for c in captions], "cap2mol": [[s] for s in smiles]}
    prompts = {d: type("P", (), {"test_context_outputs": context[d]})() for d in outputs}
    ev = evaluate(settings, data, retrievers, _tuning(data, outputs, probes), prompts)
    assert ev.directions["mol2cap"].failures.loc[ICMA, "copies_context"] == 1.0
    from molkit.methods.icma.records import RetrievalSection

    claims = all_claims(settings, RetrievalSection(), ev).claims
    text = discussion(settings, ev, claims)
    assert text.startswith(
        "mol2cap: ICMA copies one of its context captions unedited in 100% of its outputs "
        "(mean over 2 seeds), the untuned LM in 0%."
    )
    assert "tuning adds to the context (ICMA vs the untuned LM on the same prompts): HOLDS" in text
    runs = pd.DataFrame({"arm": [ICMA], "direction": ["mol2cap"], "seed": [0],
                         "tokens trained": [1234], "chosen step": [3.0]})  # fmt: skip
    note = closing_note(
        settings, type("T", (), {"runs": runs})(), 8, n,
        {"precision": "bf16", "threads": 2, "cpu": "AMD EPYC", "minutes": 1.25, "peak_mb": 900},
    )  # fmt: skip
    assert "1,234 tokens trained in all; chosen steps: ICMA mol2cap seed 0: step 3" in note
    assert note.endswith(
        "precision bf16, 2 torch thread(s) on AMD EPYC: 1.2 min in total, peak memory (resident "
        "set) 900 MB"
    )
