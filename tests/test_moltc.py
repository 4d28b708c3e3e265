"""MolTC: pair data and splits, baselines, the Q-Former projector, CoT targets and parsing, graph tokens
in a (tiny, random) causal LM."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.methods import moltc

SMILES = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "O", "CCCl", "c1ccncc1", "CC(C)=O"]


def _pairs(n_drugs=30, n_pairs=200, seed=0):
    rng = np.random.default_rng(seed)
    drugs = [f"D{i}" for i in range(n_drugs)]
    rows = set()
    while len(rows) < n_pairs:
        a, b = rng.choice(n_drugs, 2, replace=False)
        rows.add(moltc.pair_key(drugs[a], drugs[b]))
    frame = pd.DataFrame(sorted(rows), columns=["smiles_1", "smiles_2"])
    frame["label"] = rng.integers(0, 2, len(frame)).astype(float)
    return frame


def test_deduplicate_pairs_merges_swaps_and_drops_conflicts():
    df = pd.DataFrame(
        {
            "smiles_1": ["A", "B", "A", "C", "D", "C"],
            "smiles_2": ["B", "A", "C", "A", "E", "D"],
            "label": [1.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        }
    )
    out, report = moltc.deduplicate_pairs(df)
    # A-B twice with one label -> kept once; A-C with opposite labels -> dropped; D-E, C-D kept
    assert sorted(map(tuple, out[["smiles_1", "smiles_2"]].to_numpy())) == [("A", "B"), ("C", "D"), ("D", "E")]
    assert report == {"rows": 6, "unique_pairs": 4, "duplicate_rows": 2, "conflicting_pairs": 1, "kept": 3}


def test_drug_cold_split_is_cold_seeded_and_checked():
    df = _pairs()
    split = moltc.drug_cold_split(df, (0.8, 0.1, 0.1), seed=0)
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(df)))
    moltc.check_cold_split(df, split)  # does not raise
    train_mols = set(df.smiles_1.iloc[split["train"]]) | set(df.smiles_2.iloc[split["train"]])
    for i in split["test"]:
        assert df.smiles_1[i] not in train_mols or df.smiles_2[i] not in train_mols
    again = moltc.drug_cold_split(df, (0.8, 0.1, 0.1), seed=0)
    other = moltc.drug_cold_split(df, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not all(np.array_equal(split[k], other[k]) for k in split)
    # a random row split of the same pairs is not cold, and the check says so
    with pytest.raises(ValueError, match="not cold"):
        moltc.check_cold_split(df, moltc.make_pair_split(df, "random", seed=0))
    # both molecules unseen: straddling pairs are left out, and the stricter check holds
    both = moltc.make_pair_split(df, "drug_cold_both", seed=0)
    moltc.check_cold_split(df, both, unseen="both")
    assert 0 < sum(len(v) for v in both.values()) < len(df) and len(both["test"]) > 0
    with pytest.raises(ValueError, match="one molecule in train"):
        moltc.check_cold_split(df, split, unseen="both")
    # duplicated (swapped) pairs are refused
    swapped = pd.concat([df, df.iloc[:1].rename(columns={"smiles_1": "smiles_2", "smiles_2": "smiles_1"})])
    with pytest.raises(ValueError, match="deduplicate_pairs"):
        moltc.drug_cold_split(swapped.reset_index(drop=True))


def test_split_overlap_counts_known_leaks():
    df = pd.DataFrame(
        {
            "smiles_1": ["A", "B", "A", "B", "A", "X"],
            "smiles_2": ["B", "A", "C", "A", "C", "Y"],
            "label": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
        }
    )
    split = {"train": np.array([0, 1, 2]), "valid": np.array([], dtype=int), "test": np.array([3, 4, 5])}
    report = moltc.split_overlap(df, split).set_index("part")
    assert report.loc["train", "repeated_pairs"] == 1 and report.loc["train", "repeated_conflicting"] == 1
    test = report.loc["test"]
    assert test["pairs_in_train"] == 2  # B-A and A-C
    assert test["opposite_label_in_train"] == 2  # A-B has label 0 in train; A-C has label 1 in train
    assert test["new_molecule"] == 1 and test["both_molecules_in_train"] == 2
    assert test["positive_rate"] == pytest.approx(2 / 3)


def test_grouped_split_keeps_molecule_1_in_one_part():
    df = _pairs(n_drugs=12, n_pairs=50)
    split = moltc.make_pair_split(df, "grouped", seed=3)
    parts = {k: set(df.smiles_1.iloc[v]) for k, v in split.items()}
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])


def test_drug_prior_is_the_product_of_training_rates():
    prior = moltc.DrugPrior(smoothing=0.0).fit(["A", "A", "B"], ["B", "C", "C"], [1, 0, 1])
    # rates: A 1/2, B 2/2, C 1/2; global 2/3 for unseen drugs
    assert prior.predict(["A", "B", "Z"], ["C", "A", "B"]) == pytest.approx([0.25, 0.5, 2 / 3])


def test_pair_fingerprints_layout():
    x = moltc.pair_fingerprints(["CCO", "c1ccccc1"], ["O", "CCO"], n_bits=64, extra=np.array([300.0, 310.0]))
    assert x.shape == (2, 129) and x.dtype == np.float32
    assert np.array_equal(x[0, :64], x[1, 64:128])  # CCO as molecule 1, then as molecule 2
    assert list(x[:, -1]) == [300.0, 310.0]


def test_pair_graphs_and_pair_gin_roles():
    from torch_geometric.data import Batch

    graphs = moltc.pair_graphs(["CCO", "c1ccccc1O"], ["c1ccccc1O", "CCO"])
    assert graphs[0].num_nodes == 10 and graphs[0].role.tolist() == [0] * 3 + [1] * 7
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    for combine, invariant in (("symmetric", True), ("concat", False)):
        model = moltc.PairGIN(1, combine=combine, hidden=16, num_layers=2).eval()
        out = model(batch)
        assert out.shape == (2, 1)
        assert torch.allclose(out[0], out[1], atol=1e-5) == invariant
    dense, mask = moltc.pair_node_embeddings(model.gin, batch)
    assert dense.shape == (2, 2, 7, 16)
    assert mask.sum(-1).tolist() == [[3, 7], [7, 3]]


def test_fit_pair_gin_learns_a_separable_toy_task():
    a = ["CCO", "CCCO", "CCN", "CCCN"] * 6
    b = ["O"] * 24
    y = np.array([1.0 if s.endswith("O") else 0.0 for s in a])
    graphs = moltc.pair_graphs(a, b)
    fitted = moltc.fit_pair_gin(graphs, y, graphs, y, hidden=16, num_layers=2, epochs=20, lr=1e-2,
                                batch_size=12, patience=20, progress=False)
    pred = fitted.predict(graphs)
    assert ((pred > 0.5) == (y > 0.5)).mean() == 1.0


def test_fit_pair_gin_min_steps_raises_the_epochs_of_a_small_set():
    graphs = moltc.pair_graphs(["CCO", "CCN"] * 4, ["O"] * 8)
    y = np.arange(8, dtype=float)
    fitted = moltc.fit_pair_gin(graphs, y, graphs, y, task="regression", hidden=8, num_layers=1, epochs=1, batch_size=4,
                                patience=100, progress=False, min_steps=10)
    assert len(fitted.history.records) == 5  # 2 batches an epoch: 5 epochs hold 10 steps
    fitted = moltc.fit_pair_gin(graphs, y, graphs, y, task="regression", hidden=8, num_layers=1, epochs=3, batch_size=4,
                                patience=100, progress=False, min_steps=2)
    assert len(fitted.history.records) == 3  # never fewer epochs than asked


def _projector(**kw):
    torch.manual_seed(0)
    return moltc.QFormerProjector(atom_dim=6, out_dim=10, n_query=3, hidden=8, heads=2, n_layers=2, dropout=0.0, **kw).eval()


def test_projector_shapes_and_padding_invariance():
    proj = _projector()
    atoms = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = proj(atoms, mask)
    assert out.shape == (2, 3, 10)
    # padded atoms are invisible: changing them changes nothing
    atoms2 = atoms.clone()
    atoms2[1, 2:] = 100.0
    assert torch.allclose(proj(atoms2, mask), out, atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        proj(atoms, mask[:, :3])


def test_init_projector_from_bert_copies_self_attention_and_ffn():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16,
                                vocab_size=20, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    proj = moltc.QFormerProjector(atom_dim=6, out_dim=10, n_query=3, hidden=8, heads=2, n_layers=2,
                                  intermediate=16, dropout=0.0).eval()
    copied = moltc.init_projector_from_bert(proj, bert)
    assert "layers.1.ffn_out.weight" in copied and not any("cross" in n for n in copied)
    # the copied self-attention block computes what BERT's does
    x = torch.randn(2, 3, 8)
    layer = proj.layers[0]
    ours = layer.self_norm(x + layer.self_attn(x, x, x, need_weights=False)[0])
    theirs = bert.encoder.layer[0].attention(x)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="hidden"):
        moltc.init_projector_from_bert(_projector(), BertModel(BertConfig(hidden_size=12, num_attention_heads=2,
                                                                          num_hidden_layers=1, vocab_size=20)))


def test_role_projectors_shared_vs_separate():
    atoms, mask = torch.randn(1, 4, 6), torch.ones(1, 4, dtype=torch.bool)
    roles = moltc.RoleProjectors(_projector(), shared=True)
    assert roles.shared and torch.equal(roles(atoms, mask, 0), roles(atoms, mask, 1))
    roles.separate()
    assert not roles.shared and len(roles.projectors) == 2
    assert torch.equal(roles(atoms, mask, 0), roles(atoms, mask, 1))  # copies start equal
    with torch.no_grad():
        roles.projectors[1].queries.add_(0.5)  # fine-tuning moves the roles apart
    assert not torch.allclose(roles(atoms, mask, 0), roles(atoms, mask, 1))
    assert roles.projectors[0].queries.data_ptr() != roles.projectors[1].queries.data_ptr()
    with pytest.raises(ValueError, match="role"):
        roles(atoms, mask, 2)


def test_cot_targets_and_ranges():
    assert moltc.value_range(-3.87, 0.5) == (-4.0, -3.5)
    assert moltc.value_range(355.0, 10) == (350.0, 360.0)
    text = moltc.regression_target(-3.87, 0.5, quantity="The hydration free energy")
    assert text == "The hydration free energy is above -4 and below -3.5, so the accurate value is -3.87."
    assert moltc.regression_target(412.0, 10, decimals=0) == "The value is above 410 and below 420, so the accurate value is 412."
    assert moltc.regression_target(1.5, cot=False) == "The accurate value is 1.5."
    with pytest.raises(ValueError):
        moltc.regression_target(float("nan"))
    assert moltc.parse_value(text) == pytest.approx(-3.87)


def test_parse_value_is_robust_and_counts_failures():
    cases = {
        "The value is above -4 and below -3.5, so the accurate value is -3.87.": -3.87,
        "above \u22124 and below \u22123.5, so the accurate value is \u22123.9": -3.9,  # unicode minus
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


# ---------------------------------------------------------------- graph tokens in a tiny random LM


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from molkit.models.lm_training import load_lm, save_tiny_random_lm

    corpus = [moltc.pair_prompt(a, b, "Do these two drugs interact?") for a in SMILES for b in SMILES[:3]]
    corpus += list(moltc.DDI_ANSWERS) + [moltc.regression_target(v) for v in (-3.2, 1.7, 0.4)]
    path = save_tiny_random_lm(tmp_path_factory.mktemp("lm") / "tiny", corpus, hidden=32, layers=1, heads=2)
    torch.manual_seed(0)
    model, tokenizer = load_lm(path, device="cpu")
    graph_id = moltc.add_graph_token(model, tokenizer)
    return model, tokenizer, graph_id


def _graph_encoder(hidden, n_query=2, shared=False):
    from molkit.models.gnn import GIN

    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=16)
    proj = moltc.QFormerProjector(atom_dim=16, out_dim=hidden, n_query=n_query, hidden=8, heads=2, n_layers=1, dropout=0.0)
    roles = moltc.RoleProjectors(proj, shared=shared)
    if not shared:
        with torch.no_grad():
            roles.projectors[1].queries.add_(1.0)  # as after role-specific fine-tuning
    return moltc.GraphTokenEncoder(gin, roles)


def test_graph_placeholders_are_single_positions(tiny_lm):
    model, tokenizer, graph_id = tiny_lm
    assert moltc.add_graph_token(model, tokenizer) == graph_id  # idempotent
    prompt = moltc.pair_prompt("CCO", "O", "Q?", n_graph_tokens=3, max_smiles_chars=2)
    assert "CC..." in prompt and prompt.count(moltc.GRAPH_TOKEN) == 6
    pos = moltc.graph_positions(tokenizer, prompt, graph_id)
    ids = tokenizer(prompt)["input_ids"]
    assert len(pos) == 6 and all(ids[p] == graph_id for p in pos) and pos[2] + 1 < pos[3]


def test_graph_tokens_are_spliced_at_their_positions(tiny_lm):
    from molkit.models.lm_training import collate_examples, splice_embeddings

    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size).eval()
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=2) for a, b in (("CCO", "O"), ("c1ccccc1O", "CCN"))]
    examples = moltc.encode_pair_examples(tokenizer, prompts, ["A.", "B."], graph_id)
    batch = collate_examples(examples, tokenizer.pad_token_id)
    pairs = [("CCO", "O"), ("c1ccccc1O", "CCN")]
    vectors = graph(pairs)
    assert [tuple(v.shape) for v in vectors] == [(4, model.config.hidden_size)] * 2
    embeds = splice_embeddings(model, batch["input_ids"], [e.extra_positions for e in examples], vectors)
    plain = model.get_input_embeddings()(batch["input_ids"])
    for row, e in enumerate(examples):
        assert torch.allclose(embeds[row, e.extra_positions], vectors[row])
        others = [i for i in range(embeds.shape[1]) if i not in e.extra_positions]
        assert torch.equal(embeds[row, others], plain[row, others])
    # answer-only loss: the prompt (graph positions included) carries no label
    assert all(examples[0].labels[p] == -100 for p in examples[0].extra_positions)
    # the role-separated encoder: swapping the molecules changes the tokens, not just their order
    swapped = graph([("O", "CCO")])[0]
    assert not torch.allclose(swapped[:2], vectors[0][2:])
    shared = _graph_encoder(model.config.hidden_size, shared=True).eval()
    a, b = shared([("CCO", "O")])[0], shared([("O", "CCO")])[0]
    assert torch.allclose(a[:2], b[2:], atol=1e-6) and torch.allclose(a[2:], b[:2], atol=1e-6)


def test_answer_log_likelihoods_match_a_manual_computation(tiny_lm):
    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size).eval()
    pairs = [("CCO", "O"), ("CCN", "CCO")]
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=2) for a, b in pairs]
    answers = ["Yes, these two drugs interact.", "No."]
    got = moltc.answer_log_likelihoods(model, tokenizer, prompts, answers, pairs, graph, graph_id, batch_size=2,
                                       progress=False)
    from molkit.models.lm_training import splice_embeddings

    for i in range(2):  # one example at a time, no padding
        (e,) = moltc.encode_pair_examples(tokenizer, [prompts[i]], [answers[i]], graph_id)
        ids = torch.tensor([e.input_ids])
        with torch.no_grad():
            embeds = splice_embeddings(model, ids, [e.extra_positions], graph([pairs[i]]))
            logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), -1)
        expected = sum(float(logp[t - 1, e.input_ids[t]]) for t in range(e.prompt_length, len(e.input_ids)))
        assert got[i] == pytest.approx(expected, abs=0.05 * abs(expected) + 1e-3)  # bf16 autocast where native
    probs = moltc.score_ddi(model, tokenizer, prompts, pairs, graph, graph_id, progress=False)
    assert probs.shape == (2,) and np.all((probs > 0) & (probs < 1))


def test_train_pair_lm_lowers_the_answer_loss_and_generates(tiny_lm):
    from molkit.models.lm_training import TrainConfig

    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size)
    pairs = [("CCO", "O"), ("CCN", "O")] * 4
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=2) for a, b in pairs]
    answers = [moltc.regression_target(v) for v in (-3.2, 1.7) * 4]
    before = moltc.answer_log_likelihoods(model, tokenizer, prompts, answers, pairs, graph, graph_id, progress=False)
    queries_before = graph.projectors.projectors[0].queries.detach().clone()
    report = moltc.train_pair_lm(model, tokenizer, prompts, answers, pairs, graph,
                                 TrainConfig(epochs=6, lr=3e-3, batch_size=4, precision="fp32"), graph_id, progress=False)
    after = moltc.answer_log_likelihoods(model, tokenizer, prompts, answers, pairs, graph, graph_id, progress=False)
    assert after.mean() > before.mean() and report.tokens > 0
    assert not torch.equal(queries_before, graph.projectors.projectors[0].queries)  # the projector trained
    texts = moltc.generate_pair_answers(model, tokenizer, prompts[:2], pairs[:2], graph, graph_id, max_new_tokens=6,
                                        progress=False)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    beams = moltc.generate_pair_answers(model, tokenizer, prompts[:2], pairs[:2], graph, graph_id, max_new_tokens=6,
                                        progress=False, num_beams=3)  # the official 5-beam decoding, smaller
    assert len(beams) == 2 and all(isinstance(t, str) for t in beams)


def test_run_baselines_rows_and_predictions():
    df = pd.DataFrame({"smiles_1": SMILES * 5, "smiles_2": SMILES[::-1] * 5})
    df["label"] = [float(i % 2) for i in range(len(df))]
    split = moltc.make_pair_split(df, "random", seed=0, fractions=(0.5, 0.25, 0.25))
    assert len(set(df.label.iloc[split["test"]])) == 2
    sizes = {"n_bits": 32, "gbm_iter": 5}
    rows, preds = moltc.run_baselines(df, split, moltc.TASKS["chchminer"], sizes, gin=False)
    assert set(preds) == {"per-drug prior (no chemistry)", "Morgan + gradient boosting"}
    assert all(len(p) == len(split["test"]) for p in preds.values())
    assert set(rows.metric) == {"accuracy", "roc_auc", "f1", "seconds"}


@pytest.mark.slow  # loads minilm-l6 for the projector's initialisation
def test_pair_lm_session_runs_variants_from_saved_states(tiny_lm, tmp_path):
    from molkit.models.gnn import GIN

    task = moltc.TASKS["freesolv-pairs"]
    df = pd.DataFrame({"smiles_1": SMILES, "smiles_2": ["O"] * len(SMILES), "freesolv": np.linspace(-5, 1, len(SMILES))})
    corpus = moltc.task_prompts(task, df, 8, 16) + moltc.task_answers(task, df)
    path = moltc.save_smoke_lm(tmp_path / "lm", corpus)
    sizes = {**moltc.PROFILE_SIZES["smoke"], "projector_hidden": 384, "projector_heads": 12, "projector_layers": 1}
    torch.manual_seed(0)
    session = moltc.PairLMSession(path, GIN(num_layers=1, hidden=8), sizes, progress=False)
    with pytest.raises(RuntimeError, match="pretrain"):
        session.run("MolTC", moltc.LM_VARIANTS["MolTC"], task, df.iloc[:4], df.iloc[4:6])
    report = session.pretrain(SMILES, SMILES, 2)
    assert report.tokens > 0 and session.pretrained is not None
    out = session.run("MolTC", moltc.LM_VARIANTS["MolTC"], task, df.iloc[:4], df.iloc[4:6], swap=True)
    assert out["y_pred"].shape == (2,) and len(out["texts"]) == 2 and 0 <= out["n_unparsed"] <= 2
    assert out["y_pred_swapped"].shape == (2,) and set(out["metrics"]) == {"mae", "rmse", "r2"}
    # a variant without pre-training starts again from the initial adapters
    session.load_adapter_state(session.initial_state)
    assert all(torch.equal(v, session.initial_state[k]) for k, v in session.adapter_state().items())
    smiles_only = session.run("SMILES", moltc.LM_VARIANTS["SMILES only (same LM, no graph tokens)"], task, df.iloc[:4], df.iloc[4:6])
    assert "y_pred_swapped" not in smiles_only
