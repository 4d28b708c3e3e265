"""MolGraph-LarDo: property mapping, both stage-1 modes, prompts and the unmapped-property guard,
calibration checks per description, CLIP loss and pre-training with early stopping, weight
loading, the description pools, the response cache, settings per profile, the experiment
functions (on fake LLM responses, and replayed from the shipped file) and the CLI."""

import csv
import functools
import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.chem import compute_descriptors, graphs_from_smiles, match_property
from molkit.methods import lardo
from molkit.methods.experiment import CONTRADICTED, HOLDS, Results
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


def test_extract_claims_flags_values_and_qualitative_claims_that_contradict_rdkit():
    values = aspirin_values()
    claims = lardo.extract_claims(
        "[Lipophilicity: highly lipophilic, logP of 5.2] [molecular weight: 180.2 g/mol] "
        "It has 2 hydrogen bond donors and a TPSA of 63.6.",
        values,
    )
    found = {(c.descriptor, c.kind, c.stated): c.contradicts for c in claims}
    assert found[("logp", "value", 5.2)] is True
    assert found[("logp", "qualitative", None)] is True  # "highly lipophilic" with logP 1.31
    assert found[("mol_weight", "value", 180.2)] is False
    assert found[("hbd", "value", 2.0)] is True
    assert found[("tpsa", "value", 63.6)] is False
    assert not [c for c in lardo.extract_claims("The molecule is hydrophilic.", values)
                if c.contradicts]  # fmt: skip
    two = compute_descriptors([ASPIRIN] * 2, progress=False)
    table = lardo.calibration_table(["logP 1.3", "logP 4.0"], two, "v")
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
    history = lardo.pretrain_clip(gin, graphs, text, epochs=2, batch_size=3, progress=False)
    assert list(history.columns) == ["epoch", "loss", "valid_loss", "temperature"]
    assert len(history) == 2 and history["temperature"].gt(0).all()
    assert history["valid_loss"].isna().all() and history.attrs["best_epoch"] == 2
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
    history = lardo.pretrain_clip(gin, graphs, text, epochs=30, patience=2, **kwargs)
    best = history.attrs["best_epoch"]
    assert np.isfinite(history["valid_loss"]).all() and np.isfinite(history["loss"]).all()
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert len(history) < 30 and len(history) == best + 2  # stopped two epochs after the best
    assert best == int(history.loc[history["valid_loss"].idxmin(), "epoch"])
    assert not gin.training
    # the best epoch's weights are restored: the same run stopped at that epoch ends there
    at_best = seeded_gin()
    again = lardo.pretrain_clip(at_best, graphs, text, epochs=best, **kwargs)
    assert again["valid_loss"].tolist() == history["valid_loss"].head(best).tolist()
    for key, value in gin.state_dict().items():
        assert torch.equal(at_best.state_dict()[key], value), key
    # without patience it trains every epoch, keeping the best one's weights
    full = lardo.pretrain_clip(seeded_gin(), graphs, text, epochs=best + 3, **kwargs)
    assert len(full) == best + 3 and full.attrs["best_epoch"] == best


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
    assert default.datasets == ("bbbp", "bace", "esol") and default.splits == (0, 1, 2)
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
    with pytest.raises(ValueError, match="no setting 'lm'; valid settings: datasets, splits"):
        smoke.with_overrides(lm="smollm2-135m-instruct")
    with pytest.raises(TypeError, match="finetune_max must be int \\| None, not 'all'"):
        smoke.with_overrides(finetune_max="all")


def test_settings_reject_an_unknown_stage1_and_an_ablation_pool_outside_the_pool():
    smoke = lardo.Settings.for_profile("smoke")
    with pytest.raises(ValueError, match="stage1 must be one of \\['free', 'ranked'\\]"):
        smoke.with_overrides(stage1="beam")
    with pytest.raises(ValueError, match="ablation_pool \\(64\\) must lie inside pool \\(32\\)"):
        smoke.with_overrides(ablation_pool=64)
    with pytest.raises(ValueError, match="ablation_pool \\(None\\) must lie inside pool \\(10\\)"):
        lardo.Settings(pool=10, ablation_pool=None)
    assert lardo.Settings(pool=None, ablation_pool=None).pool is None
    assert lardo.Settings(pool=10, ablation_pool=10).ablation_pool == 10
    with pytest.raises(ValueError, match="at least 8 molecules"):
        smoke.with_overrides(ablation_pool=4)
    with pytest.raises(TypeError, match="pool must be int \\| None, not 'all'"):
        smoke.with_overrides(pool="all")


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
    table = res.artefacts["table"]
    assert table["dataset"].tolist() == ["bbbp", "esol"]
    assert table["ranked: kept"].iloc[0] == FAKE_KEPT
    assert table["free text: unmapped"].tolist() == [2, 2]
    assert table["stage-2 values"].iloc[0] == ["logp", "mol_weight", "tpsa", "hbd", "hba",
                                                "rotatable_bonds"]  # fmt: skip
    used = res.artefacts["properties"]
    assert used["bbbp"].names == FAKE_KEPT and used["bbbp"].unmatched == []  # settings.stage1
    assert set(res.artefacts["rankings"]) == {"bbbp", "esol"}
    assert res.artefacts["answers"] == {"bbbp": FREE_ANSWER, "esol": FREE_ANSWER}
    text = lardo.stage1_answers(res.artefacts["answers"], width=20)
    assert "--- bbbp: free-text stage-1 answer ---\n" + FREE_ANSWER[:20] + "\n" in text
    assert "--- esol: free-text stage-1 answer ---" in text
    free = lardo.stage1_properties(settings.with_overrides(stage1="free"), cache=cache)
    assert free.artefacts["properties"]["esol"].matched == {
        "Lipophilicity": "logp", "Polar surface area": "tpsa",
    }  # fmt: skip
    assert free.artefacts["table"]["stage-2 values"].iloc[1] == ["logp", "mol_weight", "tpsa"]
    with pytest.raises(LookupError):  # offline: nothing is generated
        lardo.stage1_properties(settings.with_overrides(datasets=("bace",)), cache=cache)
    speed = lardo.generation_speed(settings, used)  # throughput_prompts 0: no model call
    assert not speed.rows and speed.artefacts["table"].empty


def test_pretrain_and_finetune_on_fake_descriptions(mirror, tmp_path):
    """Every encoder, split by split, on descriptions of a fake LLM replayed offline: rows,
    claims (one per comparison), artefacts, pre-training on the pool's training part only."""
    from molkit.data import load_dataset, scaffold_split

    settings = lardo.Settings.for_profile("smoke").with_overrides(
        datasets=("esol",), splits=(0, 1), pool=32, ablation_pool=16, ablation_pretraining=True,
        finetune_max=40, hidden=8, num_layers=2, rf_trees=5,
    )  # fmt: skip
    cache = fake_stage1_cache(settings, tmp_path / "r.jsonl")
    properties = lardo.stage1_properties(settings, cache=cache).artefacts["properties"]
    smiles = load_dataset("esol")["smiles"].tolist()
    pool = lardo.description_pool(len(smiles), 32)
    ablation = lardo.description_pool(len(smiles), 16)
    lardo.describe_molecules(
        "esol", smiles, cache, settings.lm_model, properties["esol"], settings.max_new_tokens,
        pools={"lardo": pool, "dsm_only": pool, "no_dsm": ablation, "no_stage1": ablation},
        generate_fn=fake_llm([]), progress=False,
    )  # fmt: skip
    res = lardo.pretrain_and_finetune(settings, properties, cache=cache, encoder=HashEncoder(),
                                      progress=False)  # fmt: skip
    frame = res.frame()
    encoders = lardo.MAIN_ENCODERS + lardo.ABLATION_ENCODERS
    labels = [lardo.METHOD_LABELS[k] for k in encoders]
    per_split = [(m, metric) for m in labels for metric in ("rmse_frozen", "rmse")]
    per_split.append((lardo.METHOD_LABELS["rf"], "rmse"))
    assert list(zip(frame["method"], frame["metric"], strict=True)) == per_split * 2
    assert frame["seed"].tolist() == [0] * len(per_split) + [1] * len(per_split)
    assert set(frame["split"]) == {"scaffold test"} and np.isfinite(frame["value"]).all()
    claims = res.claims
    assert len(claims) == len(lardo.MODEL_COMPARISONS)
    assert all(c.metric == "rmse (mean over splits)" for c in claims)
    assert all("2 balanced scaffold splits" in c.detail for c in claims)
    predictions = res.artefacts["predictions"]["esol"]
    assert predictions["task"] == "regression" and set(predictions) == {"task", 0, 1}
    assert all(c.n == len(predictions[0]["y"]) + len(predictions[1]["y"]) for c in claims)
    for seed in (0, 1):
        pred = predictions[seed]
        assert set(pred) == {"y", "rf", "mean", *encoders, *(f"{k}_frozen" for k in encoders)}
        rmse = np.sqrt(np.mean((pred["lardo"] - pred["y"]) ** 2))
        row = frame["method"].eq(labels[2]) & frame["metric"].eq("rmse") & frame["seed"].eq(seed)
        assert frame.loc[row, "value"].item() == pytest.approx(rmse)
    desc = res.artefacts["descriptions"]["esol"]
    assert len(desc.smiles) == len(smiles)
    assert desc.described("lardo").tolist() == pool.tolist()
    assert desc.described("no_stage1").tolist() == ablation.tolist()
    # pre-training sees only the pool's molecules in each split's training part
    sizes = res.artefacts["pool_sizes"]
    assert sizes["split"].tolist() == [0, 1]
    assert (sizes["pre-training pool"] <= 32).all() and (sizes["ablation pool"] <= 16).all()
    history = res.artefacts["pretrain_history"]
    pretrained = {lardo.METHOD_LABELS[k] for k in encoders if k not in ("scratch", "attr_masking")}
    assert set(history["method"]) == pretrained
    ablation_labels = [lardo.METHOD_LABELS[k] for k in lardo.ABLATION_ENCODERS]
    for _, row in sizes.iterrows():
        part = history[history["split"] == row["split"]]
        on_ablation = part["method"].isin(ablation_labels)
        assert (part.loc[~on_ablation, "pairs"] == row["pre-training pool"]).all()
        assert (part.loc[on_ablation, "pairs"] == row["ablation pool"]).all()
        assert row["train"] + row["valid"] + row["test"] == len(smiles)
        split = scaffold_split(smiles, (0.8, 0.1, 0.1), balanced=True, seed=int(row["split"]))
        assert row["pre-training pool"] == len(set(pool) & set(split["train"]))
        assert row["ablation pool"] == len(set(ablation) & set(split["train"]))
    assert {"epoch", "loss", "valid_loss", "temperature", "best_epoch"} <= set(history.columns)
    assert set(res.artefacts["embeddings"]["esol"]) == {"before", "after", "y"}
    assert set(res.artefacts["seconds"]) == {
        "descriptions and embeddings", "pre-training", "fine-tuning",
    }  # fmt: skip
    examples = lardo.example_descriptions(desc, 2)
    assert examples["smiles"].tolist() == [smiles[i] for i in ablation[:2]]
    variant_labels = [lardo.METHOD_LABELS[v] for v in lardo.VARIANTS]
    assert list(examples.columns) == ["smiles", "RDKit", *variant_labels]
    verdict = lardo.verdict_text(res)
    assert len(verdict.splitlines()) == len(lardo.MODEL_COMPARISONS)
    assert verdict.splitlines()[0].startswith("LarDo (fine-tuned) beats the training mean: esol ")
    assert verdict.splitlines()[1].startswith(lardo.MODEL_COMPARISONS[1][2] + ": esol ")


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
    checks = lardo.description_checks(desc, tuple(lardo.VARIANTS))
    assert list(checks.columns) == [
        "dataset", "molecule", "variant", "claims", "value_claims", "contradictions",
        "contradicts", "states_mw",
    ]  # fmt: skip
    assert len(checks) == 12 * 4 and sorted(set(checks["molecule"])) == list(range(2, 14))
    by = checks.groupby("variant", sort=False)
    assert list(by.groups) == list(lardo.VARIANTS)
    assert by["contradicts"].sum().to_dict() == {
        "lardo": 0, "no_dsm": 11, "no_stage1": 0, "dsm_only": 0,
    }  # fmt: skip
    assert by["claims"].sum()[["lardo", "no_dsm", "no_stage1"]].tolist() == [24, 23, 0]
    assert by["states_mw"].sum()[["lardo", "no_dsm"]].tolist() == [12, 0]
    last = checks[(checks["molecule"] == 13) & (checks["variant"] == "no_dsm")].iloc[0]
    assert (last["claims"], last["value_claims"], last["contradicts"]) == (1, 1, False)
    # two variants share more molecules than four
    assert len(lardo.description_checks(desc, ("lardo", "dsm_only"))) == 2 * 14


def test_share_interval():
    assert lardo.share_interval(np.ones(10, bool)) == (1.0, 1.0)
    low, high = lardo.share_interval(np.array([True] * 5 + [False] * 15))
    assert low < 0.25 < high and 0.0 <= low and high <= 1.0
    assert lardo.share_interval(np.array([True] * 5 + [False] * 15), seed=0) == (low, high)


def test_calibration_rows_per_description_and_the_dsm_claim():
    settings = lardo.Settings.for_profile("smoke")
    res = lardo.calibration(settings, {"esol": descriptions_of(calibration_texts(),
                                                               [ASPIRIN] * 14)})  # fmt: skip
    frame = res.frame()
    metrics = [
        "share_descriptions_contradicting_rdkit", "share_descriptions_with_checkable_claim",
        "share_descriptions_stating_mw", "share_of_claims_contradicting_rdkit",
    ]  # fmt: skip
    labels = [lardo.METHOD_LABELS[v] for v in lardo.VARIANTS]
    assert list(zip(frame["method"], frame["metric"], strict=True)) == [
        (m, metric) for m in labels for metric in metrics
    ]
    assert set(frame["dataset"]) == {"all"}
    values = frame.pivot(index="method", columns="metric", values="value").loc[labels]
    assert values["share_descriptions_contradicting_rdkit"].tolist() == [0.0, 11 / 12, 0.0, 0.0]
    assert values["share_descriptions_with_checkable_claim"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert values["share_descriptions_stating_mw"].tolist()[:3] == [1.0, 0.0, 0.0]
    per_claim = values["share_of_claims_contradicting_rdkit"].tolist()
    assert per_claim[:2] == [0.0, pytest.approx(22 / 23)] and math.isnan(per_claim[2])
    note = frame.loc[frame["method"].eq(labels[1]) & frame["metric"].eq(metrics[0]), "note"].item()
    low, high = lardo.share_interval(np.array([True] * 11 + [False]))
    assert note == f"12 descriptions; 95 % interval [{low:.3f}, {high:.3f}]"
    assert frame["note"].iloc[3] == "12 descriptions, 24 checkable claims"
    # the claim: the same 12 molecules, with and without DSM values
    (claim,) = res.claims
    assert claim.ours == pytest.approx(-11 / 12) and claim.verdict == HOLDS and claim.n == 12
    assert claim.paper == lardo.PAPER and "same 12 molecules of esol" in claim.detail
    summary = res.artefacts["summary"]
    assert summary.index.tolist() == list(lardo.VARIANTS)
    assert summary.loc["no_dsm", "contradicting RDKit"] == pytest.approx(11 / 12)
    assert summary.loc["no_dsm", "low"] <= 11 / 12 <= summary.loc["no_dsm", "high"]
    assert (summary["descriptions"] == 12).all() and res.artefacts["n_descriptions"] == 12
    table = res.artefacts["table"]
    assert set(table["dataset"]) == {"esol"} and "9.9" not in "".join(table["text"])
    assert len(table[table["variant"] == "lardo"]) == 24
    assert len(res.artefacts["checks"]) == 48


def split_predictions(rng, task: str, offset: float = 0.0) -> dict:
    """One split's test predictions for `model_claims`: LarDo good, the others worse."""
    if task == "classification":
        y = np.repeat([0.0, 1.0], 10)[:, None]
        good = y + rng.normal(0, 0.1, y.shape) + offset  # ranks the split perfectly
        return {"y": y, "lardo": good, "mean": np.full_like(y, 0.5),
                "scratch": rng.random(y.shape), "attr_masking": 1 - good}  # fmt: skip
    y = rng.normal(size=(20, 1))
    return {"y": y, "lardo": y + 3.0, "mean": np.zeros_like(y), "scratch": y + 0.01,
            "attr_masking": y - 3.0}  # fmt: skip


def test_model_claims_are_stratified_by_split_and_follow_the_metric_direction():
    rng = np.random.default_rng(0)
    # on split 1 LarDo's scores are shifted: still perfect per split, not on the pooled ranking
    cls = {"task": "classification", 0: split_predictions(rng, "classification"),
           1: split_predictions(rng, "classification", offset=-5.0)}  # fmt: skip
    cls[0]["dsm_only"] = cls[0]["scratch"]  # in one split only: that comparison is skipped
    reg = {"task": "regression", 0: split_predictions(rng, "regression"),
           1: split_predictions(rng, "regression")}  # fmt: skip
    reg[1]["y"][0, 0] = np.nan  # unlabelled: left out
    claims = lardo.model_claims({"bbbp": cls, "esol": reg})
    assert [c.metric for c in claims] == ["roc_auc (mean over splits)"] * 3 + [
        "rmse (mean over splits)"
    ] * 3
    assert [c.claim.split(": ", 1)[1] for c in claims[:3]] == [
        "LarDo (fine-tuned) beats the training class prior",
        lardo.MODEL_COMPARISONS[1][2], lardo.MODEL_COMPARISONS[2][2],
    ]  # fmt: skip
    assert [c.verdict for c in claims[:3]] == [HOLDS, HOLDS, HOLDS]
    assert claims[0].ours == pytest.approx(0.5)  # AUC 1 on each split vs the prior's 0.5
    assert claims[3].verdict == CONTRADICTED and claims[4].verdict == CONTRADICTED  # RMSE higher
    assert "training class prior" in claims[0].claim and "training mean" in claims[3].claim
    assert all(c.claim.startswith("bbbp: ") for c in claims[:3])
    assert all(c.paper == lardo.PAPER for c in claims)
    assert [c.n for c in claims] == [40] * 3 + [39] * 3
    assert all("2 balanced scaffold splits" in c.detail for c in claims)
    # the RMSE is measured per split and averaged, never on the pooled test molecules
    per_split = [
        np.sqrt(np.nanmean((reg[k]["lardo"] - reg[k]["y"]) ** 2))
        - np.sqrt(np.nanmean((reg[k]["scratch"] - reg[k]["y"]) ** 2))
        for k in (0, 1)
    ]
    assert claims[4].ours == pytest.approx(np.mean(per_split))
    # a method missing from a split: its comparisons are left out
    partial = {"task": "regression", 0: split_predictions(rng, "regression"),
               1: split_predictions(rng, "regression")}  # fmt: skip
    del partial[1]["scratch"]
    kept = lardo.model_claims({"esol": partial})
    assert [c.claim for c in kept] == [
        "esol: LarDo (fine-tuned) beats the training mean",
        f"esol: {lardo.MODEL_COMPARISONS[2][2]}",
    ]
    one = lardo.model_claims({"esol": {"task": "regression", 0: partial[0]}})
    assert len(one) == 3 and all(c.detail.endswith("; 1 balanced scaffold split") for c in one)
    assert one[1].detail.startswith("LarDo (stage 1 + DSM) vs GIN from scratch")


def test_claims_table_and_verdict_text():
    rng = np.random.default_rng(1)
    predictions = {"esol": {"task": "regression", 0: split_predictions(rng, "regression")}}
    res = Results(claims=lardo.model_claims(predictions))
    table = lardo.claims_table(res)
    assert "paper" not in table.columns and len(table) == 3
    assert isinstance(table, pd.DataFrame)
    assert (table["ours"].iloc[:2] > 0).all() and table["ours"].iloc[2] == 0  # RMSE: LarDo worse
    text = lardo.verdict_text(res)
    assert text.splitlines()[1] == (
        f"{lardo.MODEL_COMPARISONS[1][2]}: esol {res.claims[1].verdict} "
        f"({res.claims[1].ours:+.3f} [{res.claims[1].low:+.3f}, {res.claims[1].high:+.3f}])"
    )
    assert lardo.verdict_text(Results()) == "No claim rows in this run."


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
    monkeypatch.setattr(lardo, "generate_responses", lambda *a, **k: calls.append((a, k)))
    out = tmp_path / "r.jsonl.gz"
    argv = ["responses", "generate", "--profile", "smoke", "--threads", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    assert calls == [(("smoke",), {"out": out, "threads": 1})]
    assert cli.main(["responses", "generate"]) == 0
    assert calls[-1] == (("default",), {"out": None, "threads": None})
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
    properties = lardo.stage1_properties(smoke, cache=cache).artefacts["properties"]
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
    table, frame = res.artefacts["table"], res.frame()
    assert isinstance(res, Results) and not res.claims
    assert table["dataset"].tolist() == ["bbbp", "esol"]
    assert frame["metric"].tolist() == [
        "free_text_names", "free_text_names_mapped", "free_text_names_unmapped",
    ] * 2  # fmt: skip
    for name in settings.datasets:
        part = frame[frame["dataset"] == name].set_index("metric")["value"]
        assert (
            part["free_text_names_mapped"] + part["free_text_names_unmapped"]
            == part["free_text_names"]
        )
        ranking = res.artefacts["rankings"][name]
        assert len(ranking) == len(lardo.RANKED_NAMES) and ranking["kept"].sum() == 4
        assert np.isfinite(ranking["pmi"]).all() and (ranking["tokens"] > 0).all()
        used = res.artefacts["properties"][name]  # settings.stage1 == "ranked"
        assert len(used.names) == 4 and set(used.names) == set(used.matched)
        assert not set(used.descriptors) & {"logp", "mol_weight"}
        assert isinstance(res.artefacts["answers"][name], str) and res.artefacts["answers"][name]
    assert all(row[:2] == ["logp", "mol_weight"] for row in table["stage-2 values"])
    assert "--- bbbp: free-text stage-1 answer ---" in lardo.stage1_answers(
        res.artefacts["answers"]
    )
    speed = lardo.generation_speed(settings, res.artefacts["properties"])
    assert not speed.rows and speed.artefacts["table"].empty  # throughput_prompts 0


def test_pretrain_and_finetune_replays_the_shipped_responses(mirror):
    settings = lardo.Settings.for_profile("smoke").with_overrides(
        datasets=("esol",), finetune_max=40, hidden=8, num_layers=2, rf_trees=5,
    )  # fmt: skip
    cache = shipped_cache()
    properties = lardo.stage1_properties(settings, cache=cache).artefacts["properties"]
    res = lardo.pretrain_and_finetune(settings, properties, cache=cache, encoder=HashEncoder(),
                                      progress=False)  # fmt: skip
    frame = res.frame()
    labels = [lardo.METHOD_LABELS[k] for k in lardo.MAIN_ENCODERS]
    expected = [(m, metric) for m in labels for metric in ("rmse_frozen", "rmse")]
    expected.append((lardo.METHOD_LABELS["rf"], "rmse"))
    assert list(zip(frame["method"], frame["metric"], strict=True)) == expected
    assert set(frame["split"]) == {"scaffold test"} and np.isfinite(frame["value"]).all()
    # the ablations were not pre-trained (ablation_pretraining is off): their comparisons skipped
    assert len(res.claims) == 6 and all(c.metric == "rmse (mean over splits)" for c in res.claims)
    assert all(c.verdict in ("holds", "contradicted", "undecided") for c in res.claims)
    pred = res.artefacts["predictions"]["esol"][0]
    rmse = np.sqrt(np.mean((pred["lardo"] - pred["y"]) ** 2))
    row = frame["method"].eq(labels[2]) & frame["metric"].eq("rmse")
    assert frame.loc[row, "value"].item() == pytest.approx(rmse)
    desc = res.artefacts["descriptions"]["esol"]
    assert len(desc.described("lardo")) == settings.pool
    assert len(desc.described("no_stage1")) == settings.ablation_pool
    assert set(res.artefacts["embeddings"]["esol"]) == {"before", "after", "y"}
    assert set(res.artefacts["pretrain_history"]["method"]) == set(labels[2:])
    examples = lardo.example_descriptions(desc, 2)
    assert len(examples) == 2 and "RDKit" in examples.columns
    assert "esol" in lardo.verdict_text(res)
    calib = lardo.calibration(settings, res.artefacts["descriptions"])
    assert len(calib.claims) == 1 and calib.artefacts["n_descriptions"] == settings.ablation_pool


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
    assert cache.model_calls == 1 and isinstance(answer, str)
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
    assert line.startswith(f"memory: {path} needs about") and "bf16, inference, batch 8 x" in line
    speed = settings.with_overrides(offline=True, throughput_prompts=3)  # only the benchmark loads
    assert "inference, batch 3 x 544 tokens" in lardo.lm_memory(speed, "cpu", free_bytes=10**12)
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit' or throughput_"):
        lardo.lm_memory(speed, "cpu", free_bytes=1000)
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit', lm_batch_size"):
        lardo.lm_memory(settings, "cpu", free_bytes=1000)
    absent = lardo.lm_memory(full.with_overrides(offline=True), "cpu", free_bytes=10**12)
    assert absent.startswith("memory: no estimate for mistralai/Mistral-7B-Instruct-v0.2")
