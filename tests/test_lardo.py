"""MolGraph-LarDo: property mapping, both stage-1 modes, prompts and the unmapped-property guard,
the RDKit check of what a description claims (one test per artefact the extractor leaves out),
the official ``<MOLECULE>`` substitution, CLIP loss and pre-training with early stopping, weight
loading, the description pools, the response cache, settings per profile and their problems, the
experiment functions (on fake LLM responses, and replayed from the shipped file) and the CLI.
The protocols, retrieval, sealed test labels and the claim rows: `tests/test_lardo_protocol.py`."""

import csv
import functools
import gzip
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.chem import compute_descriptors, graphs_from_smiles, match_property
from molkit.methods import lardo
from molkit.models.gnn import GIN
from molkit.models.lm.responses import FORMAT, ResponseCache, prompt_sha256

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"  # logP 1.31, MW 180.16, TPSA 63.6, 1 donor, 3 acceptors
NAMES = list(lardo.RANKED_NAMES.values())
#: Free-text stage-1 names no descriptor computes: the guard must never pass them on.
UNMAPPED = ("Permeability", "BAABP")


def aspirin_values() -> dict:
    return compute_descriptors([ASPIRIN], progress=False).iloc[0].to_dict()


def shipped_cache() -> ResponseCache:
    return ResponseCache(None, replay=[lardo.RESPONSE_FILE])


def user_text(prompt) -> str:
    return prompt[1]["content"]


def test_parse_property_list_handles_numbered_bulleted_and_inline_answers():
    numbered = (
        "Relevant properties:\n1. **Lipophilicity (logP)**: how well it dissolves in fats.\n"
        "2) Molecular weight - size\n3. Polar surface area."
    )
    assert lardo.parse_property_list(numbered) == [
        "Lipophilicity (logP)", "Molecular weight", "Polar surface area",
    ]  # fmt: skip
    bullets = "- Hydrogen bond donors\n- hydrogen bond donors\n* Solubility: in water"
    assert lardo.parse_property_list(bullets) == ["Hydrogen bond donors", "Solubility"]
    assert lardo.parse_property_list("logP, TPSA and charge") == ["logP", "TPSA", "charge"]
    assert lardo.parse_property_list("1. logP\n2. TPSA\n3. charge", max_properties=2) == [
        "logP", "TPSA",
    ]  # fmt: skip


def test_map_properties_to_descriptors_and_reports_the_rest():
    mapped = lardo.map_properties([
        "Lipophilicity (logP)", "Molecular weight", "Polar surface area", "H-bond donors",
        "Solubility", "BACE-1",
    ])  # fmt: skip
    assert mapped.matched == {
        "Lipophilicity (logP)": "logp", "Molecular weight": "mol_weight",
        "Polar surface area": "tpsa", "H-bond donors": "hbd",
    }  # fmt: skip
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


def test_stage1_choice_prompt_and_its_content_free_twin():
    task = user_text(lardo.stage1_choice_prompt("bbbp", NAMES))
    prior = user_text(lardo.stage1_choice_prompt(None, NAMES))
    options = "Options: " + "; ".join(NAMES) + ". Answer with the property name only."
    assert task.endswith(options) and prior.endswith(options)
    assert "BBBP" in task and "blood-brain barrier" in task
    assert "dataset" not in prior and "BBBP" not in prior and "blood" not in prior
    assert prior.startswith("Which one of these molecular properties")
    assert lardo.stage1_choice_prompt(None, NAMES)[0]["content"] == lardo.SYSTEM_PROMPT
    with pytest.raises(KeyError, match="DATASET_INFO"):
        lardo.stage1_choice_prompt("unknown-set", NAMES)


def test_every_ranked_name_maps_back_to_its_descriptor():
    from molkit.chem import DESCRIPTORS

    assert set(lardo.RANKED_NAMES) <= set(DESCRIPTORS) and len(set(NAMES)) == len(NAMES)
    for key, name in lardo.RANKED_NAMES.items():
        assert match_property(name) == key, name
    assert set(lardo.STAGE1_MODES) == {"free", "ranked"}


def test_rank_properties_ranks_by_pmi_breaks_ties_by_name_and_skips_kept_descriptors():
    scores = {  # option: (log p | dataset prompt, tokens, log p | content-free prompt)
        "lipophilicity (logP)": (-1.0, 4, -5.0),  # PMI 4, but every prompt carries logP
        "polar surface area": (-2.0, 3, -5.0),  # PMI 3
        "formal charge": (-3.0, 2, -6.0),  # PMI 3: a tie, broken by name
        "molecular weight": (-0.5, 2, -2.5),  # the likeliest answer, PMI only 2 (and carried)
        "aromatic rings": (-4.0, 2, -5.0),  # PMI 1
        "stereocentres": (-9.0, 1, -2.0),  # PMI -7
    }
    table, kept = lardo.rank_properties(scores, top=3, keep=("logp", "mol_weight"))
    assert list(table.columns) == [
        "rank", "property", "descriptor", "pmi", "logprob", "prior_logprob", "tokens", "kept",
    ]  # fmt: skip
    assert table["property"].tolist() == [
        "lipophilicity (logP)", "formal charge", "polar surface area", "molecular weight",
        "aromatic rings", "stereocentres",
    ]  # fmt: skip
    assert table["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["pmi"].tolist() == [4.0, 3.0, 3.0, 2.0, 1.0, -7.0]
    assert table["tokens"].tolist() == [4, 2, 3, 2, 2, 1]
    assert kept.names == ["formal charge", "polar surface area", "aromatic rings"]
    assert kept.matched == {
        "formal charge": "formal_charge", "polar surface area": "tpsa",
        "aromatic rings": "aromatic_rings",
    }  # fmt: skip
    assert kept.unmatched == [] and kept.descriptors == ["formal_charge", "tpsa", "aromatic_rings"]
    assert table.loc[table["kept"], "property"].tolist() == kept.names
    assert lardo.prompt_descriptors(kept) == [
        "logp", "mol_weight", "formal_charge", "tpsa", "aromatic_rings",
    ]  # fmt: skip
    # without keep the top three are the top three
    _, plain = lardo.rank_properties(scores, top=3)
    assert plain.names == ["lipophilicity (logP)", "formal charge", "polar surface area"]
    assert lardo.rank_properties(scores, top=0)[1].names == []
    with pytest.raises(ValueError, match="RANKED_NAMES"):
        lardo.rank_properties({**scores, "solubility": (-1.0, 2, -3.0)})


def test_stage2_prompts_carry_dsm_values_only_where_they_should():
    values = aspirin_values()
    props = lardo.map_properties(["Lipophilicity", "Polar surface area"])
    full = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, values))
    assert ASPIRIN in full
    assert f"logP = {values['logp']:.3f}" in full
    assert f"molecular weight = {values['mol_weight']:.1f} g/mol" in full
    assert f"TPSA = {values['tpsa']:.2f}" in full and "brackets" in full
    assert "these properties: Lipophilicity, Polar surface area." in full
    no_dsm = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", "no_dsm", props, values))
    assert "RDKit" not in no_dsm and f"{values['logp']:.3f}" not in no_dsm
    assert "these properties: Lipophilicity, Polar surface area." in no_dsm
    with pytest.raises(ValueError, match="DSM values"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, None)
    with pytest.raises(ValueError, match="variant"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "dsm_only", props, values)


def test_no_stage1_is_the_official_ablation_no_property_names_and_no_values():
    values = aspirin_values()
    props = lardo.map_properties(["Lipophilicity", "Polar surface area", *UNMAPPED])
    text = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", "no_stage1", props, values))
    assert ASPIRIN in text and "Describe the molecule and its properties." in text
    assert "RDKit" not in text and "these properties" not in text
    for value in (f"{values['logp']:.3f}", f"{values['mol_weight']:.1f}", f"{values['tpsa']:.2f}"):
        assert value not in text
    for name in ("Lipophilicity", "Polar surface area", "logP", "TPSA", "molecular weight",
                 *UNMAPPED):  # fmt: skip
        assert name not in text, name
    # the same prompt whatever stage 1 said
    for other in (None, lardo.map_properties([])):
        assert lardo.stage2_prompt(ASPIRIN, "bbbp", "no_stage1", other)[1]["content"] == text


def test_the_guard_never_passes_unmapped_stage1_names_to_stage2():
    values = aspirin_values()
    props = lardo.map_properties(["Lipophilicity", UNMAPPED[0], "Polar surface area", UNMAPPED[1]])
    assert props.unmatched == list(UNMAPPED)
    for variant in lardo.LLM_VARIANTS:
        text = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", variant, props, values))
        assert not any(name in text for name in UNMAPPED), variant
        if variant != "no_stage1":
            assert "these properties: Lipophilicity, Polar surface area." in text
    # every name unmapped: the prompt names the descriptors whose values it carries
    none_mapped = lardo.map_properties(list(UNMAPPED))
    assert none_mapped.matched == {} and lardo.prompt_descriptors(none_mapped) == [
        "logp", "mol_weight",
    ]  # fmt: skip
    for variant in ("lardo", "no_dsm"):
        text = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", variant, none_mapped, values))
        assert "these properties: logP, molecular weight." in text
        assert not any(name in text for name in UNMAPPED)
    lardo_text = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", none_mapped, values))
    assert f"logP = {values['logp']:.3f}; molecular weight = " in lardo_text
    no_props = user_text(lardo.stage2_prompt(ASPIRIN, "bbbp", "no_dsm", None))
    assert "these properties: logP, molecular weight." in no_props


def test_dsm_text_states_rdkit_values_and_groups():
    text = lardo.dsm_text(ASPIRIN)
    assert "logP 1.310" in text and "molecular weight 180.2 g/mol" in text
    assert "hydrogen-bond donors 1" in text
    assert "carboxylic acid" in text and "ester" in text and "benzene" in text
    claims = lardo.extract_claims(text, aspirin_values())
    assert claims and not any(c.contradicts for c in claims)


def test_official_substitution_replaces_the_molecule_as_the_official_code_does():
    """mistral_bbbp.py line 142 of zhangtia16/MolGraph-LarDo: newlines as spaces, then the
    SMILES, "The molecule" and "the molecule" replaced by <MOLECULE>."""
    text = f"The molecule {ASPIRIN} is small.\nIn water the molecule dissolves; The molecules"
    assert lardo.official_substitution(text, ASPIRIN) == (
        "<MOLECULE> <MOLECULE> is small. In water <MOLECULE> dissolves; <MOLECULE>s"
    )
    assert lardo.official_substitution("no mention", ASPIRIN) == "no mention"
    assert lardo.MOLECULE_TOKEN == "<MOLECULE>"
    assert lardo.echoes_smiles(text, ASPIRIN) and not lardo.echoes_smiles("CCO only", ASPIRIN)


def test_extract_claims_flags_values_and_qualitative_claims_that_contradict_rdkit():
    values = aspirin_values()
    claims = lardo.extract_claims(
        "[Lipophilicity: highly lipophilic, logP of 5.2] [molecular weight: 180.2 g/mol] "
        "It has 2 hydrogen bond donors and a TPSA of 63.6.",
        values,
    )
    found = {(c.descriptor, c.kind, c.stated): c.contradicts for c in claims}
    assert found == {
        ("logp", "value", 5.2): True,
        ("logp", "qualitative", None): True,  # "highly lipophilic" with logP 1.31
        ("mol_weight", "value", 180.2): False,
        ("hbd", "value", 2.0): True,  # aspirin has one donor
        ("tpsa", "value", 63.6): False,
    }
    assert not [c for c in lardo.extract_claims("The molecule is hydrophilic.", values)
                if c.contradicts]  # fmt: skip
    two = compute_descriptors([ASPIRIN] * 2, progress=False)
    table = lardo.calibration_table(["logP 1.3", "logP 4.0"], two, "v")
    assert table["contradicts"].tolist() == [False, True] and set(table["variant"]) == {"v"}


def values_stated(text: str) -> list[tuple[str, float]]:
    return [(c.descriptor, c.stated) for c in lardo.extract_claims(text, aspirin_values())
            if c.kind == "value"]  # fmt: skip


def test_a_formula_is_not_a_stated_value():
    """Seen in the shipped responses: "Molecular Mass / Molecular Formula) * 100" was read as a
    molecular weight of 100."""
    for text in (
        "Molecular Mass / Molecular Formula) * 100",
        "Molecular Weight of Water) * 100",
        "Molecular Weight of the target molecule) / 4",
        "Molecular Weight of Water) + 1",
        "Molecular Weight = (DNAGHSV * BBB) / 4",
        "Molecular weight = 18 * 2",
    ):
        assert values_stated(text) == [], text
    assert values_stated("Molecular weight = 18") == [("mol_weight", 18.0)]  # a value, wrong
    assert values_stated("Molecular weight: 180.2.") == [("mol_weight", 180.2)]  # a full stop


def test_a_number_inside_a_name_is_not_a_stated_value():
    """Seen: "molecular weight of BACE-1" was read as a molecular weight of 1."""
    assert values_stated("molecular weight of BACE-1") == []
    assert values_stated("the logP of CCl4 is unknown") == []
    assert values_stated("a logP of -1.2 and MW 180.2 g/mol") == [
        ("logp", -1.2), ("mol_weight", 180.2),
    ]  # fmt: skip


def test_a_statement_about_water_is_not_about_the_molecule():
    """Seen: "molecular weight of water is approximately 18.017" counted as a claim about the
    molecule."""
    assert values_stated("The molecular weight of water is approximately 18.017.") == []
    assert values_stated("molar mass of water (water = 18") == []
    assert values_stated("its molecular weight is 180.16 g/mol") == [("mol_weight", 180.16)]


def test_a_number_is_never_read_past_another_property():
    """The number after a second property's name is that property's: "2 hydrogen bond donors and
    a TPSA of 63.6" states no donor count of 63.6, and "Lipophilicity: lipophilic, logP of 5.2"
    states the logP once."""
    assert values_stated("It has 2 hydrogen bond donors and a TPSA of 63.6.") == [
        ("tpsa", 63.6), ("hbd", 2.0),
    ]  # fmt: skip
    assert values_stated("[Lipophilicity: lipophilic, logP of 5.2]") == [("logp", 5.2)]
    assert values_stated("molecular weight (MW) of 180.2") == [("mol_weight", 180.2)]


def test_no_artefact_is_read_from_the_shipped_responses():
    """Every value the extractor reads from 600 shipped stage-2 responses is a plain statement:
    no arithmetic, no name with a number, no water."""
    import re

    records = [r for r in shipped_cache().records()
               if "SMILES of a molecule is" in r["prompt"][-1]["content"]][:600]  # fmt: skip
    smiles = [re.search(r"SMILES of a molecule is (\S+)\. ", r["prompt"][-1]["content"]).group(1)
              for r in records]  # fmt: skip
    values = compute_descriptors(smiles, progress=False).to_dict("records")
    read = [c for r, v in zip(records, values, strict=True)
            for c in lardo.extract_claims(r["response"], v) if c.kind == "value"]  # fmt: skip
    assert len(read) > 50  # the responses do state values
    bad = [c.text for c in read if re.search(r"[*/+]|water|BACE-\d", c.text, re.IGNORECASE)]
    assert bad == []


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


PRETRAIN_SMILES = [
    "CCO", "c1ccccc1O", "CC(=O)O", "CCN", "c1ccncc1", "CCCl", "CCCCO", "c1ccoc1", "CC#N",
    "OCC(O)CO", "CN1CCOCC1", "NCCS",
]  # fmt: skip


def test_finetuning_starts_from_the_pretrained_encoder():
    graphs = graphs_from_smiles(PRETRAIN_SMILES[:6], progress=False)
    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=8)
    before = {k: v.clone() for k, v in gin.state_dict().items()}
    text = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    fitted = lardo.pretrain_clip(gin, graphs, text, epochs=2, batch_size=3, progress=False)
    history = fitted.history
    assert isinstance(fitted.model, lardo.GraphTextCLIP) and fitted.model.gin is gin
    assert list(history.columns) == ["epoch", "loss", "valid_loss", "temperature"]
    assert len(history) == 2 and history["temperature"].gt(0).all()
    assert history["valid_loss"].isna().all() and history.attrs["best_epoch"] == 2
    assert fitted.best_epoch == 2
    assert not gin.training
    # pre-training changed it
    assert any(not torch.equal(before[k], v) for k, v in gin.state_dict().items())
    predictor = lardo.build_predictor(gin, n_tasks=1)
    for key, value in gin.state_dict().items():
        assert torch.equal(predictor.gin.state_dict()[key], value), key
    with torch.no_grad():
        next(predictor.gin.parameters()).add_(1.0)  # fine-tuning a copy leaves the encoder alone
    assert not torch.equal(next(predictor.gin.parameters()), next(gin.parameters()))
    with pytest.raises(ValueError, match="row by row"):
        lardo.pretrain_clip(gin, graphs, np.zeros((5, 4), np.float32), epochs=1, progress=False)
    with pytest.raises(ValueError, match="valid_fraction"):
        lardo.pretrain_clip(gin, graphs, text, epochs=1, valid_fraction=1.0, progress=False)


def seeded_gin() -> GIN:
    torch.manual_seed(0)
    return GIN(num_layers=2, hidden=8)


def test_pretraining_holds_out_a_validation_part_stops_early_and_restores_the_best_epoch():
    graphs = graphs_from_smiles(PRETRAIN_SMILES, progress=False)
    text = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    # a learning rate far too large: the validation loss soon stops improving
    kwargs = dict(lr=0.3, batch_size=4, seed=0, valid_fraction=0.25, progress=False)
    gin = seeded_gin().train()
    fitted = lardo.pretrain_clip(gin, graphs, text, epochs=30, patience=2, **kwargs)
    history, best = fitted.history, fitted.best_epoch
    assert best == history.attrs["best_epoch"]
    assert np.isfinite(history["valid_loss"]).all() and np.isfinite(history["loss"]).all()
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert len(history) < 30 and len(history) == best + 2  # stopped two epochs after the best
    assert best == int(history.loc[history["valid_loss"].idxmin(), "epoch"])
    assert not gin.training
    # the best epoch's weights are restored: the same run stopped at that epoch ends there
    at_best = seeded_gin()
    again = lardo.pretrain_clip(at_best, graphs, text, epochs=best, **kwargs).history
    assert again["valid_loss"].tolist() == history["valid_loss"].head(best).tolist()
    for key, value in gin.state_dict().items():
        assert torch.equal(at_best.state_dict()[key], value), key
    # without patience it trains every epoch, keeping the best one's weights
    full = lardo.pretrain_clip(seeded_gin(), graphs, text, epochs=best + 3, **kwargs)
    assert len(full.history) == best + 3 and full.best_epoch == best


def test_description_pool_is_seeded_sorted_and_nested():
    small, large = lardo.description_pool(100, 10), lardo.description_pool(100, 40)
    assert len(small) == 10 and len(large) == 40 and set(small) <= set(large)
    assert np.array_equal(small, np.sort(small)) and small.dtype.kind == "i"
    order = np.random.default_rng(lardo.POOL_SEED).permutation(100)
    assert np.array_equal(small, np.sort(order[:10]))  # the first 10 of one permutation
    assert np.array_equal(lardo.description_pool(100, 10), small)  # seeded
    assert not np.array_equal(lardo.description_pool(100, 10, seed=1), small)
    assert np.array_equal(lardo.description_pool(100, None), np.arange(100))
    assert np.array_equal(lardo.description_pool(100, 500), np.arange(100))
    assert len(lardo.description_pool(100, 0)) == 0
    with pytest.raises(ValueError, match="pool size"):
        lardo.description_pool(100, -1)


FREE_ANSWER = "1. Lipophilicity\n2. Permeability\n3. Polar surface area\n4. BAABP"


def fake_llm(calls):
    """A stand-in LLM: the free-text stage-1 answer, or a stage-2 text naming its prompt."""

    def generate(prompts):
        calls.append(len(prompts))
        return [
            FREE_ANSWER
            if "SMILES of a molecule is" not in p[1]["content"]
            else f"[logP: {prompt_sha256(p)[:4]}]"
            for p in prompts
        ]

    return generate


def fake_ranker(calls, favourite="polar surface area"):
    """A stand-in for `load_ranker`: ``favourite`` gains most from the dataset prompt, then the
    names in `RANKED_NAMES` order."""

    def rank(prompts):
        calls.append(len(prompts))
        out = []
        for _ in prompts:
            scores = {n: [-10.0 - i, 2, -10.0] for i, n in enumerate(NAMES)}
            scores[favourite] = [-1.0, 3, -10.0]
            out.append(json.dumps(scores))
        return out

    return rank


#: `fake_ranker`'s kept names (top 4 besides logP and MW).
FAKE_KEPT = ["polar surface area", "hydrogen-bond donors", "hydrogen-bond acceptors",
             "rotatable bonds"]  # fmt: skip


def test_both_stage1_modes_go_through_the_cache(tmp_path):
    calls, rank_calls = [], []
    cache = ResponseCache(tmp_path / "r.jsonl")
    answer, free = lardo.stage1_free("bbbp", cache, "fake-lm", 128, generate_fn=fake_llm(calls))
    assert answer == FREE_ANSWER and calls == [1]
    assert free.names == ["Lipophilicity", "Permeability", "Polar surface area", "BAABP"]
    assert free.matched == {"Lipophilicity": "logp", "Polar surface area": "tpsa"}
    assert free.unmatched == list(UNMAPPED)
    table, ranked = lardo.stage1_ranked("bbbp", cache, "fake-lm", top=4,
                                        rank_fn=fake_ranker(rank_calls))  # fmt: skip
    assert rank_calls == [1] and ranked.names == FAKE_KEPT and len(table) == len(NAMES)
    assert table["property"].iloc[0] == "polar surface area"
    assert not set(ranked.descriptors) & {"logp", "mol_weight"}
    _, top2 = lardo.stage1_ranked("bbbp", cache, "fake-lm", top=2, rank_fn=fake_ranker(rank_calls))
    assert top2.names == FAKE_KEPT[:2]
    assert rank_calls == [1]  # the same prompt and settings: a hit, whatever top is
    assert lardo.stage1_keys("bbbp", "fake-lm", 128) == {r["key"] for r in cache.records()}
    assert lardo.stage1_keys("bbbp", "fake-lm", 64) != lardo.stage1_keys("bbbp", "fake-lm", 128)
    # a fresh cache on the same file replays both offline
    again = ResponseCache(tmp_path / "r.jsonl")

    def forbidden(prompts):
        raise AssertionError("called the model on a cache hit")

    assert lardo.stage1_free("bbbp", again, "fake-lm", 128, offline=True,
                             generate_fn=forbidden) == (answer, free)  # fmt: skip
    replayed, kept = lardo.stage1_ranked("bbbp", again, "fake-lm", offline=True, rank_fn=forbidden)
    assert replayed.equals(table) and kept == ranked and again.model_calls == 0
    with pytest.raises(LookupError, match="not in the response cache"):
        lardo.stage1_free("esol", again, "fake-lm", 128, offline=True, generate_fn=forbidden)
    # the same model loaded in bf16 (or 4-bit) is another model to the cache: no replay of the
    # float32 answers, its own keys; the float32 keys are the settings' own (shipped files replay)
    with pytest.raises(LookupError, match="not in the response cache"):
        lardo.stage1_free("bbbp", again, "fake-lm", 128, offline=True, generate_fn=forbidden,
                          lm_dtype="bf16")  # fmt: skip
    bf16 = lardo.stage1_keys("bbbp", "fake-lm", 128, lm_dtype="bf16")
    four_bit = lardo.stage1_keys("bbbp", "fake-lm", 128, lm_quantization="4bit")
    assert len(bf16 | four_bit | lardo.stage1_keys("bbbp", "fake-lm", 128)) == 6
    assert lardo.keyed_settings({"a": 1}) == {"a": 1}
    assert lardo.keyed_settings({"a": 1}, "bf16", "4bit") == {
        "a": 1, "lm_dtype": "bf16", "lm_quantization": "4bit",
    }  # fmt: skip


def test_describe_molecules_describes_each_variants_pool_through_the_cache(tmp_path):
    calls = []
    smiles = ["CCO", ASPIRIN, "c1ccccc1O", "CCN", "CCCl"]
    props = lardo.map_properties(["Lipophilicity", "Polar surface area", *UNMAPPED])
    pools = {"lardo": [0, 1, 2, 3, 4], "dsm_only": [4, 1], "no_dsm": [1, 3], "no_stage1": [3]}
    cache = ResponseCache(tmp_path / "r.jsonl")
    kwargs = dict(max_new_tokens=16, batch_size=2, pools=pools, progress=False)
    desc = lardo.describe_molecules("esol", smiles, cache, "fake-lm", props,
                                    generate_fn=fake_llm(calls), **kwargs)  # fmt: skip
    assert set(desc.texts) == set(lardo.VARIANTS) and desc.properties is props
    assert calls == [2, 2, 1, 2, 1]  # lardo in batches of 2, then no_dsm, then no_stage1
    for variant, pool in pools.items():
        assert desc.described(variant).tolist() == sorted(pool)
        assert all((t is None) == (i not in pool) for i, t in enumerate(desc.texts[variant]))
    assert desc.texts["dsm_only"][1] == lardo.dsm_text(ASPIRIN)
    assert desc.texts["lardo"][0].startswith("[logP: ")
    assert set(desc.stats) == set(lardo.LLM_VARIANTS) and desc.stats["lardo"].misses == 5
    assert desc.values["mol_weight"].iloc[1] == pytest.approx(180.159, abs=1e-2)
    prompts = [r["prompt"][1]["content"] for r in cache.records()]
    assert len(prompts) == 5 + 2 + 1  # stage 2 only: no stage-1 call inside
    assert all("SMILES of a molecule is" in p for p in prompts)
    assert not any(name in p for p in prompts for name in UNMAPPED)
    keys = lardo.response_keys(desc, "fake-lm", 16)
    assert keys == {r["key"] for r in cache.records()}
    assert lardo.response_keys(desc, "fake-lm", 32).isdisjoint(keys)
    # replayed offline from the file, without the model
    n_calls = len(calls)
    again = lardo.describe_molecules(
        "esol", smiles, ResponseCache(tmp_path / "r.jsonl"), "fake-lm", props,
        generate_fn=fake_llm(calls), offline=True, **kwargs,
    )  # fmt: skip
    assert len(calls) == n_calls and again.texts == desc.texts
    assert all(st.misses == 0 for st in again.stats.values())
    # a molecule outside the cached pools misses
    with pytest.raises(LookupError, match="not in the response cache"):
        lardo.describe_molecules(
            "esol", smiles, ResponseCache(tmp_path / "r.jsonl"), "fake-lm", props,
            generate_fn=fake_llm(calls), offline=True, **{**kwargs, "pools": {"no_stage1": [0]}},
        )  # fmt: skip
    # no pools: every variant describes every molecule
    everything = lardo.describe_molecules("esol", smiles[:2], cache, "fake-lm", props,
                                          variants=("lardo", "dsm_only"), max_new_tokens=16,
                                          generate_fn=fake_llm(calls), progress=False)  # fmt: skip
    assert set(everything.texts) == {"lardo", "dsm_only"}
    assert everything.texts["lardo"] == desc.texts["lardo"][:2]


def test_every_row_of_the_dataset_file_reaches_the_split(mirror):
    from molkit.data import fetch_file, load_dataset, scaffold_split

    with open(fetch_file("moleculenet/freesolv.csv"), newline="") as handle:
        # the official reader dropped the first data row
        n_rows = sum(1 for _ in csv.DictReader(handle))
    df = load_dataset("freesolv")
    assert len(df) + df.attrs["n_invalid_rows"] == n_rows
    split = scaffold_split(df["smiles"].tolist(), (0.8, 0.1, 0.1))
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(len(df)))


def test_settings_profiles_and_overrides():
    smoke, default, full = (lardo.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert smoke.datasets == ("bbbp", "esol") and smoke.splits == (0,) and smoke.rf_trees == 50
    assert default.datasets == ("bbbp", "bace", "esol") and default.splits == (0, 1)
    # the official split with three training seeds in default, two in smoke (the 2-D bootstrap)
    assert default.official_seeds == (0, 1, 2) and smoke.official_seeds == (0, 1)
    assert default.official_encoders == ("scratch", "lardo", "dsm_only")
    assert full.official_encoders == lardo.MAIN_ENCODERS and full.molecule_token
    assert default.pool is None and default.ablation_pool == 500 and default.stage1 == "ranked"
    assert (default.head_lr, default.encoder_lr) == (5e-4, 1e-4)
    assert not default.ablation_pretraining and full.ablation_pretraining
    assert full.pool is None and full.ablation_pool is None and len(full.splits) == 5
    assert full.lm_model == "mistralai/Mistral-7B-Instruct-v0.2"
    # smoke replays the shipped default responses: same LM, stage 1 and generation settings,
    # and pools that are prefixes of the default ones (one seeded permutation)
    for key in ("lm_model", "max_new_tokens", "stage1_max_new_tokens", "stage1", "stage1_top",
                "offline"):  # fmt: skip
        assert getattr(smoke, key) == getattr(default, key), key
    assert set(smoke.datasets) <= set(default.datasets)
    assert default.pool is None or smoke.pool <= default.pool
    assert smoke.ablation_pool <= default.ablation_pool and smoke.ablation_pool <= smoke.pool
    assert smoke.with_overrides(lm_model=None, pool=None) == smoke
    assert smoke.with_overrides(ablation_pool=8, datasets=["esol"]).datasets == ("esol",)
    assert smoke.with_overrides(stage1="free").stage1 == "free"
    with pytest.raises(
        ValueError, match="no setting 'lm'; valid settings: seed, datasets, official_seeds"
    ):
        smoke.with_overrides(lm="smollm2-135m-instruct")
    with pytest.raises(TypeError, match="finetune_max must be int \\| None, not 'all'"):
        smoke.with_overrides(finetune_max="all")


def test_settings_problems_name_the_setting_and_the_fix():
    """Validation lives in `Settings.problems` (one hook): `for_profile` and `with_overrides`
    raise one ValueError listing every problem; a plain constructor only lists them."""
    smoke = lardo.Settings.for_profile("smoke")
    assert smoke.problems() == []
    with pytest.raises(ValueError, match="stage1 must be one of \\['free', 'ranked'\\]"):
        smoke.with_overrides(stage1="beam")
    with pytest.raises(ValueError, match="ablation_pool \\(64\\) must lie inside pool \\(32\\)"):
        smoke.with_overrides(ablation_pool=64)
    assert lardo.Settings(pool=10, ablation_pool=None).problems() == [
        "ablation_pool (None) must lie inside pool (10): set ablation_pool <= pool, or pool=None"
    ]
    assert lardo.Settings(pool=None, ablation_pool=None).problems() == []
    with pytest.raises(ValueError, match="at least 8 molecules"):
        smoke.with_overrides(ablation_pool=4)
    with pytest.raises(TypeError, match="pool must be int \\| None, not 'all'"):
        smoke.with_overrides(pool="all")
    both = lardo.Settings(splits=(), official_seeds=(), official_encoders=("lardo", "gin"))
    assert both.problems() == [
        "splits and official_seeds are both empty: give at least one balanced split seed or one "
        "training seed on the official split",
        "official_encoders must be a non-empty selection of ('scratch', 'attr_masking', "
        "'lardo', 'dsm_only'), not ('lardo', 'gin')",
    ]
    with pytest.raises(ValueError, match="official_seeds repeats a seed"):
        smoke.with_overrides(official_seeds=(1, 1))
    with pytest.raises(ValueError, match="lm_dtype setting.*; stage1 must be one of"):
        smoke.with_overrides(lm_dtype="fp64", stage1="beam")  # every problem at once


def test_describe_dataset_reads_a_csv_file_for_the_prompts(mirror):
    path = "tests/data/user_csv/good_classification.csv"
    info = lardo.describe_dataset(path)
    assert info["title"] == "good_classification" and info["task"] == "classification"
    from molkit.data import load_dataset

    df = load_dataset(path)
    assert info["target"] == ", ".join(df.attrs["targets"])
    assert info["description"] == (
        f"The dataset good_classification.csv gives {info['target']} for {len(df)} molecules."
    )
    prompt = user_text(lardo.stage1_prompt(path))
    assert "The dataset is good_classification." in prompt and "classification" in prompt
    with pytest.raises(KeyError, match="or pass a CSV file"):
        lardo.describe_dataset("no-such-set")
    from molkit.methods.lardo import method

    hits = method._describe_csv.cache_info().hits
    lardo.stage2_prompt(ASPIRIN, path, "no_dsm", None)  # stage 2 asks once per molecule
    assert method._describe_csv.cache_info().hits == hits + 1


class HashEncoder:
    """A stand-in sentence encoder: a deterministic vector per text."""

    def embed(self, texts, batch_size=64, progress=False):
        return np.stack([
            np.random.default_rng(int(prompt_sha256(t)[:8], 16)).normal(size=8) for t in texts
        ]).astype(np.float32)  # fmt: skip


def fake_stage1_cache(settings, path) -> ResponseCache:
    """A cache holding both stage-1 responses of every dataset of ``settings`` (fake LLM)."""
    cache = ResponseCache(path)
    for name in settings.datasets:
        lardo.stage1_free(name, cache, settings.lm_model, settings.stage1_max_new_tokens,
                          generate_fn=fake_llm([]))  # fmt: skip
        lardo.stage1_ranked(name, cache, settings.lm_model, settings.stage1_top,
                            rank_fn=fake_ranker([]))  # fmt: skip
    return cache


def test_stage1_properties_replays_both_modes_and_counts_the_unmapped_names(tmp_path):
    settings = lardo.Settings.for_profile("smoke")
    cache = fake_stage1_cache(settings, tmp_path / "r.jsonl")
    res = lardo.stage1_properties(settings, cache=ResponseCache(tmp_path / "r.jsonl"))
    frame = res.frame()
    assert frame["dataset"].tolist() == ["bbbp"] * 3 + ["esol"] * 3
    assert frame["metric"].tolist() == [
        "free_text_names", "free_text_names_mapped", "free_text_names_unmapped",
    ] * 2  # fmt: skip
    assert frame["value"].tolist() == [4.0, 2.0, 2.0] * 2
    assert set(frame["method"]) == {"stage 1 (free text)"} and not res.claims
    table = res.table
    assert table["dataset"].tolist() == ["bbbp", "esol"]
    assert table["ranked: kept"].iloc[0] == FAKE_KEPT
    assert table["free text: unmapped"].tolist() == [2, 2]
    assert table["stage-2 values"].iloc[0] == ["logp", "mol_weight", "tpsa", "hbd", "hba",
                                                "rotatable_bonds"]  # fmt: skip
    used = res.properties
    assert used["bbbp"].names == FAKE_KEPT and used["bbbp"].unmatched == []  # settings.stage1
    assert list(res.rankings) == ["bbbp", "esol"]
    assert res.rankings_text().startswith("--- bbbp ---\n rank")
    assert res.answers == {"bbbp": FREE_ANSWER, "esol": FREE_ANSWER}
    text = res.answers_text(width=20)
    assert "--- bbbp: free-text stage-1 answer ---\n" + FREE_ANSWER[:20] + "\n" in text
    assert "--- esol: free-text stage-1 answer ---" in text
    free = lardo.stage1_properties(settings.with_overrides(stage1="free"), cache=cache)
    assert free.properties["esol"].matched == {
        "Lipophilicity": "logp", "Polar surface area": "tpsa",
    }  # fmt: skip
    assert free.table["stage-2 values"].iloc[1] == ["logp", "mol_weight", "tpsa"]
    with pytest.raises(LookupError):  # offline: nothing is generated
        lardo.stage1_properties(settings.with_overrides(datasets=("bace",)), cache=cache)


def fake_benchmark(tmp_path, **overrides):
    """`pretrain_and_finetune` on esol with a fake LLM's descriptions replayed offline and a
    hash encoder (returns settings, the pools, the result)."""
    from molkit.data import load_dataset

    settings = lardo.Settings.for_profile("smoke").with_overrides(
        datasets=("esol",), pool=32, ablation_pool=16, finetune_max=40, hidden=8, num_layers=2,
        rf_trees=5, **overrides,
    )  # fmt: skip
    cache = fake_stage1_cache(settings, tmp_path / "r.jsonl")
    stage1 = lardo.stage1_properties(settings, cache=cache)
    smiles = load_dataset("esol")["smiles"].tolist()
    pool = lardo.description_pool(len(smiles), settings.pool)
    ablation = lardo.description_pool(len(smiles), settings.ablation_pool)
    lardo.describe_molecules(
        "esol", smiles, cache, settings.lm_model, stage1.properties["esol"],
        settings.max_new_tokens,
        pools={"lardo": pool, "dsm_only": pool, "no_dsm": ablation, "no_stage1": ablation},
        generate_fn=fake_llm([]), progress=False,
    )  # fmt: skip
    bench = lardo.pretrain_and_finetune(settings, stage1, cache=cache, encoder=HashEncoder(),
                                        progress=False)  # fmt: skip
    return settings, stage1, smiles, pool, ablation, bench


def test_units_trained_side_by_side_equal_a_serial_run(mirror, tmp_path):
    """Two worker processes train the units (each seeds its own models) and give the serial
    run's predictions and curves, in the serial order."""
    from molkit.data import final_scoring

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    *_, serial = fake_benchmark(tmp_path / "a", official_seeds=(0, 1), splits=(3,), workers=1)
    *_, parallel = fake_benchmark(tmp_path / "b", official_seeds=(0, 1), splits=(3,), workers=2)
    assert (serial.workers, parallel.workers) == (1, 2)
    pd.testing.assert_frame_equal(serial.frame(), parallel.frame())
    pd.testing.assert_frame_equal(serial.finetune_history, parallel.finetune_history)
    for a, b in zip(serial.predictions["esol"].units, parallel.predictions["esol"].units,
                    strict=True):  # fmt: skip
        assert (a.protocol, a.split, a.seed) == (b.protocol, b.split, b.seed)
        assert a.preds.keys() == b.preds.keys()
        assert all(np.allclose(a.preds[k], b.preds[k]) for k in a.preds)
        with final_scoring():
            assert np.array_equal(np.asarray(a.y), np.asarray(b.y))


def test_pretrain_and_finetune_on_fake_descriptions(mirror, tmp_path):
    """The official split once per training seed, then each balanced split: rows per unit, the
    encoders of each protocol, the sealed test labels, pre-training on the pool's training part
    only, the curves with their kept epochs."""
    from molkit.data import SealedLabels, scaffold_split

    settings, stage1, smiles, pool, ablation, res = fake_benchmark(
        tmp_path, official_seeds=(0, 1), splits=(3,), ablation_pretraining=True
    )
    frame = res.frame()
    assert not res.claims  # the claims room builds them
    label = lardo.METHOD_LABELS.__getitem__
    official = [label(k) for k in settings.official_encoders]
    balanced = [label(k) for k in lardo.MAIN_ENCODERS + lardo.ABLATION_ENCODERS]

    def unit_rows(methods):
        rows = [(m, metric) for m in methods for metric in ("rmse_frozen", "rmse")]
        return rows + [(label("rf"), "rmse")]

    assert list(zip(frame["method"], frame["metric"], strict=True)) == (
        unit_rows(official) * 2 + unit_rows(balanced)
    )
    n_official, n_balanced = len(unit_rows(official)), len(unit_rows(balanced))
    assert frame["seed"].tolist() == [0] * n_official + [1] * n_official + [3] * n_balanced
    assert frame["split"].tolist() == (
        ["official scaffold test"] * 2 * n_official + ["scaffold test"] * n_balanced
    )
    assert np.isfinite(frame["value"]).all()
    units = res.predictions["esol"].units
    assert [(u.protocol, u.split, u.seed) for u in units] == [
        ("official", 0, 0), ("official", 0, 1), ("balanced", 3, 3),
    ]  # fmt: skip
    assert all(isinstance(u.y, SealedLabels) for u in units)
    assert set(units[0].preds) == {
        "rf",
        "mean",
        *settings.official_encoders,
        *(f"{k}_frozen" for k in settings.official_encoders),
    }
    from molkit.data import final_scoring

    with final_scoring():
        y0 = np.asarray(units[0].y)
        assert np.array_equal(y0, np.asarray(units[1].y))  # one split, two seeds
        rmse = np.sqrt(np.mean((units[1].preds["lardo"] - y0) ** 2))
    row = frame["method"].eq(label("lardo")) & frame["metric"].eq("rmse") & frame["seed"].eq(1)
    assert frame.loc[row, "value"].item() == pytest.approx(rmse)
    # the seeds change the training, not the split
    assert not np.allclose(units[0].preds["scratch"], units[1].preds["scratch"])
    desc = res.descriptions["esol"]
    assert desc.described("lardo").tolist() == pool.tolist()
    assert desc.described("no_stage1").tolist() == ablation.tolist()
    # the texts as the official code embeds them, and LarDo's as written on the shared molecules
    emb = res.text_embeddings["esol"]
    assert set(emb) == {*lardo.VARIANTS, "lardo_raw"}
    assert np.isnan(emb["lardo_raw"][np.setdiff1d(pool, ablation)]).all()
    assert np.isfinite(emb["lardo_raw"][ablation]).all()
    # pre-training sees only the pool's molecules in each unit's training part
    sizes = res.pool_sizes
    assert sizes["protocol"].tolist() == ["official", "official", "balanced"]
    assert sizes["encoders"].tolist() == [3, 3, 7]
    official_split = lardo.official_split(smiles)
    balanced_split = scaffold_split(smiles, (0.8, 0.1, 0.1), balanced=True, seed=3)
    for (_, row), parts in zip(sizes.iterrows(), [official_split] * 2 + [balanced_split],
                               strict=True):  # fmt: skip
        assert row["train"] + row["valid"] + row["test"] == len(smiles)
        assert row["pre-training pool"] == len(set(pool) & set(parts["train"]))
        assert row["ablation pool"] == len(set(ablation) & set(parts["train"]))
    history = res.pretrain_history
    assert set(history["method"]) == {"lardo", "dsm_only", "lardo_ablation_pool", "no_dsm",
                                      "no_stage1"}  # fmt: skip
    on_ablation = history["method"].isin(lardo.ABLATION_ENCODERS)
    assert (history.loc[on_ablation, "pairs"] == sizes["ablation pool"].iloc[2]).all()
    assert {"epoch", "loss", "valid_loss", "temperature", "best_epoch"} <= set(history.columns)
    tuned = res.finetune_history
    assert len(tuned.groupby(["protocol", "seed", "method"])) == 3 + 3 + 7
    assert (tuned["best_epoch"] <= tuned.groupby(["protocol", "seed", "method"])["epoch"]
            .transform("max")).all()  # fmt: skip
    epochs = res.chosen_epochs()
    assert epochs.loc[("official", "esol", "lardo", "fine-tuning"), "units"] == 2
    assert set(res.seconds) == {"descriptions and embeddings", "training"}
    assert res.embedding_map().dataset == "esol" and res.embedding_map().unit == (
        "official split, seed 0"
    )
    examples = res.examples(2)
    assert examples["smiles"].tolist() == [smiles[i] for i in ablation[:2]]
    assert list(examples.columns) == ["smiles", "RDKit", *(label(v) for v in lardo.VARIANTS)]
    summary = res.summary()
    assert set(summary.columns.get_level_values("split")) == {
        "official scaffold test", "scaffold test",
    }  # fmt: skip


def test_text_information_retrieves_among_the_held_out_molecules(mirror, tmp_path):
    """Retrieval: every source pre-trained on the ablation pool's molecules in the official
    split's training part, one run per seed, scored among the pool's validation and test
    molecules; hits stacked (n_seeds, n_items), chance k / n per dataset."""
    settings, _, smiles, _, ablation, bench = fake_benchmark(tmp_path, official_seeds=(0, 1),
                                                             splits=())  # fmt: skip
    res = lardo.text_information(settings, bench)
    parts = lardo.official_split(smiles)
    held_out = np.intersect1d(ablation, np.concatenate([parts["valid"], parts["test"]]))
    n = len(held_out)
    assert n >= 2 and res.seeds == (0, 1) and res.split == "official split"
    assert set(res.hits) == set(lardo.RETRIEVAL_SOURCES)
    for source in lardo.RETRIEVAL_SOURCES:
        assert res.hits[source][1].shape == res.hits[source][5].shape == (2, n)
        assert (res.hits[source][5] >= res.hits[source][1]).all()
    assert np.allclose(res.chance[5], min(5, n) / n) and res.groups.tolist() == ["esol"] * n
    assert res.table["k"].tolist() == [1, 5] * len(lardo.RETRIEVAL_SOURCES)
    first = res.table.iloc[1]
    assert first["hit rate"] == pytest.approx(res.hits["lardo"][5].mean())
    assert first["chance"] == pytest.approx(min(5, n) / n)
    assert first["held-out molecules"] == n and first["seeds"] == 2
    frame = res.frame()
    assert len(frame) == 2 * len(lardo.RETRIEVAL_SOURCES) * 2  # seeds x sources x k
    assert set(frame["split"]) == {"held out (official split)"}
    assert frame["note"].iloc[0] == f"{n} candidates; chance {1 / n:.3f}"
    train = np.intersect1d(ablation, parts["train"])
    assert set(res.history["pairs"]) == {len(train)}


def descriptions_of(texts: dict[str, list[str | None]], smiles: list[str]) -> lardo.Descriptions:
    values = compute_descriptors(smiles, progress=False)
    return lardo.Descriptions("esol", smiles, texts, lardo.map_properties([]), values, {})


RIGHT, WRONG = "logP 1.3, molecular weight 180.2", "logP 4.5, molecular weight 400"


def calibration_texts() -> dict[str, list[str | None]]:
    """14 aspirins: LarDo and the DSM text describe all, the ablations molecules 2-13 only; LarDo
    is wrong on molecules 0 and 1, which the comparison must leave out."""
    return {
        "lardo": ["logP 9.9"] * 2 + [RIGHT] * 12,
        "no_dsm": [None] * 2 + [WRONG] * 11 + ["logP 1.3"],
        "no_stage1": [None] * 2 + ["no checkable claim"] * 12,
        "dsm_only": [lardo.dsm_text(ASPIRIN)] * 14,
    }


def test_description_checks_count_claims_per_description_on_the_shared_molecules():
    desc = descriptions_of(calibration_texts(), [ASPIRIN] * 14)
    desc.texts["no_dsm"][5] = f"It is {ASPIRIN}, molecular weight 400"  # echoes its SMILES
    checks = lardo.description_checks(desc, tuple(lardo.VARIANTS))
    assert list(checks.columns) == [
        "dataset", "molecule", "variant", "claims", "value_claims", "contradictions",
        "contradicts", "states_mw", "echoes_smiles",
    ]  # fmt: skip
    assert len(checks) == 12 * 4 and sorted(set(checks["molecule"])) == list(range(2, 14))
    by = checks.groupby("variant", sort=False)
    assert list(by.groups) == list(lardo.VARIANTS)
    assert by["contradicts"].sum().to_dict() == {
        "lardo": 0, "no_dsm": 11, "no_stage1": 0, "dsm_only": 0,
    }  # fmt: skip
    assert by["claims"].sum()[["lardo", "no_dsm", "no_stage1"]].tolist() == [24, 22, 0]
    assert by["states_mw"].sum()[["lardo", "no_dsm"]].tolist() == [12, 0]
    assert by["echoes_smiles"].sum().to_dict() == {
        "lardo": 0, "no_dsm": 1, "no_stage1": 0, "dsm_only": 0,
    }  # fmt: skip
    last = checks[(checks["molecule"] == 13) & (checks["variant"] == "no_dsm")].iloc[0]
    assert (last["claims"], last["value_claims"], last["contradicts"]) == (1, 1, False)
    # two variants share more molecules than four
    assert len(lardo.description_checks(desc, ("lardo", "dsm_only"))) == 2 * 14


def test_calibration_counts_per_checkable_claim_and_the_dsm_claim():
    settings = lardo.Settings.for_profile("smoke")
    res = lardo.calibration(settings, {"esol": descriptions_of(calibration_texts(),
                                                               [ASPIRIN] * 14)})  # fmt: skip
    frame = res.frame()
    metrics = [
        "checkable_claims", "share_of_claims_contradicting_rdkit",
        "share_descriptions_with_checkable_claim", "share_descriptions_contradicting_rdkit",
        "share_descriptions_stating_mw", "share_descriptions_echoing_smiles",
    ]  # fmt: skip
    labels = [lardo.METHOD_LABELS[v] for v in lardo.VARIANTS]
    assert list(zip(frame["method"], frame["metric"], strict=True)) == [
        (m, metric) for m in labels for metric in metrics
    ]
    assert set(frame["dataset"]) == {"all"} and not res.claims
    values = frame.pivot(index="method", columns="metric", values="value").loc[labels]
    assert values["checkable_claims"].tolist() == [24, 23, 0, 12 * 7]
    per_claim = values["share_of_claims_contradicting_rdkit"].tolist()
    assert per_claim[:2] == [0.0, pytest.approx(22 / 23)] and math.isnan(per_claim[2])
    assert per_claim[3] == 0.0  # the DSM text states RDKit's own values
    assert values["share_descriptions_contradicting_rdkit"].tolist() == [0.0, 11 / 12, 0.0, 0.0]
    assert values["share_descriptions_with_checkable_claim"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert frame["note"].iloc[0] == "12 descriptions, 24 checkable claims"
    summary = res.summary
    assert summary.index.tolist() == list(lardo.VARIANTS)
    assert summary.loc["no_dsm", ["contradictions", "checkable_claims"]].tolist() == [22, 23]
    contradictions, claims = res.counts["no_dsm"]
    assert contradictions.tolist() == [2.0] * 11 + [0.0] and claims.tolist() == [2.0] * 11 + [1.0]
    assert set(res.table["dataset"]) == {"esol"} and "9.9" not in "".join(res.table["text"])
    assert len(res.table[res.table["variant"] == "lardo"]) == 24
    examples = res.contradicting_examples(per_variant=2)
    assert examples["variant"].tolist() == ["no_dsm", "no_dsm"]
    # the claim: contradictions per checkable claim, the same 12 molecules paired
    (claim,) = lardo.calibration_claims(res)
    assert claim.ours == pytest.approx(0 - 22 / 23) and claim.verdict == "holds"
    assert claim.n == 12 and claim.kind == "reference" and claim.paper == lardo.PAPER
    assert claim.detail == (
        "LarDo (stage 1 + DSM): 0 of 24 checkable claims; LarDo without DSM values: 22 of 23; "
        "the same 12 molecules of esol"
    )


def test_reader_view_prints_what_rdkit_says_of_each_claim(mirror, tmp_path):
    settings, stage1, smiles, _, ablation, bench = fake_benchmark(
        tmp_path, official_seeds=(0,), splits=(), n_examples=2
    )
    desc = bench.descriptions["esol"]
    desc.texts["lardo"][ablation[0]] = "Its molecular weight = 18 and it is large."
    desc.texts["lardo"][ablation[1]] = "[logP: unknown]"
    view = lardo.reader_view(settings, stage1, bench)
    assert view.table["molecule"].tolist() == ablation[:2].tolist()
    first, second = view.table.iloc[0], view.table.iloc[1]
    assert first["smiles"] == smiles[ablation[0]]
    assert first["properties"] == ", ".join(FAKE_KEPT)
    values = desc.values.iloc[ablation[0]]
    assert first["values_given"] == "; ".join(
        lardo.value_text(k, values[k]) for k in lardo.prompt_descriptors(stage1.properties["esol"])
    )
    assert first["description"] == "Its molecular weight = 18 and it is large."
    mw = values["mol_weight"]
    assert first["rdkit"] == f"'molecular weight = 18': RDKit {mw:.3g}, contradicts"
    assert second["rdkit"] == "no claim RDKit can check"
    text = view.text()
    assert text.splitlines()[0] == f"esol molecule {ablation[0]}: {smiles[ablation[0]]}"
    assert "RDKit says: no claim RDKit can check" in text and text.count("\n\n") == 1


def test_fast_roc_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    for _ in range(20):
        y = (rng.random(15) > 0.4).astype(float)
        p = rng.integers(0, 4, 15) / 4  # ties
        if 0 < y.sum() < len(y):
            assert lardo.roc_auc_fast(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert math.isnan(lardo.roc_auc_fast(np.ones(4), np.arange(4.0)))
    assert lardo.roc_auc_fast([0, 1, np.nan], [0.2, 0.9, 0.1]) == 1.0


def test_shared_baselines_compute_what_lardo_computed():
    """The probe and the Morgan forest moved to molkit.methods.baselines: the same numbers as
    lardo's own code before (scaler + logistic / ridge per task; a forest fitted on all cores)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from molkit.chem import morgan_bits
    from molkit.methods.baselines import fit_predict_per_task, linear_probe, morgan_model

    rng = np.random.default_rng(0)
    emb, y = rng.normal(size=(30, 4)), (rng.random(30) > 0.5).astype(float)
    probe = fit_predict_per_task(functools.partial(linear_probe, "classification"), emb,
                                 y[:, None], emb, "classification")  # fmt: skip
    own = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(emb, y.astype(int))
    assert np.array_equal(probe[:, 0], own.predict_proba(emb)[:, 1])
    ridge = fit_predict_per_task(functools.partial(linear_probe, "regression"), emb, emb[:, :1],
                                 emb, "regression")  # fmt: skip
    own = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(emb, emb[:, 0])
    assert np.array_equal(ridge[:, 0], own.predict(emb))
    smiles = np.array(["CCO", "CCN", "c1ccccc1", "c1ccccc1O", "CCCl", "c1ccncc1"], dtype=object)
    labels = np.array([0, 0, 1, 1, 0, 1.0])
    shared = fit_predict_per_task(
        functools.partial(morgan_model, "rf", "classification", seed=0, n_estimators=10),
        smiles, labels, smiles, "classification",
    )  # fmt: skip
    x = morgan_bits(list(smiles), progress=False)
    forest = RandomForestClassifier(n_estimators=10, random_state=0, n_jobs=-1).fit(x, labels)
    assert np.array_equal(shared[:, 0], forest.set_params(n_jobs=1).predict_proba(x)[:, 1])


def test_cli_responses_generate_calls_the_lardo_package(monkeypatch, tmp_path):
    from molkit import cli

    calls = []

    def record(*args, lm_model=None, **kwargs):  # --lm-model, where the CLI passes it
        calls.append((args, kwargs, lm_model))

    monkeypatch.setattr(lardo, "generate_responses", record)
    out = tmp_path / "r.jsonl.gz"
    argv = ["responses", "generate", "--profile", "smoke", "--threads", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    assert calls == [(("smoke",), {"out": out, "threads": 1}, None)]
    assert cli.main(["responses", "generate"]) == 0
    assert calls[-1] == (("default",), {"out": None, "threads": None}, None)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["responses", "generate", "--profile", "quick"])


# ------------------------------------------------- replays of the shipped default-profile responses


def test_regenerating_the_default_profile_from_its_records_gives_the_shipped_file(
    mirror, tmp_path, capsys
):
    """The prompts, generation settings, stage-1 modes and pools still produce the keys the
    shipped file holds: `generate_responses` (``molkit responses generate``), run on a cache that
    holds the shipped records, finds every prompt there (no model call) and exports the same
    records."""
    from molkit.models.lm.responses import read_records

    assert lardo.RESPONSE_FILE.exists(), f"regenerate it: {lardo.REGENERATE_COMMAND}"
    assert lardo.RESPONSE_FILE.name == "lardo_responses_v2.jsonl.gz"
    assert lardo.RESPONSE_FILE.stat().st_size < 20e6
    header = json.loads(gzip.open(lardo.RESPONSE_FILE, "rt").readline())["header"]
    assert header["format"] == FORMAT and header["profile"] == "default"
    plan = lardo.response_plan("default")
    assert [stage for stage, *_ in plan] == ["smoke"] * 6 + ["default"] * 9
    writable = tmp_path / "cache.jsonl"
    writable.write_bytes(gzip.decompress(lardo.RESPONSE_FILE.read_bytes()))
    out = lardo.generate_responses("default", out=tmp_path / "again.jsonl.gz", writable=writable,
                                   threads=torch.get_num_threads(), progress=False)  # fmt: skip
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == len(plan) == 15 and all(": 0 generated" in line for line in lines)
    assert list(read_records(out)) == list(read_records(lardo.RESPONSE_FILE))
    again = json.loads(gzip.open(out, "rt").readline())["header"]
    assert (
        again["command"]
        == lardo.REGENERATE_COMMAND
        == "molkit responses generate --profile default"
    )
    # the fields that describe the records are the same; the machine, threads, dtype and the
    # generation time and tokens describe the run that wrote them (nothing is generated here)
    for field in ("format", "version", "records", "models", "profile"):
        assert again[field] == header[field], field
    assert again["new_tokens"] == 0


def test_the_smoke_profile_replays_from_the_shipped_file(mirror):
    """Both stage-1 calls of every default dataset, and every smoke description (the smoke pools
    are prefixes of the default ones), are in the shipped file."""
    from molkit.data import load_dataset

    cache = shipped_cache()
    keys = {r["key"] for r in cache.records()}
    default = lardo.Settings.for_profile("default")
    for name in default.datasets:
        assert lardo.stage1_keys(name, default.lm_model, default.stage1_max_new_tokens) <= keys
    smoke = lardo.Settings.for_profile("smoke")
    properties = lardo.stage1_properties(smoke, cache=cache).properties
    for name in smoke.datasets:
        smiles = load_dataset(name)["smiles"].tolist()
        for variant in lardo.LLM_VARIANTS:
            n = smoke.pool if variant == "lardo" else smoke.ablation_pool
            chosen = [smiles[i] for i in lardo.description_pool(len(smiles), n)]
            desc = lardo.describe_molecules(
                name, chosen, cache, smoke.lm_model, properties[name], smoke.max_new_tokens,
                variants=(variant,), offline=True, progress=False,
            )  # fmt: skip
            assert desc.stats[variant].hits == n and all(desc.texts[variant])


def test_stage1_properties_on_the_shipped_responses():
    settings = lardo.Settings.for_profile("smoke")
    res = lardo.stage1_properties(settings, cache=shipped_cache())
    table, frame = res.table, res.frame()
    assert not res.claims and table["dataset"].tolist() == ["bbbp", "esol"]
    assert frame["metric"].tolist() == [
        "free_text_names", "free_text_names_mapped", "free_text_names_unmapped",
    ] * 2  # fmt: skip
    for name in settings.datasets:
        part = frame[frame["dataset"] == name].set_index("metric")["value"]
        assert (
            part["free_text_names_mapped"] + part["free_text_names_unmapped"]
            == part["free_text_names"]
        )
        ranking = res.rankings[name]
        assert len(ranking) == len(lardo.RANKED_NAMES) and ranking["kept"].sum() == 4
        assert np.isfinite(ranking["pmi"]).all() and (ranking["tokens"] > 0).all()
        used = res.properties[name]  # settings.stage1 == "ranked"
        assert len(used.names) == 4 and set(used.names) == set(used.matched)
        assert not set(used.descriptors) & {"logp", "mol_weight"}
        assert len(res.answers[name]) > 0
    assert all(row[:2] == ["logp", "mol_weight"] for row in table["stage-2 values"])
    assert "--- bbbp: free-text stage-1 answer ---" in res.answers_text()


def test_generation_speed_states_the_shipped_cost_and_the_paper_scale_budget(mirror):
    """Nothing is generated with throughput_prompts 0; the shipped file's header and the ``full``
    profile's budget (which LLM, how many responses, how many tokens, how to regenerate them)."""
    settings = lardo.Settings.for_profile("smoke")
    stage1 = lardo.stage1_properties(settings, cache=shipped_cache())
    speed = lardo.generation_speed(settings, stage1)
    assert not speed.rows and speed.table.empty  # throughput_prompts 0: no model call
    header = json.loads(gzip.open(lardo.RESPONSE_FILE, "rt").readline())["header"]
    assert speed.shipped.records == header["records"]
    assert speed.shipped.new_tokens == header["new_tokens"]
    assert speed.shipped.tokens_per_second == header["new_tokens"] / header["generation_seconds"]
    budget = speed.budget
    full = lardo.Settings.for_profile("full")
    assert budget.profile == "full" and budget.lm_model == full.lm_model
    assert budget.table.index.tolist() == list(full.datasets)
    assert (budget.table[list(lardo.LLM_VARIANTS)].to_numpy().T == budget.table["molecules"]
            .to_numpy()).all()  # pool None: every molecule, every variant  # fmt: skip
    assert budget.responses == 4 * budget.table["molecules"].sum() - budget.table[
        "molecules"].sum() + 2 * len(full.datasets)  # fmt: skip
    assert budget.new_tokens_at_most == (
        3 * budget.table["molecules"].sum() * 256 + len(full.datasets) * 256
    )
    text = budget.text()
    assert text.splitlines()[0].startswith(
        f"The full profile describes {budget.table['molecules'].sum():,} molecules of 9 datasets "
        "with mistralai/Mistral-7B-Instruct-v0.2 (4bit)"
    )
    assert "`molkit responses generate --profile full`" in text
    assert "Extrapolated, not measured" in text and speed.shipped.line() in text
    hours = budget.new_tokens_at_most / (speed.shipped.tokens_per_second * 134.5e6 / 7.24e9) / 3600
    assert budget.hours_extrapolated() == pytest.approx(hours)
    # the default profile: LarDo on every molecule, the ablations on 500 per dataset
    default = lardo.response_budget("default")
    assert default.table["no_dsm"].tolist() == [500, 500, 500]
    assert default.table["lardo"].tolist() == default.table["molecules"].tolist()
    assert "`make responses`" in default.text()
    assert lardo.default_output("default") == lardo.RESPONSE_FILE
    assert lardo.default_output("full").name == "lardo_responses_full.jsonl.gz"


def test_response_budget_says_which_datasets_it_could_not_count(monkeypatch):
    """Without a dataset's file (no mirror, no network) the budget leaves it out and says so,
    instead of stopping the notebook."""
    from molkit.methods.lardo import responses

    monkeypatch.setattr(responses, "_molecules", lambda name: None if name == "hiv" else 100)
    budget = lardo.response_budget("full")
    assert budget.missing == ("hiv",) and "hiv" not in budget.table.index
    assert budget.responses == 8 * (3 * 100 + 2)
    assert budget.text().splitlines()[1] == (
        "Not counted (their files are not available here): hiv."
    )


def test_pretrain_and_finetune_replays_the_shipped_responses(mirror):
    settings = lardo.Settings.for_profile("smoke").with_overrides(
        datasets=("esol",), official_seeds=(0,), splits=(), finetune_max=40, hidden=8,
        num_layers=2, rf_trees=5,
    )  # fmt: skip
    cache = shipped_cache()
    stage1 = lardo.stage1_properties(settings, cache=cache)
    res = lardo.pretrain_and_finetune(settings, stage1, cache=cache, encoder=HashEncoder(),
                                      progress=False)  # fmt: skip
    frame = res.frame()
    labels = [lardo.METHOD_LABELS[k] for k in settings.official_encoders]
    expected = [(m, metric) for m in labels for metric in ("rmse_frozen", "rmse")]
    expected.append((lardo.METHOD_LABELS["rf"], "rmse"))
    assert list(zip(frame["method"], frame["metric"], strict=True)) == expected
    assert set(frame["split"]) == {"official scaffold test"} and np.isfinite(frame["value"]).all()
    desc = res.descriptions["esol"]
    assert len(desc.described("lardo")) == settings.pool
    assert len(desc.described("no_stage1")) == settings.ablation_pool
    # every replayed description passes through the official substitution before embedding
    lardo_texts = [desc.texts["lardo"][i] for i in desc.described("lardo")]
    assert any("the molecule" in t.lower() for t in lardo_texts)
    assert set(res.pretrain_history["method"]) == {"lardo", "dsm_only"}
    calib = lardo.calibration(settings, res.descriptions)
    assert calib.summary["descriptions"].tolist() == [settings.ablation_pool] * 4
    assert len(lardo.calibration_claims(calib)) == 1


# ---------------------------------------------------------------- paper scale: loading and memory


def test_full_profile_generates_with_mistral_in_4bit_and_checks_memory(tmp_path, monkeypatch):
    """Issue 19: ``full`` generates with Mistral-7B in 4-bit (bf16 for what stays unquantized); a
    tiny random Mistral (the same architecture) generates a stage-1 answer through the cache with
    bf16 weights; 4-bit without CUDA names the setting; "fp32" leaves the weights to the precision
    policy as before; the memory line (generation only), its refusal, the unavailable estimate."""
    from transformers import AutoTokenizer

    from molkit.methods.lardo import descriptions
    from molkit.models.lm import save_tiny_random_lm
    from molkit.models.lm.memory import InsufficientMemoryError
    from molkit.models.runtime import inference_dtype

    smoke, default, full = (lardo.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert (full.lm_dtype, full.lm_quantization) == ("bf16", "4bit")
    assert (smoke.lm_dtype, smoke.lm_quantization) == (default.lm_dtype, None) == ("fp32", None)
    with pytest.raises(ValueError, match="lm_dtype setting"):
        smoke.with_overrides(lm_dtype="fp64")
    with pytest.raises(ValueError, match="lm_quantization setting"):
        smoke.with_overrides(lm_quantization="nf4")
    corpus = [lardo.stage1_prompt("bbbp")[-1]["content"], FREE_ANSWER] * 5
    path = str(save_tiny_random_lm(tmp_path / "mistral", corpus, "mistral", vocab_size=300))
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tokenizer.save_pretrained(path)  # LarDo's prompts are chat messages
    cache = ResponseCache(tmp_path / "r.jsonl")
    answer, _ = lardo.stage1_free("bbbp", cache, path, 4, lm_dtype="bf16")
    assert cache.model_calls == 1 and [r["response"] for r in cache.records()] == [answer]
    assert cache.records()[0]["settings"]["lm_dtype"] == "bf16"
    model, _ = descriptions._causal_lm(path, "bf16", None)  # the model that answered, cached
    assert model.config.model_type == "mistral"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    plain, _ = descriptions._causal_lm(path, "fp32", None)
    assert {p.dtype for p in plain.parameters()} == {inference_dtype("cpu")}
    descriptions._causal_lm.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="lm_quantization='4bit'.*no CUDA device"):
        lardo.stage1_free("esol", cache, path, 4, lm_dtype="bf16", lm_quantization="4bit")
    assert lardo.lm_memory(smoke).endswith("is not loaded (offline: every response replays "
                                           "from the cache; throughput_prompts = 0)")  # fmt: skip
    settings = smoke.with_overrides(lm_model=path, lm_dtype="bf16", offline=False)
    line = lardo.lm_memory(settings, "cpu", free_bytes=10**12)
    assert (
        line.startswith(f"memory: {os.path.basename(path)} needs about")
        and "bf16, inference, batch 8 x" in line
    )
    speed = settings.with_overrides(offline=True, throughput_prompts=3)  # only the benchmark loads
    assert "inference, batch 3 x 544 tokens" in lardo.lm_memory(speed, "cpu", free_bytes=10**12)
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit' or throughput_"):
        lardo.lm_memory(speed, "cpu", free_bytes=1000)
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit', lm_batch_size"):
        lardo.lm_memory(settings, "cpu", free_bytes=1000)
    absent = lardo.lm_memory(full.with_overrides(offline=True), "cpu", free_bytes=10**12)
    assert absent.startswith("memory: no estimate for mistralai/Mistral-7B-Instruct-v0.2")
