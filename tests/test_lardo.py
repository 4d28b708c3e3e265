"""MolGraph-LarDo: property mapping, prompts, calibration checks, CLIP loss, weight loading, data
rows, the shipped responses, settings per profile, the experiment functions and the CLI."""

import csv
import functools
import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.chem import compute_descriptors, graphs_from_smiles
from molkit.methods import lardo
from molkit.methods.experiment import CONTRADICTED, HOLDS, Results
from molkit.models.gnn import GIN
from molkit.models.responses import FORMAT, ResponseCache, prompt_sha256

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"  # logP 1.31, MW 180.16, TPSA 63.6, 1 donor, 3 acceptors


def aspirin_values() -> dict:
    return compute_descriptors([ASPIRIN], progress=False).iloc[0].to_dict()


def shipped_cache() -> ResponseCache:
    return ResponseCache(None, replay=[lardo.RESPONSE_FILE])


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


def test_stage2_prompts_carry_dsm_values_only_where_they_should():
    values = aspirin_values()
    props = lardo.map_properties(["Lipophilicity", "Polar surface area", "Permeability"])
    full = lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, values)[1]["content"]
    assert ASPIRIN in full
    assert f"logP = {values['logp']:.3f}" in full
    assert f"molecular weight = {values['mol_weight']:.1f} g/mol" in full
    assert f"TPSA = {values['tpsa']:.2f}" in full and "Permeability" in full and "brackets" in full
    no_dsm = lardo.stage2_prompt(ASPIRIN, "bbbp", "no_dsm", props)[1]["content"]
    assert "RDKit" not in no_dsm and f"{values['logp']:.3f}" not in no_dsm
    assert "Permeability" in no_dsm
    no_stage1 = lardo.stage2_prompt(ASPIRIN, "bbbp", "no_stage1", props, values)[1]["content"]
    assert "Permeability" not in no_stage1 and "TPSA" not in no_stage1
    assert f"logP = {values['logp']:.3f}" in no_stage1
    with pytest.raises(ValueError, match="DSM values"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "lardo", props, None)
    with pytest.raises(ValueError, match="variant"):
        lardo.stage2_prompt(ASPIRIN, "bbbp", "dsm_only", props, values)


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


def test_finetuning_starts_from_the_pretrained_encoder():
    graphs = graphs_from_smiles(
        ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "c1ccncc1", "CCCl"], progress=False
    )
    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=8)
    before = {k: v.clone() for k, v in gin.state_dict().items()}
    text = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    history = lardo.pretrain_clip(gin, graphs, text, epochs=2, batch_size=3, progress=False)
    assert len(history) == 2 and history["temperature"].gt(0).all()
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


def test_pretraining_pool_is_seeded_nested_and_within_the_parts():
    split = {"train": np.arange(0, 80), "valid": np.arange(80, 90), "test": np.arange(90, 100)}
    small, large = lardo.pretraining_pool(split, 10), lardo.pretraining_pool(split, 20)
    assert len(small) == 10 and set(small) <= set(large) and set(large) <= set(split["train"])
    both = lardo.pretraining_pool(split, 10, 5)
    assert set(small) <= set(both) and len(set(both) - set(small)) == 5
    assert (both[~np.isin(both, small)] >= 80).all()
    assert len(lardo.pretraining_pool(split, None, None)) == 100


def fake_llm(calls):
    def generate(prompts):
        calls.append(len(prompts))
        return [
            "1. Lipophilicity\n2. Molecular weight"
            if "SMILES of a molecule is" not in p[1]["content"]
            else f"[logP: {prompt_sha256(p)[:4]}]"
            for p in prompts
        ]

    return generate


def test_describe_molecules_goes_through_the_cache(tmp_path):
    calls = []
    cache = ResponseCache(tmp_path / "r.jsonl")
    desc = lardo.describe_molecules("esol", ["CCO", ASPIRIN], cache, "fake-lm", 16, 32,
                                    generate_fn=fake_llm(calls), progress=False)  # fmt: skip
    assert desc.properties.descriptors == ["logp", "mol_weight"]
    assert set(desc.texts) == set(lardo.VARIANTS)
    assert desc.texts["dsm_only"][1] == lardo.dsm_text(ASPIRIN)
    n_calls = len(calls)
    again = lardo.describe_molecules(
        "esol", ["CCO", ASPIRIN], ResponseCache(tmp_path / "r.jsonl"), "fake-lm", 16, 32,
        generate_fn=fake_llm(calls), offline=True, progress=False,
    )  # fmt: skip
    assert len(calls) == n_calls and again.texts == desc.texts
    keys = lardo.response_keys(desc, "fake-lm", 16, 32)
    assert len(keys) == 1 + 3 * 2 and keys <= {r["key"] for r in cache.records()}


def test_every_row_of_the_dataset_file_reaches_the_split(mirror):
    from molkit.data import fetch_file, load_dataset, scaffold_split

    with open(fetch_file("moleculenet/freesolv.csv"), newline="") as handle:
        # the official reader dropped the first data row
        n_rows = sum(1 for _ in csv.DictReader(handle))
    df = load_dataset("freesolv")
    assert len(df) + df.attrs["n_invalid_rows"] == n_rows
    split = scaffold_split(df["smiles"].tolist(), (0.8, 0.1, 0.1))
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(len(df)))


def test_regenerating_the_default_profile_from_its_records_gives_the_shipped_file(
    mirror, tmp_path, capsys
):
    """The prompts, generation settings and pools still produce the keys the shipped file holds:
    `generate_responses` (``molkit responses generate``), run on a cache that holds the shipped
    records, finds every prompt there (no model call) and exports the same records."""
    from molkit.models.responses import read_records

    assert lardo.RESPONSE_FILE.exists(), f"regenerate it: {lardo.REGENERATE_COMMAND}"
    assert lardo.RESPONSE_FILE.stat().st_size < 5e6
    header = json.loads(gzip.open(lardo.RESPONSE_FILE, "rt").readline())["header"]
    assert header["format"] == FORMAT and header["profile"] == "default"
    assert {stage for stage, *_ in lardo.response_plan("default")} == {"smoke", "default"}
    writable = tmp_path / "cache.jsonl"
    writable.write_bytes(gzip.decompress(lardo.RESPONSE_FILE.read_bytes()))
    out = lardo.generate_responses("default", out=tmp_path / "again.jsonl.gz", writable=writable,
                                   threads=torch.get_num_threads(), progress=False)  # fmt: skip
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 20 and all(": 0 generated" in line for line in lines)
    assert list(read_records(out)) == list(read_records(lardo.RESPONSE_FILE))
    again = json.loads(gzip.open(out, "rt").readline())["header"]
    assert (
        again["command"]
        == lardo.REGENERATE_COMMAND
        == "molkit responses generate --profile default"
    )
    assert {k: v for k, v in again.items() if k != "command"} == {
        k: v for k, v in header.items() if k != "command"
    }


def test_settings_profiles_and_overrides():
    smoke, default, full = (lardo.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert smoke.datasets == ("bbbp", "esol") and smoke.seeds == (0,) and smoke.rf_trees == 50
    assert default.datasets == ("bbbp", "bace", "esol") and default.pool_train == 64
    assert full.pool_train is None and full.lm_model == "mistralai/Mistral-7B-Instruct-v0.2"
    # smoke replays the shipped default responses: same LM and generation settings, nested pools
    for key in ("lm_model", "max_new_tokens", "stage1_max_new_tokens", "offline"):
        assert getattr(smoke, key) == getattr(default, key)
    assert smoke.pool_train <= default.pool_train and smoke.pool_rest <= default.pool_rest
    assert set(smoke.datasets) <= set(default.datasets)
    assert smoke.with_overrides(lm_model=None, pool_train=None) == smoke
    assert smoke.with_overrides(pool_train=4, datasets=["esol"]).datasets == ("esol",)
    with pytest.raises(ValueError, match="no setting 'lm'; valid settings: datasets, seeds"):
        smoke.with_overrides(lm="smollm2-135m-instruct")
    with pytest.raises(TypeError, match="pool_train"):
        smoke.with_overrides(pool_train="all")


def test_stage1_and_speed_steps_return_results():
    settings = lardo.Settings.for_profile("smoke")
    stage1 = lardo.stage1_properties(settings, cache=shipped_cache())
    table = stage1.artefacts["table"]
    assert isinstance(stage1, Results) and not stage1.rows and not stage1.claims
    assert table["dataset"].tolist() == ["bbbp", "esol"]
    assert all(set(row["values in stage-2 prompt"]) >= {"logp", "mol_weight"}
               for _, row in table.iterrows())  # fmt: skip
    assert "--- bbbp: stage-1 answer ---" in lardo.stage1_answers(table)
    speed = lardo.generation_speed(settings, table)  # throughput_prompts 0: no model call
    assert not speed.rows and speed.artefacts["table"].empty


def descriptions_of(texts: dict[str, list[str]], smiles: list[str]) -> lardo.Descriptions:
    values = compute_descriptors(smiles, progress=False)
    return lardo.Descriptions("esol", smiles, texts, "", lardo.map_properties([]), values, {})


def test_calibration_rows_and_the_dsm_claim():
    smiles = [ASPIRIN] * 12
    texts = {
        "lardo": ["logP 1.3, molecular weight 180.2"] * 12,  # agrees with RDKit
        "no_dsm": ["logP 4.5, molecular weight 400"] * 11 + ["logP 1.3"],  # mostly wrong
        "no_stage1": ["no checkable claim"] * 12,
        "dsm_only": [lardo.dsm_text(ASPIRIN)] * 12,
    }
    res = lardo.calibration(lardo.Settings.for_profile("smoke"),
                            {"esol": descriptions_of(texts, smiles)})  # fmt: skip
    frame = res.frame()
    assert frame["method"].tolist() == [
        lardo.METHOD_LABELS[v] for v in ("lardo", "no_dsm", "dsm_only")
    ]
    assert set(frame["metric"]) == {"share_of_claims_contradicting_rdkit"}
    assert frame["note"].iloc[0] == "24.0 claims" and frame["value"].iloc[0] == 0.0
    assert frame["value"].iloc[1] == pytest.approx(22 / 23)
    (claim,) = res.claims
    assert claim.ours == pytest.approx(-11 / 12) and claim.verdict == HOLDS and claim.n == 12
    indicators = lardo.contradiction_indicators(res.artefacts["table"], {"esol": 12}, "no_dsm")
    assert indicators.tolist() == [1.0] * 11 + [0.0]


def test_model_claims_follow_the_metric_direction():
    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 20)[:, None]
    good, noise = y + rng.normal(0, 0.1, y.shape), rng.random(y.shape)
    cls = {"task": "classification", "y": y, "lardo": good, "mean": np.full_like(y, 0.5),
           "scratch": noise, "attr_masking": 1 - good}  # fmt: skip
    reg_y = rng.normal(size=(40, 1))
    reg = {"task": "regression", "y": reg_y, "lardo": reg_y + 3.0, "mean": np.zeros_like(reg_y),
           "scratch": reg_y + 0.01, "attr_masking": reg_y - 3.0}  # fmt: skip
    claims = lardo.model_claims({"bbbp": cls, "esol": reg}, seed=0)
    assert [c.metric for c in claims] == ["roc_auc"] * 3 + ["rmse"] * 3
    assert [c.verdict for c in claims[:3]] == [HOLDS, HOLDS, HOLDS]
    assert claims[3].verdict == CONTRADICTED and claims[4].verdict == CONTRADICTED  # RMSE higher
    assert "training class prior" in claims[0].claim and "training mean" in claims[3].claim
    assert all(c.paper == lardo.PAPER and c.n == 40 for c in claims)


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


class HashEncoder:
    """A stand-in sentence encoder: a deterministic vector per text."""

    def embed(self, texts, batch_size=64, progress=False):
        return np.stack([
            np.random.default_rng(int(prompt_sha256(t)[:8], 16)).normal(size=8) for t in texts
        ]).astype(np.float32)  # fmt: skip


def test_pretrain_and_finetune_returns_rows_claims_and_artefacts(mirror):
    settings = lardo.Settings.for_profile("smoke").with_overrides(
        datasets=("esol",), pool_train=8, pool_rest=4, finetune_max=40, hidden=8, rf_trees=5,
    )  # fmt: skip
    res = lardo.pretrain_and_finetune(settings, cache=shipped_cache(), encoder=HashEncoder(),
                                      progress=False)  # fmt: skip
    frame = res.frame()
    methods = [lardo.METHOD_LABELS[k] for k in ("scratch", "attr_masking", *lardo.VARIANTS,
                                                "lardo_transductive")]  # fmt: skip
    expected = [(m, metric) for m in methods for metric in ("rmse_frozen", "rmse")]
    expected.append((lardo.METHOD_LABELS["rf"], "rmse"))
    assert list(zip(frame["method"], frame["metric"], strict=True)) == expected
    assert set(frame["split"]) == {"scaffold test"} and np.isfinite(frame["value"]).all()
    assert [c.metric for c in res.claims] == ["rmse"] * 3
    assert all(c.verdict in ("holds", "contradicted", "undecided") for c in res.claims)
    pred = res.artefacts["predictions"]["esol"]
    rmse = np.sqrt(np.mean((pred["lardo"] - pred["y"]) ** 2))
    assert frame.loc[frame["method"].eq(methods[2]) & frame["metric"].eq("rmse"), "value"].item() \
        == pytest.approx(rmse)  # fmt: skip
    assert len(res.artefacts["descriptions"]["esol"].smiles) == 8
    assert set(res.artefacts["embeddings"]["esol"]) == {"before", "after", "y"}
    assert set(res.artefacts["pretrain_history"]["method"]) == set(methods[2:])
    examples = lardo.example_descriptions(res.artefacts["descriptions"], "esol", 2)
    assert len(examples) == 2 and "RDKit" in examples.columns
    verdict = lardo.lardo_verdict(frame)
    assert "No classification dataset" in lardo.verdict_text(verdict, settings)


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


def test_claims_table_drops_the_paper_column():
    res = Results(claims=lardo.model_claims({"esol": {
        "task": "regression", "y": np.arange(5.0)[:, None], "lardo": np.arange(5.0)[:, None],
        "mean": np.full((5, 1), 2.0), "scratch": np.zeros((5, 1)), "attr_masking": np.ones((5, 1)),
    }}, seed=0))  # fmt: skip
    table = lardo.claims_table(res)
    assert "paper" not in table.columns and len(table) == 3
    assert isinstance(table, pd.DataFrame) and (table["ours"] < 0).all()
