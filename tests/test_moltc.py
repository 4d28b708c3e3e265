"""MolTC: settings per profile, pair baselines, CoT targets and parsing, graph tokens in a (tiny,
random) causal LM, and the experiment functions returning rows and claims."""

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.data.pairs import make_pair_split
from molkit.data.splits import subsample
from molkit.methods import moltc
from molkit.methods.experiment import UNDECIDED, Results
from molkit.methods.moltc import experiment as mx
from molkit.models.graph_tokens import (
    GRAPH_TOKEN,
    GraphTokenEncoder,
    QFormerProjector,
    RoleProjectors,
    add_graph_token,
    encode_graph_examples,
)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "O", "CCCl", "c1ccncc1", "CC(C)=O"]

# ---------------------------------------------------------------- settings


def test_settings_profiles_and_overrides():
    smoke, default, full = (moltc.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert smoke.lm_model == "tiny-random-llama" and smoke.seeds == (0,) and smoke.ddi_rows == 1200
    assert smoke.regression_sets == ("freesolv-pairs", "combisolu") and smoke.gin_min_steps == 0
    assert default.lm_model == "smollm2-135m-instruct" and default.seeds == (0, 1, 2)
    assert default.ddi_rows is None and default.lm_train_pairs == 384 and default.num_beams == 1
    assert default.lm_pretrain_pairs == 0 and default.lm_test_pairs == 200
    assert default.lm_variants == ("MolTC", moltc.SMILES_ONLY) and default.role_set == "combisolu"
    assert default.ddi_variants == ("MolTC",) and default.lm_freesolv_epochs == 6.0
    assert default.lm_role_epochs == 0.75 and full.lm_role_epochs == 5.0
    assert default.swap_pairs == 100 and full.swap_pairs is None
    assert smoke.ddi_variants == full.ddi_variants == ("MolTC", moltc.SMILES_ONLY)
    assert (default.gin_hidden, default.gin_layers, default.gin_patience) == (128, 4, 10)
    assert full.lm_model == "facebook/galactica-1.3b" and full.num_beams == 5
    assert full.lm_train_pairs is None and full.lm_pretrain_pairs > 0
    assert "MolTC, no pre-training" in full.lm_variants
    changed = smoke.with_overrides(lm_model=None, lm_train_pairs=16, seed=None)
    assert changed.lm_model == "tiny-random-llama" and changed.lm_train_pairs == 16
    assert smoke.with_overrides(seeds=[0, 1]).seeds == (0, 1)
    with pytest.raises(ValueError, match="no setting 'lm'; valid settings: seed, ddi_rows"):
        smoke.with_overrides(lm="x")
    with pytest.raises(TypeError, match="lm_lr must be float"):
        smoke.with_overrides(lm_lr="fast")
    with pytest.raises(FrozenInstanceError):
        smoke.seed = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="must hold 'MolTC'"):
        smoke.with_overrides(lm_variants=("SMILES only (same LM, no graph tokens)",))
    with pytest.raises(ValueError, match="unknown: \\['MolTC, bigger'\\]"):
        smoke.with_overrides(role_variants=("MolTC", "MolTC, bigger"))
    with pytest.raises(ValueError, match="ddi_variants must hold 'MolTC'"):
        smoke.with_overrides(ddi_variants=(moltc.SMILES_ONLY,))
    with pytest.raises(ValueError, match="needs lm_pretrain_pairs > 0"):
        smoke.with_overrides(lm_variants=("MolTC", "MolTC, no pre-training"))
    with pytest.raises(ValueError, match="role_set must be a regression pair set"):
        smoke.with_overrides(role_set="chchminer")


def test_lm_variants_change_one_factor_from_moltc():
    for pretrained in (False, True):
        variants = moltc.lm_variants(pretrained)
        main = variants["MolTC"]
        assert main.pretrained is pretrained and main.graph and main.cot and not main.shared
        for name, v in variants.items():
            changed = [f for f in ("graph", "cot", "pretrained", "shared", "init")
                       if getattr(v, f) != getattr(main, f)]  # fmt: skip
            assert len(changed) == (0 if name == "MolTC" else 1), (name, changed)
    assert "MolTC, no pre-training" not in moltc.lm_variants(False)
    assert moltc.LM_VARIANTS == moltc.lm_variants(True)


def test_gbm_params_follow_the_set_size():
    settings = moltc.Settings.for_profile("default")
    small, large = moltc.gbm_params(settings, 642), moltc.gbm_params(settings, 17000)
    assert small == {"max_iter": 3000, "learning_rate": 0.03, "num_leaves": 15,
                     "min_child_samples": 5, "colsample": 0.3, "patience": 200}  # fmt: skip
    assert large["num_leaves"] == 63 and large["learning_rate"] == 0.1 and large["patience"] == 100


# ---------------------------------------------------------------- pair baselines


def test_pair_fingerprints_layout():
    extra = np.array([300.0, 310.0])
    x = moltc.pair_fingerprints(["CCO", "c1ccccc1"], ["O", "CCO"], n_bits=64, extra=extra)
    assert x.shape == (2, 129) and x.dtype == np.float32
    assert np.array_equal(x[0, :64], x[1, 64:128])  # CCO as molecule 1, then as molecule 2
    assert list(x[:, -1]) == [300.0, 310.0]
    from molkit.chem import morgan_counts, rdkit_descriptors

    x = moltc.pair_fingerprints(["CCCO", "c1ccccc1"], ["O", "CCO"], n_bits=64, counts=True,
                                descriptors=True)  # fmt: skip
    desc = rdkit_descriptors(["CCCO", "O"], progress=False)
    d = desc.shape[1]
    assert x.shape == (2, 2 * (64 + d)) and d > 200
    # molecule 1: counts, then its descriptors; molecule 2 likewise
    assert np.array_equal(x[0, :64], morgan_counts(["CCCO"], n_bits=64, progress=False)[0])
    assert x[0, :64].max() > 1  # counts, not bits (CCCO has repeated CH2 environments)
    np.testing.assert_array_equal(x[0, 64 : 64 + d], desc[0])
    np.testing.assert_array_equal(x[0, 128 + d :], desc[1])  # water as molecule 2


def test_pair_graphs_and_pair_gin_roles():
    from torch_geometric.data import Batch

    graphs = moltc.pair_graphs(["CCO", "c1ccccc1O"], ["c1ccccc1O", "CCO"])
    assert graphs[0].num_nodes == 10 and graphs[0].role.tolist() == [0] * 3 + [1] * 7
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    for combine, invariant in (("symmetric", True), ("concat", False), ("interaction", False)):
        model = moltc.PairGIN(1, combine=combine, hidden=16, num_layers=2).eval()
        out = model(batch)
        assert out.shape == (2, 1)
        assert torch.allclose(out[0], out[1], atol=1e-5) == invariant
    dense, mask = moltc.pair_node_embeddings(model.gin, batch)
    assert dense.shape == (2, 2, 7, 16)
    assert mask.sum(-1).tolist() == [[3, 7], [7, 3]]
    with pytest.raises(ValueError, match="combine"):
        moltc.PairGIN(1, combine="max")


def test_pair_gin_interaction_layer_masks_padding_and_reads_the_partner():
    from torch_geometric.data import Batch

    torch.manual_seed(0)
    model = moltc.PairGIN(1, combine="interaction", hidden=16, num_layers=2).eval()
    graphs = moltc.pair_graphs(["CCO", "CCO", "CC(=O)Oc1ccccc1C(=O)O"], ["O", "CCCCCCO", "O"])
    with torch.no_grad():
        alone = model(Batch.from_data_list(graphs[:1]))
        batched = model(Batch.from_data_list(graphs))
        h = model.interaction_embeddings(Batch.from_data_list(graphs))
    # padding atoms (pair 1 is padded to aspirin's 13 atoms in the batch) change nothing
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)
    assert h.shape == (3, 2, 32)
    # same solute, another solvent: the solute's pooled features change through the interaction
    # map (the second half), its own atoms' half does not
    assert not torch.allclose(h[0, 0, 16:], h[1, 0, 16:], atol=1e-4)
    torch.testing.assert_close(h[0, 0, :16], h[1, 0, :16])


def test_fit_pair_gin_learns_a_separable_toy_task():
    a = ["CCO", "CCCO", "CCN", "CCCN"] * 6
    b = ["O"] * 24
    y = np.array([1.0 if s.endswith("O") else 0.0 for s in a])
    graphs = moltc.pair_graphs(a, b)
    fitted = moltc.fit_pair_gin(
        graphs, y, graphs, y, hidden=16, num_layers=2, epochs=20, lr=1e-2, batch_size=12,
        patience=20, progress=False,
    )  # fmt: skip
    pred = fitted.predict(graphs)
    assert ((pred > 0.5) == (y > 0.5)).mean() == 1.0


def test_fit_pair_gin_min_steps_raises_the_epochs_of_a_small_set():
    graphs = moltc.pair_graphs(["CCO", "CCN"] * 4, ["O"] * 8)
    y = np.arange(8, dtype=float)
    kw = {"task": "regression", "hidden": 8, "num_layers": 1, "batch_size": 4, "patience": 100}
    fitted = moltc.fit_pair_gin(graphs, y, graphs, y, epochs=1, progress=False, min_steps=10, **kw)
    assert len(fitted.history.records) == 5  # 2 batches an epoch: 5 epochs hold 10 steps
    fitted = moltc.fit_pair_gin(graphs, y, graphs, y, epochs=3, progress=False, min_steps=2, **kw)
    assert len(fitted.history.records) == 3  # never fewer epochs than asked


def _ddi_frame(n_repeats=5):
    df = pd.DataFrame({"smiles_1": SMILES * n_repeats, "smiles_2": SMILES[::-1] * n_repeats})
    df["label"] = [float(i % 2) for i in range(len(df))]
    return df


def test_run_baselines_rows_and_predictions():
    df = _ddi_frame()
    split = make_pair_split(df, "random", seed=0, fractions=(0.5, 0.25, 0.25))
    assert len(set(df.label.iloc[split["test"]])) == 2
    settings = moltc.Settings.for_profile("smoke").with_overrides(n_bits=32, gbm_iter=5)
    rows, preds = moltc.run_baselines(df, split, moltc.TASKS["chchminer"], settings, gin=False)
    assert set(preds) == {"per-drug prior (no chemistry)", "Morgan + gradient boosting"}
    assert all(len(p) == len(split["test"]) for p in preds.values())
    assert set(rows.metric) == {"accuracy", "roc_auc", "f1", "seconds"}
    # the prior is the product of the two drugs' training positive rates (shrunk to the global rate)
    from molkit.methods.baselines import DrugPrior

    tr, te = split["train"], split["test"]
    pairs = list(zip(df.smiles_1, df.smiles_2, strict=True))
    prior = DrugPrior().fit([pairs[i] for i in tr], df.label.iloc[tr])
    expected = prior.predict_proba([pairs[i] for i in te])[:, 1]
    assert np.array_equal(preds["per-drug prior (no chemistry)"], expected)
    # regression: the training mean
    fs = pd.DataFrame({"smiles_1": SMILES * 3, "smiles_2": ["O"] * 24, "freesolv": np.arange(24.0)})
    split = make_pair_split(fs, "random", seed=0)
    rows, preds = moltc.run_baselines(fs, split, moltc.TASKS["freesolv-pairs"], settings, gbm=False,
                                      gin=False)  # fmt: skip
    assert np.all(preds["training mean"] == fs.freesolv.iloc[split["train"]].mean())
    assert set(rows.metric) == {"mae", "rmse", "r2", "seconds"}


def test_gbm_features_computed_once_give_the_same_baseline():
    task = moltc.TASKS["freesolv-pairs"]
    fs = pd.DataFrame({"smiles_1": SMILES * 3, "smiles_2": ["O"] * 24, "freesolv": np.arange(24.0)})
    settings = moltc.Settings.for_profile("smoke").with_overrides(n_bits=32, gbm_iter=5)
    features = moltc.gbm_features(fs, task, settings)
    assert features.shape[0] == len(fs)
    for seed in (0, 1):
        split = make_pair_split(fs, "random", seed=seed)
        _, fresh = moltc.run_baselines(fs, split, task, settings, seed=seed, gin=False)
        _, reused = moltc.run_baselines(fs, split, task, settings, seed=seed, gin=False,
                                        features=features)  # fmt: skip
        assert np.array_equal(fresh["Morgan + gradient boosting"],
                              reused["Morgan + gradient boosting"])  # fmt: skip
    with pytest.raises(ValueError, match="24 pairs; pass features=gbm_features"):
        moltc.run_baselines(fs, split, task, settings, gin=False, features=features[:5])


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for n in (4, 17, 64):
        y = np.r_[0.0, 1.0, rng.integers(0, 2, n - 2)]
        p = np.round(rng.random(n), 1)  # ties
        assert mx.roc_auc_fast(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert math.isnan(mx.roc_auc_fast(np.ones(3), np.arange(3.0)))


# ---------------------------------------------------------------- CoT targets and parsing


def test_cot_targets_and_ranges():
    assert moltc.value_range(-3.87, 0.5) == (-4.0, -3.5)
    assert moltc.value_range(355.0, 10) == (350.0, 360.0)
    text = moltc.regression_target(-3.87, 0.5, quantity="The hydration free energy")
    assert text == (
        "The hydration free energy is above -4 and below -3.5, so the accurate value is -3.87."
    )
    assert moltc.regression_target(412.0, 10, decimals=0) == (
        "The value is above 410 and below 420, so the accurate value is 412."
    )
    assert moltc.regression_target(1.5, cot=False) == "The accurate value is 1.5."
    with pytest.raises(ValueError):
        moltc.regression_target(float("nan"))
    assert moltc.parse_value(text) == pytest.approx(-3.87)


def test_parse_value_is_robust_and_counts_failures():
    cases = {
        "The value is above -4 and below -3.5, so the accurate value is -3.87.": -3.87,
        "above \u22124 and below \u22123.5, so the accurate value is \u22123.9": -3.9,  # minus
        "The value is above 410 and below 420, so the": 415.0,  # truncated: middle of the range
        "I think about 1,234.5 nm": 1234.5,
        "accurate value is 2e-1": 0.2,
        "no number here": None,
        "": None,
        "accurate value is 1e999": None,  # overflow is not a value
    }
    for text, expected in cases.items():
        got = moltc.parse_value(text)
        assert (got is None and expected is None) or got == pytest.approx(expected), text
    values, n_bad = moltc.parse_values(list(cases))
    assert n_bad == 3 and np.isnan(values).sum() == 3
    assert moltc.parse_value(None) is None


def test_parse_ddi_answer():
    assert moltc.parse_ddi_answer(moltc.DDI_ANSWERS[1]) == 1
    assert moltc.parse_ddi_answer(moltc.DDI_ANSWERS[0]) == 0
    assert moltc.parse_ddi_answer("no") == 0 and moltc.parse_ddi_answer("Yes.") == 1
    assert moltc.parse_ddi_answer("C1=CC=CC") is None


def test_pretrain_target_states_properties_of_both_molecules():
    text = moltc.pretrain_target("CC(=O)O", "c1ccccc1O")
    assert text.startswith("Molecule 1: molecular weight 60.1, logP 0.091")
    assert "carboxylic acid" in text and "Molecule 2:" in text and "phenolic hydroxyl" in text
    assert math.isfinite(moltc.parse_value("molecular weight 60.1"))


def test_prompts_and_answers_per_row():
    task = moltc.TASKS["combisolu"]
    df = pd.DataFrame(
        {"smiles_1": ["CCO"], "smiles_2": ["O"], "logS": [-1.23], "temperature": [298.2]}
    )
    (prompt,) = moltc.task_prompts(task, df, n_graph_tokens=2, max_smiles_chars=2)
    assert prompt.startswith("Solute: CC... <graph><graph>\nSolvent: O <graph><graph>\n")
    assert "at 298 K?" in prompt and prompt.endswith("Answer:")
    (swapped,) = moltc.task_prompts(task, df, 0, None, swap=True)
    assert swapped.startswith("Solute: O\nSolvent: CCO\n")
    assert moltc.task_answers(task, df, cot=False) == ["The accurate value is -1.23."]
    ddi = pd.DataFrame({"smiles_1": ["A"], "smiles_2": ["B"], "label": [1.0]})
    assert moltc.task_answers(moltc.TASKS["chchminer"], ddi) == [moltc.DDI_ANSWERS[1]]
    out = moltc.swap_consistency("classification", np.array([0.2, 0.7]), np.array([0.4, 0.3]))
    assert out == {"swap_mean_abs_change": pytest.approx(0.3), "swap_label_agreement": 0.5}


# ---------------------------------------------------------------- graph tokens in a tiny random LM


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from molkit.models.lm import load_lm, save_tiny_random_lm

    corpus = [
        moltc.pair_prompt(a, b, "Do these two drugs interact?") for a in SMILES for b in SMILES[:3]
    ]
    corpus += list(moltc.DDI_ANSWERS) + [moltc.regression_target(v) for v in (-3.2, 1.7, 0.4)]
    path = save_tiny_random_lm(
        tmp_path_factory.mktemp("lm") / "tiny", corpus, hidden=32, layers=1, heads=2
    )
    torch.manual_seed(0)
    model, tokenizer = load_lm(path, device="cpu")
    graph_id = add_graph_token(model, tokenizer)
    return model, tokenizer, graph_id


def _graph_encoder(hidden, n_query=2):
    from molkit.models.gnn import GIN

    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=16)
    proj = QFormerProjector(
        atom_dim=16, out_dim=hidden, n_query=n_query, hidden=8, heads=2, n_layers=1, dropout=0.0
    )
    roles = RoleProjectors(proj, shared=False)
    with torch.no_grad():
        roles.projectors[1].queries.add_(1.0)  # as after role-specific fine-tuning
    return GraphTokenEncoder(gin, roles)


def test_pair_prompt_places_graph_tokens_after_each_molecule():
    prompt = moltc.pair_prompt("CCO", "O", "Q?", n_graph_tokens=3, max_smiles_chars=2)
    assert "CC..." in prompt and prompt.count(GRAPH_TOKEN) == 6
    graph = "<graph>" * 3
    assert prompt == f"Molecule 1: CC... {graph}\nMolecule 2: O {graph}\nQ?\nAnswer:"


def _alone(model, tokenizer, graph, graph_id, prompt, pair, answer) -> float:
    """The log-likelihood of ``answer`` (EOS included) after one pair prompt, from one unpadded
    forward with the graph tokens spliced in (no cache, no batch)."""
    from molkit.models.lm import splice_embeddings

    (e,) = encode_graph_examples(tokenizer, [prompt], [answer], graph_id)
    ids = torch.tensor([e.input_ids])
    with torch.no_grad():
        if graph is not None:
            embeds = splice_embeddings(model, ids, [e.extra_positions], graph([pair]))
            logits = model(inputs_embeds=embeds).logits[0]
        else:
            logits = model(ids).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(float(logp[t - 1, e.input_ids[t]]) for t in range(e.prompt_length, len(e.input_ids)))


@pytest.mark.parametrize("with_graph", [True, False])
def test_candidates_share_one_prompt_pass_and_score_as_alone(tiny_lm, with_graph):
    """MolTC's DDI answers through the toolkit's shared-prompt scorer equal each (prompt, answer)
    scored on its own, graph tokens spliced in or not; P(interaction) is their softmax."""
    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size).eval() if with_graph else None
    pairs = [("CCO", "O"), ("CCN", "CCO"), ("c1ccccc1", "CC(=O)O"), ("C", "O")]
    n_tokens = 2 if with_graph else 0
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=n_tokens) for a, b in pairs]
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) > 1  # left padding is exercised
    candidates = [*moltc.DDI_ANSWERS, "No."]
    got = moltc.candidate_scores(
        model, tokenizer, prompts, candidates, pairs, graph, graph_id, batch_size=3,
        progress=False,
    ).log_likelihood  # fmt: skip
    assert got.shape == (4, 3)
    for i in range(4):
        for k, c in enumerate(candidates):
            alone = _alone(model, tokenizer, graph, graph_id, prompts[i], pairs[i], c)
            assert got[i, k] == pytest.approx(alone, rel=1e-4, abs=1e-4)
    probs = moltc.score_ddi(
        model, tokenizer, prompts, pairs, graph, graph_id, batch_size=3, progress=False
    )
    expected = 1.0 / (1.0 + np.exp(got[:, 0] - got[:, 1]))
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    assert np.all((probs > 0) & (probs < 1))
    with pytest.raises(ValueError, match="no candidate"):
        moltc.candidate_scores(model, tokenizer, prompts, [], progress=False)


def test_train_pair_lm_lowers_the_answer_loss_and_generates(tiny_lm):
    from molkit.models.lm import TrainConfig, validation_loss

    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size)
    pairs = [("CCO", "O"), ("CCN", "O")] * 4
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=2) for a, b in pairs]
    answers = [moltc.regression_target(v) for v in (-3.2, 1.7) * 4]
    examples = encode_graph_examples(tokenizer, prompts, answers, graph_id)

    def loss() -> float:
        graph.eval()
        extra = lambda idx: graph([pairs[i] for i in idx])  # noqa: E731
        return validation_loss(model, examples, tokenizer.pad_token_id, extra)

    before = loss()
    queries_before = graph.projectors.projectors[0].queries.detach().clone()
    config = TrainConfig(epochs=6, lr=3e-3, batch_size=4, precision="fp32")
    report = moltc.train_pair_lm(
        model, tokenizer, prompts, answers, pairs, graph, config, graph_id, progress=False
    )
    assert loss() < before and report.tokens > 0
    assert not torch.equal(queries_before, graph.projectors.projectors[0].queries)  # it trained
    with pytest.raises(ValueError, match="graph_token_id"):
        moltc.train_pair_lm(model, tokenizer, prompts, answers, pairs, graph, config, None)
    gen = (model, tokenizer, prompts[:2], pairs[:2], graph, graph_id)
    texts = moltc.generate_pair_answers(*gen, max_new_tokens=6, progress=False)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    # the official 5-beam decoding, smaller
    beams = moltc.generate_pair_answers(*gen, max_new_tokens=6, progress=False, num_beams=3)
    assert len(beams) == 2 and all(isinstance(t, str) for t in beams)


@pytest.mark.slow  # loads minilm-l6 for the projector's initialisation
def test_pair_lm_session_runs_variants_from_saved_states(tmp_path):
    from molkit.models.gnn import GIN
    from molkit.models.lm import SMOKE_LM, resolve_lm

    task = moltc.TASKS["freesolv-pairs"]
    df = pd.DataFrame(
        {"smiles_1": SMILES, "smiles_2": ["O"] * len(SMILES), "freesolv": np.linspace(-5, 1, 8)}
    )
    corpus = moltc.task_prompts(task, df, 8, 16) + moltc.task_answers(task, df)
    corpus += list(moltc.DDI_ANSWERS)
    path = resolve_lm(SMOKE_LM, corpus, tmp_path, vocab_size=384, hidden=64, layers=2, heads=4)
    settings = moltc.Settings.for_profile("smoke").with_overrides(projector_layers=1)
    torch.manual_seed(0)
    cache = tmp_path / "adapters"
    session = moltc.PairLMSession(
        path, GIN(num_layers=1, hidden=8), settings, progress=False, cache=str(cache)
    )
    variant = moltc.LM_VARIANTS["MolTC"]
    with pytest.raises(RuntimeError, match="pretrain"):
        session.run("MolTC", variant, task, df.iloc[:4], df.iloc[4:6])
    report = session.pretrain(SMILES, SMILES, 2)
    assert report.tokens > 0 and True in session.pretrained and session.pretrain_report is report
    smiles_only = moltc.LM_VARIANTS[moltc.SMILES_ONLY]
    with pytest.raises(RuntimeError, match="graph_tokens=False"):  # its own pre-training
        session.run("SMILES", smiles_only, task, df.iloc[:4], df.iloc[4:6])
    out = session.run("MolTC", variant, task, df.iloc[:4], df.iloc[4:6], swap=True)
    assert out["y_pred"].shape == (2,) and len(out["texts"]) == 2 and 0 <= out["n_unparsed"] <= 2
    assert out["y_pred_swapped"].shape == (2,) and set(out["metrics"]) == {"mae", "rmse", "r2"}
    assert not out["report"].replayed
    # several named test sets: one trained model scored on each, swapped where asked; the second
    # run of the same training replays the cached weights and predicts the same
    tests = {"a": df.iloc[4:6], "b": df.iloc[6:8]}
    again = session.run("MolTC", variant, task, df.iloc[:4], tests, swap=["b"], swap_pairs=1)
    assert again["report"].replayed and set(again["tests"]) == {"a", "b"}
    np.testing.assert_array_equal(again["tests"]["a"]["y_pred"], out["y_pred"])
    assert "y_pred_swapped" in again["tests"]["b"] and "y_pred_swapped" not in again["tests"]["a"]
    # swap_pairs: only a seeded sample of the set is scored swapped, its rows named
    b = again["tests"]["b"]
    assert b["y_pred_swapped"].shape == (1,) and len(b["swap_rows"]) == 1 and len(b["y_pred"]) == 2
    # a variant without pre-training starts again from the initial adapters
    session.load_adapter_state(session.initial_state)
    assert all(torch.equal(v, session.initial_state[k]) for k, v in session.adapter_state().items())
    plain = moltc.lm_variants(pretrained=False)[moltc.SMILES_ONLY]
    out = session.run("SMILES", plain, task, df.iloc[:4], df.iloc[4:6])
    assert "y_pred_swapped" not in out and not out["report"].replayed


# ---------------------------------------------------------------- experiment functions


def _settings():
    return moltc.Settings.for_profile("smoke").with_overrides(
        n_bits=32, gbm_iter=5, gin_hidden=8, gin_layers=1, seeds=(0, 1)
    )


def test_ddi_upstream_records_the_overlap_of_each_part(mirror):
    res = moltc.ddi_upstream(moltc.Settings.for_profile("smoke"))
    frame = res.frame()
    assert len(res.artefacts["ddi"]) == 1200 and len(frame) == 3 * len(mx.OVERLAP_METRICS)
    assert frame.metric.tolist()[:2] == ["train: pairs", "train: repeated_conflicting"]
    assert set(frame.split) == {"upstream"} and set(frame.method) == {"data"}
    overlap = res.artefacts["overlap"].set_index("part")
    assert overlap.loc["train", "pairs"] == frame.value.iloc[0]


def test_ddi_sections_return_rows_in_the_recorded_order():
    rng = np.random.default_rng(0)
    drugs = SMILES + ["CCCC", "CC(C)O", "OCCO", "CCOC", "c1ccccc1", "CC#N", "CCS", "NCCO"]
    pairs = {tuple(sorted(rng.choice(drugs, 2, replace=False))) for _ in range(150)}
    ddi = pd.DataFrame(sorted(pairs), columns=["smiles_1", "smiles_2"])
    ddi["label"] = rng.integers(0, 2, len(ddi)).astype(float)
    ddi["split"] = rng.choice(["train", "valid", "test"], len(ddi), p=[0.7, 0.15, 0.15])
    settings = _settings()
    data = Results(artefacts={"ddi": ddi, "split": make_pair_split(ddi, "upstream")})
    data = (
        mx.ddi_upstream.__wrapped__(settings, ddi)
        if hasattr(mx.ddi_upstream, "__wrapped__")
        else data
    )
    upstream = moltc.upstream_baselines(settings, data)
    frame = upstream.frame()
    assert list(frame.note.unique()) == ["test part", "baseline wall time (s)"]
    assert set(frame.method) == {"per-drug prior (no chemistry)", "Morgan + gradient boosting"}
    cold = moltc.drug_cold(settings, data)
    frame = cold.frame()
    assert list(frame.metric[:5]) == [f"dedup: {k}" for k in cold.artefacts["dedup"]]
    assert set(frame[frame.seed == 1].method) == {"per-drug prior (no chemistry)"}
    assert "pair GIN" in set(frame[frame.seed == 0].method)
    assert set(cold.artefacts["splits"]) == {0, 1} and len(cold.artefacts["y_test"]) > 0
    both = moltc.both_unseen(settings, cold)
    assert set(both.frame().split) == {"drug_cold_both"} and not both.claims
    with pytest.raises(ValueError, match="not among seeds"):
        moltc.drug_cold(settings.with_overrides(seed=5), data)


class _FakeSession:
    """A stand-in for `PairLMSession`: known predictions per variant (and, swapped, per variant
    in ``swapped``), no LM."""

    def __init__(self, predictions, swapped=None):
        self.predictions, self.swapped = predictions, swapped or {}

    def run(self, name, variant, task, train, tests, swap=(), epochs=1.0, swap_pairs=None):
        from molkit.data.splits import subsample
        from molkit.eval.metrics import task_metrics

        report = type("Report", (), {"tokens_per_second": 100.0})()
        out = {"name": name, "report": report, "tests": {}}
        for set_name, test in tests.items():
            y = test[task.target].to_numpy(dtype=float)
            p = self.predictions[name](y)
            got = {"y_true": y, "y_pred": p, "pairs_per_s": 10.0, "n_unparsed": 0,
                   "metrics": task_metrics(task.kind, y, p),
                   "texts": [f"The accurate value is {v:.2f}." for v in p]}  # fmt: skip
            if set_name in swap:
                rows = got["swap_rows"] = subsample(len(y), swap_pairs, 0)
                got["y_pred_swapped"] = self.swapped.get(name, self.predictions[name])(y[rows])
            out["tests"][set_name] = got
        return out


def _pair_frame(n, rng, target, solvents):
    return pd.DataFrame({"smiles_1": [f"C{'C' * (i % 7)}O" for i in range(n)],
                         "smiles_2": [solvents[i % len(solvents)] for i in range(n)],
                         target: rng.normal(size=n), "temperature": 298.0})  # fmt: skip


def test_lm_gate_withholds_comparisons_between_variants_that_fail_it():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    settings = moltc.Settings.for_profile("smoke")
    task = moltc.TASKS["freesolv-pairs"]
    mean = ("training mean", np.zeros_like(y))
    good = y + rng.normal(scale=0.3, size=200)
    better = y + rng.normal(scale=0.1, size=200)
    near_mean = 0.05 * y  # learnt almost nothing, but lands closer than the mean
    gates, comparisons = moltc.lm_gate_and_comparisons(
        settings, task, "toy", y, {"MolTC": better, moltc.SMILES_ONLY: good}, mean
    )
    assert [g.verdict for g in gates] == ["holds", "holds"]
    assert [c.verdict for c in comparisons] == ["holds"]
    assert comparisons[0].claim.startswith("graph tokens beat SMILES only")
    assert comparisons[0].detail.endswith("every arm passes its gate")
    gates, comparisons = moltc.lm_gate_and_comparisons(
        settings, task, "toy", y, {"MolTC": near_mean, moltc.SMILES_ONLY: np.zeros_like(y)}, mean
    )
    assert gates[0].verdict == "holds" and gates[1].verdict == UNDECIDED  # the mean itself
    assert comparisons[0].verdict == "not judged" and math.isnan(comparisons[0].ours)
    assert "gate undecided: SMILES only" in comparisons[0].detail
    assert "MolTC beats" not in comparisons[0].detail  # only the failed gate is named
    # the CoT comparison is for regression only; variants that did not run get no comparison
    ddi = moltc.TASKS["chchminer"]
    labels = (y > 0).astype(float)
    preds = {"MolTC": labels * 0.6 + 0.2, "MolTC, no CoT": np.full(200, 0.5)}
    _, comparisons = moltc.lm_gate_and_comparisons(
        settings, ddi, "toy", labels, preds, ("chance", np.full(200, 0.5))
    )
    assert comparisons == []


def test_lm_sections_gate_then_compare_on_the_same_pairs():
    rng = np.random.default_rng(0)
    n = 200
    settings = moltc.Settings.for_profile("smoke")
    fs = _pair_frame(n, rng, "freesolv", ["O"])
    lm_sets = {"freesolv-pairs": (fs, fs, {"grouped (LM test pairs)": fs.iloc[:120]}, fs)}
    noise = {"MolTC": 0.1, moltc.SMILES_ONLY: 0.5}
    session = _FakeSession(
        {m: (lambda y, s=s: y + rng.normal(scale=s, size=len(y))) for m, s in noise.items()}
    )
    pretraining = Results(artefacts={"session": session, "lm_sets": lm_sets})
    res = moltc.freesolv_lm(settings, pretraining)
    assert [c.verdict for c in res.claims] == ["holds", "holds", "holds"]
    assert res.claims[0].claim == "MolTC beats training mean (freesolv-pairs, grouped split)"
    assert res.claims[2].claim.startswith("graph tokens beat SMILES only")
    table = res.artefacts["tables"]["grouped (LM test pairs)"]
    assert list(table.index) == ["training mean", "Morgan + gradient boosting", "MolTC",
                                 moltc.SMILES_ONLY]  # fmt: skip
    assert table.loc["MolTC", "distinct answers"] == 120 and len(res.artefacts["cot_examples"]) == 6
    frame = res.frame()
    assert set(frame.split) == {"grouped (LM test pairs)"}
    assert frame[frame.method == "MolTC"].note.iloc[0] == (
        f"LM fine-tuned on {n} pairs (1 epochs); 120 test pairs"
    )
    # the role test on a set whose second molecule varies: both variants scored swapped
    cs = _pair_frame(n, rng, "logS", ["O", "CCO", "CC(C)=O", "ClCCl"])
    lm_sets["combisolu"] = (cs, cs, {"random (LM test pairs)": cs.iloc[:100]}, cs)
    session = _FakeSession(
        {"MolTC": lambda y: y + 0.05, "MolTC, shared projector": lambda y: 0.0 * y},
        swapped={"MolTC": lambda y: y - 1.0, "MolTC, shared projector": lambda y: 0.0 * y},
    )
    pretraining.artefacts["session"] = session
    role = moltc.role_lm(settings, pretraining)
    swap = role.frame().query("metric == 'swap_mean_abs_change'").set_index("method").value
    assert swap["MolTC"] == pytest.approx(1.05) and swap["MolTC, shared projector"] == 0.0
    # the swap test on a sample of the pairs: the swapped answers meet their own rows' answers
    session.swapped["MolTC"] = lambda y: 2.0 * y
    sampled = moltc.role_lm(settings.with_overrides(swap_pairs=40), pretraining).frame()
    rows = subsample(100, 40, 0)
    y = cs.iloc[:100]["logS"].to_numpy()[rows]
    got = sampled.query("method == 'MolTC'").set_index("metric").value
    assert got["swap pairs"] == 40 and got["swap_mean_abs_change"] == pytest.approx(
        np.mean(np.abs(y + 0.05 - 2.0 * y))
    )
    assert [c.verdict for c in role.claims] == ["holds", UNDECIDED, "not judged"]
    assert role.claims[2].claim.startswith("role-separated projectors beat one shared projector")
    lines = moltc.findings(res + role, settings)
    assert any(
        line.startswith("Not judged (an arm fails its gate): role-separated") for line in lines
    )
    assert any("Swap test on combisolu" in line and "MolTC: 1.05" in line for line in lines)
    # the FreeSolv baseline's spread over split seeds, beside the outside figure
    gbm = Results()
    for seed, value in ((0, 1.2), (1, 0.9)):
        gbm.add_row("freesolv-pairs", "Morgan + gradient boosting", "rmse", value, seed, "random")
    line = next(x for x in moltc.findings(gbm, settings) if "by split seed" in x)
    assert "seed 0: 1.200, seed 1: 0.900 (a spread of 0.300)" in line and "0.850 ± 0.015" in line


def test_ddi_lm_gates_against_chance_and_the_prior():
    n = 120
    train = pd.DataFrame({"smiles_1": ["C" * (i % 20 + 1) + "O" for i in range(n)],
                          "smiles_2": ["CCl"] * n,
                          "label": (np.arange(n) % 2).astype(float)})  # fmt: skip
    both_unseen = pd.DataFrame({"smiles_1": ["C" * (i % 40 + 1) + "N" for i in range(n)],
                                "smiles_2": ["c1ccccc1"] * n,
                                "label": (np.arange(n) % 2).astype(float)})  # fmt: skip
    one_unseen = both_unseen.assign(smiles_2="CCl")
    tests = {mx.LM_BOTH_UNSEEN: both_unseen, mx.LM_ONE_UNSEEN: one_unseen}
    probs = {"MolTC": lambda y: 0.6 * y + 0.2, moltc.SMILES_ONLY: lambda y: np.full(len(y), 0.5)}
    session = _FakeSession(probs)
    pretraining = Results(
        artefacts={"session": session, "lm_sets": {"chchminer": (train, train, tests, train)}}
    )
    settings = moltc.Settings.for_profile("smoke").with_overrides(n_bits=32)
    assert settings.ddi_swap and not moltc.Settings().ddi_swap
    res = moltc.ddi_lm(settings, pretraining)
    gates = res.claims_frame().set_index("claim").verdict
    assert gates["MolTC beats chance (constant score) (chchminer, both drugs unseen)"] == "holds"
    prior = "MolTC beats per-drug prior (no chemistry) (chchminer, one drug unseen)"
    assert gates[prior] == "holds"  # CCl's training rate is one number for every test pair
    assert res.claims[-1].verdict == "not judged"  # SMILES only is a constant score
    assert res.artefacts["tables"][mx.LM_BOTH_UNSEEN].loc["MolTC", "swap_label_agreement"] == 1.0
    unswapped = moltc.ddi_lm(settings.with_overrides(ddi_swap=False), pretraining)
    assert "swap_label_agreement" not in unswapped.artefacts["tables"][mx.LM_BOTH_UNSEEN]


def test_results_table_and_figures():
    import matplotlib

    matplotlib.use("Agg")
    res = Results()
    for seed, value in ((0, 0.6), (1, 0.7)):
        res.add_row("chchminer", "prior", "roc_auc", value, seed, "drug_cold")
    res.add_row("chchminer", "MolTC", "roc_auc", 0.9, 0, mx.LM_ONE_UNSEEN)
    res.add_row("freesolv-pairs", "training mean", "rmse", 3.0, 0, "grouped")
    res.add_row("chchminer", "data", "dedup: rows", 10, 0, "drug_cold")
    table = moltc.results_table(res)
    assert table.loc["prior", ("chchminer", "drug_cold", "roc_auc")] == "0.650 ± 0.071"
    assert "data" not in table.index
    fig = moltc.figures.baseline_bars(res.frame())
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 1  # the LM set is left out
    assert moltc.figures.pipeline() is not None and moltc.figures.stages() is not None
    y = np.array([0.0, 1.0, 1.0, 0.0])
    runs = {"MolTC": {"tests": {"s": {"y_true": y, "y_pred": y * 0.5}}}}
    lm = {"runs": runs, "trivial": {"s": ("chance", np.full(4, 0.5))},
          "tables": {"s": pd.DataFrame({"roc_auc": [0.5, 1.0]}, index=["chance", "MolTC"])},
          "context": {"s": {"GBM": y}}}  # fmt: skip
    assert "n = 4, seed 0" in moltc.figures.roc_curves(lm).axes[0].get_title()
    assert len(moltc.figures.parity_plots(lm).axes) == 2  # GBM, then MolTC
    frame = pd.DataFrame({"a": ["x"], "b": ["y"]})
    assert moltc.figures.text_table(frame, "t").axes


# ---------------------------------------------------------------- paper scale: loading and memory


def test_full_profile_loads_galactica_in_bf16_and_checks_memory_first(tmp_path, monkeypatch):
    """Issue 19: ``full`` loads Galactica-1.3B in bf16 through `load_lm`; a tiny random OPT (the
    same architecture) loaded that way keeps bf16 weights and trains float32 LoRA adapters; 4-bit
    without CUDA names the setting; the memory line estimates LoRA r 8 on q/v and refuses."""
    from molkit.models.gnn import GIN
    from molkit.models.lm import save_tiny_random_lm
    from molkit.models.lm.memory import InsufficientMemoryError

    smoke, default, full = (moltc.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert (full.lm_dtype, full.lm_quantization) == ("bf16", None)
    assert (smoke.lm_dtype, smoke.lm_quantization) == (default.lm_dtype, None) == ("fp32", None)
    with pytest.raises(ValueError, match="lm_dtype setting"):
        smoke.with_overrides(lm_dtype="fp16")
    with pytest.raises(ValueError, match="lm_quantization setting"):
        smoke.with_overrides(lm_quantization="8bit")
    task = moltc.TASKS["freesolv-pairs"]
    df = pd.DataFrame({"smiles_1": SMILES, "smiles_2": ["O"] * 8, "freesolv": np.arange(8.0)})
    corpus = moltc.task_prompts(task, df, 8, 16) + moltc.task_answers(task, df)
    path = str(save_tiny_random_lm(tmp_path / "opt", corpus, "opt", vocab_size=300, hidden=64))
    settings = smoke.with_overrides(lm_dtype="bf16")
    session = moltc.PairLMSession(path, GIN(num_layers=1, hidden=8), settings, cache=False)
    params = dict(session.model.named_parameters())
    assert session.model.base_model.model.config.model_type == "opt"
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n and params[n].dtype == torch.float32 for n in trainable)
    assert {p.dtype for n, p in params.items() if n not in trainable} == {torch.bfloat16}
    # LoRA dropout is the setting's: 0.05 in default, the official 0.1 in full
    assert (default.lora_dropout, full.lora_dropout) == (0.05, 0.1)
    assert session.model.peft_config["default"].lora_dropout == settings.lora_dropout
    with_dropout = settings.with_overrides(lora_dropout=0.0)
    dropped = moltc.PairLMSession(path, GIN(num_layers=1, hidden=8), with_dropout, cache=False)
    assert dropped.model.peft_config["default"].lora_dropout == 0.0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="lm_quantization='4bit'.*no CUDA device"):
        moltc.PairLMSession(path, GIN(num_layers=1, hidden=8), settings.with_overrides(
            lm_quantization="4bit"))  # fmt: skip
    line = moltc.lm_memory(settings, path, "cpu", free_bytes=10**12)
    assert line.startswith(f"memory: {path} needs about") and "bf16, LoRA r 8" in line
    assert "1000.0 GB free on cpu" in line and "\n" not in line
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit', lm_batch_size"):
        moltc.lm_memory(settings, path, "cpu", free_bytes=1000)
    absent = moltc.lm_memory(full, "no-such-org/no-such-model-xyz", local_files_only=True)
    assert absent.startswith("memory: no estimate for no-such-org/no-such-model-xyz")
