"""MolGraph-LarDo: property mapping, prompts, calibration checks, CLIP loss, weight loading, data rows."""

import csv
import gzip
import json
import math

import numpy as np
import pytest
import torch

from molkit.chem import compute_descriptors, graphs_from_smiles
from molkit.methods import lardo
from molkit.models.gnn import GIN
from molkit.models.responses import FORMAT, ResponseCache, prompt_sha256

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"  # logP 1.31, MW 180.16, TPSA 63.6, 1 donor, 3 acceptors


def aspirin_values() -> dict:
    return compute_descriptors([ASPIRIN], progress=False).iloc[0].to_dict()


def test_parse_property_list_handles_numbered_bulleted_and_inline_answers():
    numbered = "Relevant properties:\n1. **Lipophilicity (logP)**: how well it dissolves in fats.\n2) Molecular weight - size\n3. Polar surface area."
    assert lardo.parse_property_list(numbered) == ["Lipophilicity (logP)", "Molecular weight", "Polar surface area"]
    bullets = "- Hydrogen bond donors\n- hydrogen bond donors\n* Solubility: in water"
    assert lardo.parse_property_list(bullets) == ["Hydrogen bond donors", "Solubility"]
    assert lardo.parse_property_list("logP, TPSA and charge") == ["logP", "TPSA", "charge"]
    assert lardo.parse_property_list("1. logP\n2. TPSA\n3. charge", max_properties=2) == ["logP", "TPSA"]


def test_map_properties_to_descriptors_and_reports_the_rest():
    mapped = lardo.map_properties(["Lipophilicity (logP)", "Molecular weight", "Polar surface area",
                                   "H-bond donors", "Solubility", "BACE-1"])
    assert mapped.matched == {"Lipophilicity (logP)": "logp", "Molecular weight": "mol_weight",
                              "Polar surface area": "tpsa", "H-bond donors": "hbd"}
    assert mapped.unmatched == ["Solubility", "BACE-1"]
    assert mapped.descriptors == ["logp", "mol_weight", "tpsa", "hbd"]
    assert lardo.prompt_descriptors(mapped) == ["logp", "mol_weight", "tpsa", "hbd"]
    assert lardo.prompt_descriptors(None) == ["logp", "mol_weight"]


def test_stage1_prompt_follows_the_official_wording():
    system, user = lardo.stage1_prompt("bbbp")
    assert system == {"role": "system", "content": "You are a biochemistry expert."}
    assert "BBBP" in user["content"] and "classification" in user["content"]
    assert "what are the molecular properties related to the task?" in user["content"]
    with pytest.raises(KeyError, match="DATASET_INFO"):
        lardo.stage1_prompt("unknown-set")


def test_stage2_prompts_carry_dsm_values_only_where_they_should():
    values = aspirin_values()
    props = lardo.map_properties(["Lipophilicity", "Polar surface area", "Permeability"])
    full = lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, values)[1]["content"]
    assert ASPIRIN in full
    assert f"logP = {values['logp']:.3f}" in full and f"molecular weight = {values['mol_weight']:.1f} g/mol" in full
    assert f"TPSA = {values['tpsa']:.2f}" in full and "Permeability" in full and "brackets" in full
    no_dsm = lardo.stage2_prompt(ASPIRIN, "bbbp", "no_dsm", props)[1]["content"]
    assert "RDKit" not in no_dsm and f"{values['logp']:.3f}" not in no_dsm and "Permeability" in no_dsm
    no_stage1 = lardo.stage2_prompt(ASPIRIN, "bbbp", "no_stage1", props, values)[1]["content"]
    assert "Permeability" not in no_stage1 and "TPSA" not in no_stage1 and f"logP = {values['logp']:.3f}" in no_stage1
    with pytest.raises(ValueError, match="DSM values"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, None)
    with pytest.raises(ValueError, match="variant"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "dsm_only", props, values)


def test_dsm_text_states_rdkit_values_and_groups():
    text = lardo.dsm_text(ASPIRIN)
    assert "logP 1.310" in text and "molecular weight 180.2 g/mol" in text and "hydrogen-bond donors 1" in text
    assert "carboxylic acid" in text and "ester" in text and "benzene" in text
    assert lardo.extract_claims(text, aspirin_values()) and not any(
        c.contradicts for c in lardo.extract_claims(text, aspirin_values()))


def test_extract_claims_flags_values_and_qualitative_claims_that_contradict_rdkit():
    values = aspirin_values()
    claims = lardo.extract_claims(
        "[Lipophilicity: highly lipophilic, logP of 5.2] [molecular weight: 180.2 g/mol] "
        "It has 2 hydrogen bond donors and a TPSA of 63.6.", values)
    found = {(c.descriptor, c.kind, c.stated): c.contradicts for c in claims}
    assert found[("logp", "value", 5.2)] is True
    assert found[("logp", "qualitative", None)] is True  # "highly lipophilic" with logP 1.31
    assert found[("mol_weight", "value", 180.2)] is False
    assert found[("hbd", "value", 2.0)] is True
    assert found[("tpsa", "value", 63.6)] is False
    assert not [c for c in lardo.extract_claims("The molecule is hydrophilic.", values) if c.contradicts]
    table = lardo.calibration_table(["logP 1.3", "logP 4.0"], compute_descriptors([ASPIRIN] * 2, progress=False), "v")
    assert table["contradicts"].tolist() == [False, True] and set(table["variant"]) == {"v"}


def test_clip_loss_known_answer_and_learnable_temperature():
    eye = torch.eye(2)
    loss = lardo.clip_loss(eye, eye, torch.tensor(0.0))  # logits [[1, 0], [0, 1]]
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    swapped = lardo.clip_loss(eye, eye.flip(0), torch.tensor(0.0))
    assert swapped.item() == pytest.approx(math.log(1 + math.exp(1)), abs=1e-6)
    graphs = graphs_from_smiles(["CCO", "c1ccccc1", "CC(=O)O"], progress=False)
    model = lardo.GraphTextCLIP(GIN(num_layers=2, hidden=8), text_dim=4)
    assert model.temperature == pytest.approx(0.07)
    from torch_geometric.data import Batch

    model(Batch.from_data_list(graphs), torch.randn(3, 4)).backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0


def test_finetuning_starts_from_the_pretrained_encoder():
    graphs = graphs_from_smiles(["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "c1ccncc1", "CCCl"], progress=False)
    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=8)
    before = {k: v.clone() for k, v in gin.state_dict().items()}
    history = lardo.pretrain_clip(gin, graphs, np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32),
                                  epochs=2, batch_size=3, progress=False)
    assert len(history) == 2 and history["temperature"].gt(0).all()
    assert any(not torch.equal(before[k], v) for k, v in gin.state_dict().items())  # pre-training changed it
    predictor = lardo.build_predictor(gin, n_tasks=1)
    for key, value in gin.state_dict().items():
        assert torch.equal(predictor.gin.state_dict()[key], value), key
    with torch.no_grad():
        next(predictor.gin.parameters()).add_(1.0)  # fine-tuning a copy leaves the pre-trained encoder alone
    assert not torch.equal(next(predictor.gin.parameters()), next(gin.parameters()))
    with pytest.raises(ValueError, match="row by row"):
        lardo.pretrain_clip(gin, graphs, np.zeros((5, 4), np.float32), epochs=1, progress=False)


def test_pretraining_pool_is_seeded_nested_and_within_the_parts():
    split = {"train": np.arange(0, 80), "valid": np.arange(80, 90), "test": np.arange(90, 100)}
    small, large = lardo.pretraining_pool(split, 10), lardo.pretraining_pool(split, 20)
    assert len(small) == 10 and set(small) <= set(large) and set(large) <= set(split["train"])
    both = lardo.pretraining_pool(split, 10, 5)
    assert set(small) <= set(both) and len(set(both) - set(small)) == 5 and (both[~np.isin(both, small)] >= 80).all()
    assert len(lardo.pretraining_pool(split, None, None)) == 100


def test_describe_molecules_goes_through_the_cache(tmp_path):
    calls = []

    def fake_llm(prompts):
        calls.append(len(prompts))
        return ["1. Lipophilicity\n2. Molecular weight" if len(p[1]["content"]) < 600 and "SMILES of a molecule is" not in
                p[1]["content"] else f"[logP: {prompt_sha256(p)[:4]}]" for p in prompts]

    cache = ResponseCache(tmp_path / "r.jsonl")
    desc = lardo.describe_molecules("esol", ["CCO", ASPIRIN], cache, "fake-lm", 16, 32, generate_fn=fake_llm,
                                    progress=False)
    assert desc.properties.descriptors == ["logp", "mol_weight"] and set(desc.texts) == set(lardo.VARIANTS)
    assert desc.texts["dsm_only"][1] == lardo.dsm_text(ASPIRIN)
    n_calls = len(calls)
    again = lardo.describe_molecules("esol", ["CCO", ASPIRIN], ResponseCache(tmp_path / "r.jsonl"), "fake-lm", 16, 32,
                                     generate_fn=fake_llm, offline=True, progress=False)
    assert len(calls) == n_calls and again.texts == desc.texts


def test_every_row_of_the_dataset_file_reaches_the_split(mirror):
    from molkit.data import fetch_file, load_dataset, scaffold_split

    with open(fetch_file("moleculenet/freesolv.csv"), newline="") as handle:
        n_rows = sum(1 for _ in csv.DictReader(handle))  # the official reader dropped the first data row
    df = load_dataset("freesolv")
    assert len(df) + df.attrs["n_invalid_rows"] == n_rows
    split = scaffold_split(df["smiles"].tolist(), (0.8, 0.1, 0.1))
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(len(df)))


def test_shipped_response_file_replays_the_smoke_pool_without_a_model(mirror):
    assert lardo.RESPONSE_FILE.exists(), f"regenerate it: {lardo.REGENERATE_COMMAND}"
    assert lardo.RESPONSE_FILE.stat().st_size < 5e6
    header = json.loads(gzip.open(lardo.RESPONSE_FILE, "rt").readline())["header"]
    assert header["format"] == FORMAT and header["profile"] == "default"
    from molkit.data import load_dataset, scaffold_split

    sizes = lardo.PROFILE_SIZES["smoke"]
    df = load_dataset(sizes["datasets"][0])
    pool = lardo.pretraining_pool(scaffold_split(df["smiles"].tolist()), 4)

    def no_model(prompts):
        raise AssertionError("a replay must not call the model")

    desc = lardo.describe_molecules(sizes["datasets"][0], df["smiles"].iloc[pool].tolist(),
                                    ResponseCache(None, replay=[lardo.RESPONSE_FILE]), sizes["lm"],
                                    sizes["max_new_tokens"], sizes["stage1_max_new_tokens"], generate_fn=no_model,
                                    offline=True, progress=False)
    assert all(len(t) == 4 and all(isinstance(x, str) for x in t) for t in desc.texts.values())


def test_baselines_return_one_column_per_task_and_separate_separable_data():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(-2, 0.3, (20, 4)), rng.normal(2, 0.3, (20, 4))])
    y = np.array([0.0] * 20 + [1.0] * 20)
    y_two = np.stack([y, np.where(np.arange(40) % 5 == 0, np.nan, y)], axis=1)  # NaN labels are skipped
    scores = lardo.probe_scores(emb, y_two, emb, "classification")
    assert scores.shape == (40, 2) and (scores[20:, 1] > scores[:20, 1].max()).all()
    assert lardo.probe_scores(emb, emb[:, 0], emb, "regression").shape == (40, 1)
    pred = lardo.morgan_rf_baseline(["CCO", "CCN", "c1ccccc1", "c1ccccc1O"], np.array([0, 0, 1, 1.0]), ["CCCO"],
                                    "classification", n_trees=10)
    assert pred.shape == (1, 1) and 0.0 <= pred[0, 0] <= 1.0
