"""MolTC: settings per profile, pair baselines, CoT targets, parsing and readouts, graph tokens in a
(tiny, random) causal LM trained to a validation optimum, the sections' typed results, the claims
(gates, swap test, one-factor comparisons over training seeds) and the rooms' import order."""

import ast
import dataclasses
import math
import os
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.data import final_scoring, seal
from molkit.data.pairs import make_pair_split
from molkit.data.sealed import TestLabelAccessError
from molkit.data.splits import subsample
from molkit.methods import moltc
from molkit.methods.experiment import HOLDS, NOT_JUDGED, UNDECIDED, Results
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
ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- settings and rooms


def test_settings_profiles_and_overrides():
    smoke, default, full = (moltc.Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert smoke.lm_model == "tiny-random-llama" and smoke.seeds == (0,) and smoke.ddi_rows == 1200
    assert smoke.regression_sets == ("freesolv-pairs", "combisolu") and smoke.gin_min_steps == 0
    assert smoke.training_seeds == {"ddi": (0,), "freesolv": (0, 1), "role": (0,)}  # the 2-D path
    assert default.lm_model == "smollm2-135m-instruct" and default.seeds == (0, 1, 2)
    assert default.training_seeds == {"ddi": (0,), "freesolv": (0, 1, 2), "role": (0,)}
    assert default.ddi_rows is None and default.lm_train_pairs == 384 and default.num_beams == 1
    assert (default.lm_valid_pairs, default.lm_test_pairs, default.lm_pretrain_pairs) == (
        64,
        200,
        0,
    )
    assert (default.freesolv_max_epochs, default.ddi_max_epochs, default.role_max_epochs) == (
        2.0, 1.0, 1.0)  # fmt: skip
    # graph tokens vs SMILES only rests on 3 training seeds of each arm
    assert default.seeds_of("freesolv", "MolTC") == (0, 1, 2)
    assert default.seeds_of("freesolv", moltc.SMILES_ONLY) == (0, 1, 2)
    assert default.seeds_of("role", moltc.SHARED) == (0,)
    fewer = dataclasses.replace(default, control_lm_seeds=2)  # a cheaper control arm
    assert fewer.seeds_of("freesolv", moltc.SMILES_ONLY) == (0, 1)
    assert (default.lm_evals_per_epoch, default.lm_patience) == (2, 2)
    assert default.smiles_chars is None and full.smiles_chars is None  # whole SMILES
    assert default.lm_variants == ("MolTC", moltc.SMILES_ONLY) and default.role_set == "combisolu"
    assert default.role_split == "unseen_solvent" and default.ddi_variants == ("MolTC",)
    assert default.regression_sets == ("freesolv-pairs", "combisolu")
    assert full.regression_sets[2:] == ("chromophore-abs", "chromophore-emi", "chromophore-life")
    assert default.swap_pairs == 100 and full.swap_pairs is None
    assert smoke.ddi_variants == full.ddi_variants == ("MolTC", moltc.SMILES_ONLY)
    assert (default.gin_hidden, default.gin_layers, default.gin_patience) == (128, 4, 10)
    assert full.lm_model == "facebook/galactica-1.3b" and full.num_beams == 5
    assert full.lm_train_pairs is None and full.lm_pretrain_pairs > 0
    assert full.training_seeds["ddi"] == (0, 1, 2) and "MolTC, no pre-training" in full.lm_variants
    changed = smoke.with_overrides(lm_model=None, lm_train_pairs=16, seed=None)
    assert changed.lm_model == "tiny-random-llama" and changed.lm_train_pairs == 16
    assert smoke.with_overrides(seeds=[0, 1]).seeds == (0, 1)
    assert smoke.with_overrides(regression_sets=["freesolv-pairs", "combisolu", "my.csv"])
    with pytest.raises(ValueError, match="no setting 'lm'; valid settings: seed, ddi_rows"):
        smoke.with_overrides(lm="x")
    with pytest.raises(TypeError, match="lm_lr must be float"):
        smoke.with_overrides(lm_lr="fast")
    with pytest.raises(FrozenInstanceError):
        smoke.seed = 3  # type: ignore[misc]
    bad = {
        "lm_variants must hold 'MolTC'": {"lm_variants": (moltc.SMILES_ONLY,)},
        "unknown: \\['MolTC, bigger'\\]": {"role_variants": ("MolTC", "MolTC, bigger")},
        "ddi_variants must hold 'MolTC'": {"ddi_variants": (moltc.SMILES_ONLY,)},
        "needs lm_pretrain_pairs > 0": {"lm_variants": ("MolTC", "MolTC, no pre-training")},
        "role_set must be a regression pair set": {"role_set": "chchminer"},
        "role_split must be one of": {"role_split": "scaffold"},
        "regression_sets must hold 'freesolv-pairs'": {"regression_sets": ("combisolu",)},
        "regression_sets names \\['tox21'\\]": {"regression_sets": ("freesolv-pairs", "tox21")},
        "lm_seeds must be at least 1": {"lm_seeds": 0},
        "control_lm_seeds must lie in \\[1, lm_seeds = 2\\]": {"control_lm_seeds": 3},
        "freesolv_max_epochs must be positive": {"freesolv_max_epochs": 0.0},
        "seed 5 must be among seeds": {"seed": 5},
    }
    for message, change in bad.items():
        with pytest.raises(ValueError, match=message):
            smoke.with_overrides(**change)
    # every problem at once, each naming its setting
    with pytest.raises(ValueError, match="lm_seeds must be.*lm_patience must be"):
        smoke.with_overrides(lm_seeds=0, lm_patience=0)
    table = default.table()
    assert "lm_seeds" in table.values and "3" in table.values


#: The rooms of molkit.methods.moltc, lowest first; a room imports only from lower ones, and rooms
#: of one level not from each other (the import-linter "layers" contract of the package).
ROOMS = [["settings"], ["method", "pair_gin"], ["readouts"], ["lm", "lm_data", "pair_baselines"],
         ["experiment"], ["claims", "figures"]]  # fmt: skip


def test_rooms_import_downwards_only():
    level = {room: k for k, rooms in enumerate(ROOMS) for room in rooms}
    package = ROOT / "molkit" / "methods" / "moltc"
    assert {p.stem for p in package.glob("*.py")} - {"__init__"} == set(level)
    for path in package.glob("*.py"):
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("molkit.methods.moltc."):
                    room = name.split(".")[3]
                    assert room in level, f"{path.name} imports {name}"
                    assert level[room] < level[path.stem], f"{path.name} imports {room}"
    assert max(len(p.read_text().splitlines()) for p in package.glob("*.py")) <= 600


def test_sections_take_settings_first_and_return_results():
    import inspect
    import typing

    assert [f.__name__ for f in mx.SECTIONS] == [
        "ddi_upstream", "upstream_baselines", "drug_cold", "both_unseen", "regression_baselines",
        "pair_pretraining", "ddi_lm", "freesolv_lm", "role_lm",
    ]  # fmt: skip
    for section in mx.SECTIONS:
        params = list(inspect.signature(section).parameters)
        hints = typing.get_type_hints(section)
        assert params[0] == "settings" and hints["settings"] is moltc.Settings
        assert issubclass(hints["return"], Results), section.__name__


# ---------------------------------------------------------------- variants and pair baselines


def test_lm_variants_change_one_factor_from_moltc():
    for pretrained in (False, True):
        variants = moltc.lm_variants(pretrained)
        main = variants["MolTC"]
        assert main.pretrained is pretrained and main.graph and main.cot and not main.shared
        for name, v in variants.items():
            changed = [f for f in ("graph", "cot", "pretrained", "shared", "init")
                       if getattr(v, f) != getattr(main, f)]  # fmt: skip
            assert len(changed) == (0 if name == "MolTC" else 1), (name, changed)
    assert set(moltc.lm_variants(True)) == set(moltc.VARIANT_NAMES)
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
    assert set(rows.metric) == {"accuracy", "roc_auc", "f1", "seconds", "features used"}
    # the prior is the product of the two drugs' training positive rates (shrunk to the global rate)
    from molkit.methods.baselines import DrugPrior

    tr, te = split["train"], split["test"]
    pairs = list(zip(df.smiles_1, df.smiles_2, strict=True))
    prior = DrugPrior().fit([pairs[i] for i in tr], df.label.iloc[tr])
    expected = prior.predict_proba([pairs[i] for i in te])[:, 1]
    assert np.array_equal(preds["per-drug prior (no chemistry)"], expected)
    # regression: the training mean; gradient boosting reads the columns that vary in training
    fs = pd.DataFrame({"smiles_1": SMILES * 3, "smiles_2": ["O"] * 24, "freesolv": np.arange(24.0)})
    split = make_pair_split(fs, "random", seed=0)
    rows, preds = moltc.run_baselines(fs, split, moltc.TASKS["freesolv-pairs"], settings, gin=False)
    assert np.all(preds["training mean"] == fs.freesolv.iloc[split["train"]].mean())
    assert set(rows.metric) == {"mae", "rmse", "r2", "seconds", "features used"}
    x = moltc.gbm_features(fs, moltc.TASKS["freesolv-pairs"], settings)
    xt = x[split["train"]]
    varies = int((np.nanmax(xt, 0) != np.nanmin(xt, 0)).sum())
    used = rows.set_index("metric").value["features used"]
    assert used == varies < x.shape[1] / 2  # water's block and the unused bits are dropped


def test_the_pair_table_costs_gradient_boosting_nothing_when_molecule_2_is_constant():
    """FreeSolv's solvent is always water: its block is constant, so the pair model makes the
    solute-only model's predictions exactly (the measurement behind §5's FreeSolv line)."""
    task = moltc.TASKS["freesolv-pairs"]
    rng = np.random.default_rng(0)
    solutes = ["C" * k + "O" for k in range(1, 13)] + ["C" * k + "N" for k in range(1, 13)]
    fs = pd.DataFrame({"smiles_1": solutes * 3, "smiles_2": ["O"] * 72,
                       "freesolv": rng.normal(size=72)})  # fmt: skip
    settings = moltc.Settings.for_profile("smoke").with_overrides(n_bits=32, gbm_iter=30)
    x1, x2 = (moltc.gbm_features(fs, task, settings, molecules=m) for m in (1, 2))
    assert x1.shape[1] * 2 == x2.shape[1]
    np.testing.assert_array_equal(x1, x2[:, : x1.shape[1]])
    split = make_pair_split(fs, "random", seed=0)
    _, preds = moltc.run_baselines(fs, split, task, settings, gin=False)
    from molkit.methods.moltc.pair_baselines import solute_only

    check = solute_only(fs, split, task, settings, 0, preds["Morgan + gradient boosting"])
    assert check["max_difference"] == 0.0 and check["rmse_pair"] == check["rmse_solute"]
    with pytest.raises(ValueError, match="molecules must be 1 or 2"):
        moltc.gbm_features(fs, task, settings, molecules=3)


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


def test_pair_task_of_a_csv_file_of_pairs():
    from molkit.data import load_dataset

    path = str(ROOT / "tests" / "data" / "user_csv" / "good_pairs.csv")
    df = load_dataset(path)
    task = moltc.pair_task(path, df)
    assert (task.target, task.kind, task.extra) == ("logS", "regression", ("temperature",))
    assert task.names == ("Molecule 1", "Molecule 2") and task.width in (0.1, 0.2, 0.5, 1.0)
    assert moltc.pair_task("freesolv-pairs") is moltc.TASKS["freesolv-pairs"]
    prompt = moltc.task_prompts(task, df.iloc[:1], 0, None)[0]
    assert prompt.endswith("What is the logS of molecule 1 with molecule 2?\nAnswer:")
    with pytest.raises(KeyError, match="no pair task 'tox21'"):
        moltc.pair_task("tox21")


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from molkit.eval.metrics import roc_auc_fast

    rng = np.random.default_rng(0)
    for n in (4, 17, 64):
        y = np.r_[0.0, 1.0, rng.integers(0, 2, n - 2)]
        p = np.round(rng.random(n), 1)  # ties
        assert roc_auc_fast(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert math.isnan(roc_auc_fast(np.ones(3), np.arange(3.0)))


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


def test_answer_bins_and_the_bin_answers_start_the_trained_target():
    task = moltc.TASKS["freesolv-pairs"]
    bins = moltc.answer_bins(task, [-3.87, -3.6, 1.2, 1.4, np.nan, -12.3])
    assert bins.tolist() == [-12.5, -4.0, 1.0]  # the bins the targets fill, not the range
    prefix, continuations = moltc.bin_answer_texts(task, bins)
    assert prefix == "The hydration free energy is above"
    assert continuations == [" -12.5 and", " -4 and", " 1 and"]
    for low, text in zip(bins, continuations, strict=True):
        target = moltc.regression_target(low + 0.25, task.width, quantity=task.quantity)
        assert target.startswith(prefix + text)
    with pytest.raises(ValueError, match="no finite training target"):
        moltc.answer_bins(task, [np.nan])


def test_choose_readout_on_validation_and_never_on_sealed_test_labels():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    readouts = {moltc.GREEDY: y + 1.0, moltc.EXPECTED_VALUE: y + 0.5}
    best, scores = moltc.choose_readout("regression", y, readouts)
    assert best == moltc.EXPECTED_VALUE and scores == {moltc.GREEDY: 1.0, moltc.EXPECTED_VALUE: 0.5}
    tie = {moltc.GREEDY: y + 0.5, moltc.EXPECTED_VALUE: y - 0.5}
    assert moltc.choose_readout("regression", y, tie)[0] == moltc.GREEDY  # a tie keeps the first
    labels = np.array([0.0, 1.0, 0.0, 1.0])
    best, scores = moltc.choose_readout("classification", labels, {"likelihood": labels * 0.8})
    assert best == "likelihood" and scores == {"likelihood": 1.0}
    sealed = seal(y, "a test part")
    with pytest.raises(TestLabelAccessError, match="a test part"):
        moltc.choose_readout("regression", sealed, readouts)
    with final_scoring():  # the final scoring may read them
        assert moltc.choose_readout("regression", sealed, readouts)[0] == moltc.EXPECTED_VALUE
    with pytest.raises(ValueError, match="no readout"):
        moltc.choose_readout("regression", y, {})


def test_lm_sets_seal_the_test_labels_and_budget_each_part():
    from molkit.methods.moltc.lm_data import budget, lm_set

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"smiles_1": [f"C{'C' * (i % 9)}O" for i in range(120)],
                       "smiles_2": [["O", "CCO", "CC(C)=O", "ClCCl"][i % 4] for i in range(120)],
                       "logS": rng.normal(size=120), "temperature": 298.0})  # fmt: skip
    task = moltc.TASKS["combisolu"]
    settings = moltc.Settings.for_profile("smoke").with_overrides(
        lm_train_pairs=10, lm_valid_pairs=5, lm_test_pairs=7
    )
    split = moltc.pair_split(df, "unseen_solvent", seed=0)
    s = lm_set(settings, task, df, split, {"t": split["test"]}, "unseen_solvent")
    assert (len(s.train), len(s.valid), len(s.tests["t"])) == (10, 5, 7)
    assert len(s.full_train) == len(split["train"]) and "logS" not in s.tests["t"]
    assert set(s.tests["t"].smiles_2).isdisjoint(s.full_train.smiles_2)  # unseen solvents
    assert len(s.labels["t"]) == 7
    with pytest.raises(TestLabelAccessError):
        np.asarray(s.labels["t"])
    with pytest.raises(KeyError):  # nothing can write a test answer: there is no label column
        moltc.task_answers(task, s.tests["t"])
    with final_scoring():
        truth = s.labels["t"].read()
    expected = budget(df, split["test"], 7, settings.seed)
    np.testing.assert_array_equal(truth, expected.logS.to_numpy())
    pd.testing.assert_frame_equal(s.tests["t"], expected.drop(columns=["logS"]))


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


def test_expected_values_weigh_each_bin_centre_by_its_likelihood(tiny_lm):
    """The expected-value readout through the toolkit's scorer equals a brute force: each bin's
    continuation scored on its own after the prompt and the answer's shared start."""
    from molkit.models.lm.load import encode_prompt

    model, tokenizer, graph_id = tiny_lm
    task = moltc.TASKS["freesolv-pairs"]
    bins = moltc.answer_bins(task, [-3.2, 1.7, 0.4])
    graph = _graph_encoder(model.config.hidden_size).eval()
    pairs = [("CCO", "O"), ("CCN", "CCO"), ("c1ccccc1", "O")]
    prompts = [moltc.pair_prompt(a, b, "Q?", n_graph_tokens=2) for a, b in pairs]
    got = moltc.expected_values(model, tokenizer, prompts, task, bins, pairs, graph, graph_id,
                                batch_size=2, progress=False)  # fmt: skip
    from molkit.models.graph_tokens import graph_positions
    from molkit.models.lm import splice_embeddings

    prefix, continuations = moltc.bin_answer_texts(task, bins)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    for i, prompt in enumerate(prompts):
        scores = []
        for text in continuations:
            full = tokenizer(prefix + text, add_special_tokens=False)["input_ids"]
            cand = full[len(prefix_ids) :]
            ids = torch.tensor([encode_prompt(tokenizer, prompt) + prefix_ids + cand])
            positions = graph_positions(tokenizer, prompt, graph_id)
            with torch.no_grad():
                embeds = splice_embeddings(model, ids, [positions], graph([pairs[i]]))
                logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), -1)
            start = ids.shape[1] - len(cand)
            scores.append(sum(float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])))
        weights = np.exp(np.array(scores) - max(scores))
        expected = float(weights @ (bins + task.width / 2) / weights.sum())
        assert got[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert np.all((got >= bins.min()) & (got <= bins.max() + task.width))


def test_train_pair_lm_keeps_its_best_validation_state_and_generates(tiny_lm):
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
    config = TrainConfig(epochs=6, lr=3e-3, batch_size=4, precision="fp32", eval_every=2,
                         patience=20)  # fmt: skip
    report = moltc.train_pair_lm(
        model, tokenizer, prompts, answers, pairs, graph, config, graph_id, progress=False,
        cache=False, valid=(prompts[:4], answers[:4], pairs[:4]),
    )  # fmt: skip
    curve = report.curve_frame()
    assert curve.step.tolist() == list(range(0, 13, 2)) and curve.valid_loss.iloc[0] == (
        pytest.approx(before, rel=1e-5)
    )  # scored before the first step, then every 2 steps
    best = curve.loc[curve.valid_loss.idxmin()]
    assert report.best_step == best.step and report.best_step > 0
    assert loss() == pytest.approx(best.valid_loss, rel=1e-5)  # the kept state is the best one
    assert not torch.equal(queries_before, graph.projectors.projectors[0].queries)  # it trained
    assert not graph.projectors.training  # back in eval mode
    with pytest.raises(ValueError, match="graph_token_id"):
        moltc.train_pair_lm(model, tokenizer, prompts, answers, pairs, graph, config, None)
    gen = (model, tokenizer, prompts[:2], pairs[:2], graph, graph_id)
    texts = moltc.generate_pair_answers(*gen, max_new_tokens=6, progress=False)
    assert texts == moltc.generate_pair_answers(*gen, max_new_tokens=6, progress=False)  # greedy
    assert len(texts) == 2 and all(len(tokenizer(t)["input_ids"]) <= 7 for t in texts)
    # the official 5-beam decoding, smaller
    beams = moltc.generate_pair_answers(*gen, max_new_tokens=6, progress=False, num_beams=3)
    assert len(beams) == 2 and all(len(tokenizer(t)["input_ids"]) <= 7 for t in beams)


@pytest.mark.slow  # loads minilm-l6 for the projector's initialisation
def test_pair_lm_session_runs_seeded_variants_validated_with_their_readout(tmp_path):
    from molkit.models.gnn import GIN
    from molkit.models.lm import SMOKE_LM, resolve_lm

    task = moltc.TASKS["freesolv-pairs"]
    df = pd.DataFrame(
        {"smiles_1": SMILES, "smiles_2": ["O"] * len(SMILES), "freesolv": np.linspace(-5, 1, 8)}
    )
    corpus = moltc.task_prompts(task, df, 8, None) + moltc.task_answers(task, df)
    corpus += list(moltc.DDI_ANSWERS)
    path = resolve_lm(SMOKE_LM, corpus, tmp_path, vocab_size=384, hidden=64, layers=2, heads=4)
    settings = moltc.Settings.for_profile("smoke").with_overrides(projector_layers=1)
    torch.manual_seed(0)
    session = moltc.PairLMSession(
        path, GIN(num_layers=1, hidden=8), settings, progress=False, cache=str(tmp_path / "a")
    )
    variant = moltc.LM_VARIANTS["MolTC"]
    train, valid, test = df.iloc[:4], df.iloc[4:6], {"t": df.iloc[6:].drop(columns="freesolv")}
    with pytest.raises(RuntimeError, match="pretrain"):
        session.run("MolTC", variant, task, train, valid, test)
    report = session.pretrain(SMILES, SMILES, 2)
    assert report.validated and True in session.pretrained and session.pretrain_report is report
    with pytest.raises(RuntimeError, match="graph_tokens=False"):  # its own pre-training
        session.run("SMILES", moltc.LM_VARIANTS[moltc.SMILES_ONLY], task, train, valid, test)
    run = session.run("MolTC", variant, task, train, valid, test, seed=0, swap=["t"])
    assert run.report.validated and run.report.best_step in [r["step"] for r in run.report.curve]
    assert run.readout in (moltc.GREEDY, moltc.EXPECTED_VALUE)
    assert set(run.valid_scores) == {moltc.GREEDY, moltc.EXPECTED_VALUE}
    chosen = min(run.valid_scores, key=run.valid_scores.get)
    assert run.readout == chosen and np.array_equal(run.valid.y_pred, run.valid.readouts[chosen])
    assert len(run.valid.texts) == 2  # the greedy answers, counted, then filled, on validation
    assert run.valid.n_unparsed == moltc.parse_values(run.valid.texts)[1]
    pred = run.tests["t"]
    assert pred.y_pred.shape == (2,) and set(pred.readouts) == {run.readout}  # one readout on test
    assert len(pred.texts) == (2 if run.readout == moltc.GREEDY else 0)
    assert np.array_equal(pred.y_pred, pred.readouts[run.readout]) and pred.swapped.shape == (2,)
    # a training seed draws its own adapters: A differs, B starts at zero
    unpretrained = moltc.lm_variants(False)["MolTC"]
    states = []
    for seed in (0, 1):
        session.fresh_adapters(seed)
        states.append(session.adapter_state())
    a = [k for k in states[0] if "lora_A" in k]
    b = [k for k in states[0] if "lora_B" in k]
    assert not torch.equal(states[0][a[0]], states[1][a[0]])
    assert all(float(states[0][k].abs().max()) == 0.0 for k in b)
    one = session.run("MolTC", unpretrained, task, train, valid, test, seed=1)
    again = session.run("MolTC", unpretrained, task, train, valid, test, seed=1)  # replayed
    assert again.report.replayed and np.array_equal(one.tests["t"].y_pred, again.tests["t"].y_pred)


# ---------------------------------------------------------------- sections and claims (a fake LM)


def _report(steps: int = 4):
    from molkit.models.lm import TrainReport

    curve = [{"step": 0, "epoch": 0.0, "valid_loss": 2.0},
             {"step": 2, "epoch": 0.5, "train_loss": 1.6, "valid_loss": 1.5},
             {"step": 4, "epoch": 1.0, "train_loss": 1.2, "valid_loss": 1.7}]  # fmt: skip
    return TrainReport(losses=[1.0] * steps, tokens=400, seconds=2.0, steps=steps, curve=curve,
                       best_step=2, planned_steps=8)  # fmt: skip


class _FakeSession:
    """A stand-in for `PairLMSession`: known predictions per variant, ``f(y, seed)`` of the test
    pairs' hidden ``truth`` column (and, swapped, per variant in ``swapped``), no LM."""

    def __init__(self, predictions, swapped=None):
        self.predictions, self.swapped = predictions, swapped or {}

    def run(self, name, variant, task, train, valid, tests, seed=0, max_epochs=1.0, swap=(),
            swap_pairs=None):  # fmt: skip
        from molkit.methods.moltc.lm import LMPredictions, LMRun

        regression = task.kind == "regression"
        readout = moltc.EXPECTED_VALUE if regression else moltc.LIKELIHOOD

        def predictions(frame, rows=None, swapped=False):
            y = frame["truth"].to_numpy(dtype=float)
            y = y if rows is None else y[rows]
            f = (
                self.swapped.get(name, self.predictions[name])
                if swapped
                else self.predictions[name]
            )
            return f(y, seed)

        out = {}
        for set_name, test in tests.items():
            p = predictions(test)
            readouts = {readout: p, **({moltc.GREEDY: p + 0.1} if regression else {})}
            texts = [f"The accurate value is {v:.2f}." for v in p] if regression else []
            pred = LMPredictions(p, readouts, texts, 0, 10.0)
            if set_name in swap:
                pred.swap_rows = subsample(len(test), swap_pairs, 0)
                pred.swapped = predictions(test, pred.swap_rows, swapped=True)
            out[set_name] = pred
        v = np.zeros(len(valid))
        valid_readouts = {readout: v, **({moltc.GREEDY: v + np.arange(len(v)) % 3} if regression
                                          else {})}  # fmt: skip
        valid_texts = ([f"The accurate value is {x:.2f}." for x in valid_readouts[moltc.GREEDY]]
                       if regression else [])  # fmt: skip
        valid_pred = LMPredictions(v, valid_readouts, valid_texts, 1 if regression else 0)
        scores = {readout: 0.5, **({moltc.GREEDY: 0.7} if regression else {})}
        return LMRun(name, variant, seed, _report(), readout, scores, valid_pred, out)


def _pair_frame(n, rng, target, solvents):
    return pd.DataFrame({"smiles_1": [f"C{'C' * (i % 7)}O" for i in range(n)],
                         "smiles_2": [solvents[i % len(solvents)] for i in range(n)],
                         target: rng.normal(size=n), "temperature": 298.0})  # fmt: skip


def _lm_set(task, frame, tests, train=None):
    """An `LMSet` whose test frames keep their labels in a ``truth`` column for the fake LM."""
    from molkit.methods.moltc.lm_data import LMSet

    train = frame if train is None else train
    labels = {k: seal(t[task.target].to_numpy(dtype=float), k) for k, t in tests.items()}
    frames = {
        k: t.drop(columns=[task.target]).assign(truth=t[task.target]) for k, t in tests.items()
    }
    return LMSet(task, frame, frame.iloc[:40], train, frame.iloc[:20], frames, labels, "test")


def _stage(session, **sets):
    return mx.LMStage(session=session, sets={k.replace("_", "-"): v for k, v in sets.items()})


def test_freesolv_gates_and_compares_over_training_seeds():
    rng = np.random.default_rng(0)
    settings = moltc.Settings.for_profile("smoke")  # lm_seeds 2: predictions are (2, n)
    task = moltc.TASKS["freesolv-pairs"]
    fs = _pair_frame(200, rng, "freesolv", ["O"])
    set_name = "grouped (LM test pairs)"
    lm_set = _lm_set(task, fs, {set_name: fs.iloc[:120]})

    def noisy(scale):
        return lambda y, seed: y + np.random.default_rng(seed).normal(scale=scale, size=len(y))

    session = _FakeSession({"MolTC": noisy(0.1), moltc.SMILES_ONLY: noisy(0.5)})
    res = moltc.freesolv_lm(settings, _stage(session, freesolv_pairs=lm_set))
    assert res.predictions(set_name, "MolTC").shape == (2, 120)
    claims = moltc.lm_claims(settings, res)
    assert [c.verdict for c in claims] == [HOLDS, HOLDS, HOLDS]
    gate, _, comparison = claims
    assert gate.claim == "MolTC beats training mean (freesolv-pairs, grouped split)"
    assert (gate.kind, gate.seeds, gate.seeds_baseline, gate.paper_figure) == ("gate", 2, 1, "")
    assert comparison.claim.startswith("probe: graph tokens beat SMILES only")
    assert (comparison.kind, comparison.seeds, comparison.seeds_baseline) == ("comparison", 2, 2)
    assert comparison.paper_figure.startswith("not comparable:") and comparison.gates == (
        gate.claim, claims[1].claim)  # fmt: skip
    table = res.tables[set_name]
    assert list(table.index) == ["training mean", "Morgan + gradient boosting", "MolTC",
                                 moltc.SMILES_ONLY]  # fmt: skip
    assert table.loc["MolTC", "seeds"] == 2 and "distinct answers" not in table.columns
    expected = np.mean([np.sqrt(np.mean((p - res.y_test[set_name]) ** 2))
                        for p in res.predictions(set_name, "MolTC")])  # fmt: skip
    assert table.loc["MolTC", "rmse"] == pytest.approx(expected)
    frame = res.frame()
    lm_rows = frame[(frame.method == "MolTC") & (frame.split == set_name)]
    assert sorted(set(lm_rows.seed)) == [0, 1] and set(lm_rows.note) == {"120 test pairs"}
    valid_rows = frame[frame.split == "LM validation"].set_index(["method", "seed", "metric"])
    assert valid_rows.value["MolTC", 1, "kept step"] == 2
    assert valid_rows.value["MolTC", 0, "readout: expected value"] == 1.0
    assert valid_rows.value["MolTC", 0, "valid rmse (greedy)"] == 0.7
    # the greedy answer's diagnostics are read on validation; the test pairs only by the readout
    assert valid_rows.value["MolTC", 0, "valid distinct answers (greedy)"] == 3
    assert valid_rows.value["MolTC", 0, "valid unparsed answers (greedy)"] == 1
    assert list(res.training.variant) == ["MolTC", "MolTC", moltc.SMILES_ONLY, moltc.SMILES_ONLY]
    assert res.training.training.iloc[0].startswith("4 of 8 optimiser steps, kept step 2")
    assert len(res.curves) == 12 and set(res.curves.seed) == {0, 1}
    assert len(res.cot_examples) == 6  # MolTC's greedy answers on validation pairs, labelled
    assert res.cot_examples["generated (MolTC)"].iloc[1] == "The accurate value is 1.00."
    # fewer seeds for the control arm: the comparison's interval says so
    fewer = moltc.freesolv_lm(settings.with_overrides(control_lm_seeds=1),
                              _stage(session, freesolv_pairs=lm_set))  # fmt: skip
    assert fewer.predictions(set_name, moltc.SMILES_ONLY).shape == (1, 120)
    assert list(fewer.training.variant) == ["MolTC", "MolTC", moltc.SMILES_ONLY]
    comparison = moltc.lm_claims(settings, fewer)[2]
    assert (comparison.seeds, comparison.seeds_baseline, comparison.verdict) == (2, 1, HOLDS)
    # an arm at the training mean fails its gate, and the comparison is not judged
    train_mean = float(fs.freesolv.mean())
    session.predictions[moltc.SMILES_ONLY] = lambda y, seed: np.full(len(y), train_mean)
    session.predictions["MolTC"] = lambda y, seed: 0.05 * y + train_mean + 0.001 * seed
    res = moltc.freesolv_lm(settings, _stage(session, freesolv_pairs=lm_set))
    claims = moltc.lm_claims(settings, res)
    assert [c.verdict for c in claims] == [HOLDS, UNDECIDED, NOT_JUDGED]
    assert math.isnan(claims[2].ours) and "gate undecided: SMILES only" in claims[2].detail
    assert "MolTC beats" not in claims[2].detail  # only the failed gate is named


def test_the_swap_test_is_gated_and_fails_for_a_role_blind_model():
    rng = np.random.default_rng(0)
    settings = moltc.Settings.for_profile("smoke").with_overrides(swap_pairs=40)
    task = moltc.TASKS["combisolu"]
    cs = _pair_frame(200, rng, "logS", ["O", "CCO", "CC(C)=O", "ClCCl"])
    set_name = "unseen_solvent (LM test pairs)"
    lm_set = _lm_set(task, cs, {set_name: cs.iloc[:100]})
    good = lambda y, seed: y + 0.05  # noqa: E731
    session = _FakeSession(
        {"MolTC": good, moltc.SHARED: good},
        swapped={"MolTC": lambda y, seed: y - 1.0, moltc.SHARED: good},  # the second: role-blind
    )
    role = moltc.role_lm(settings, _stage(session, combisolu=lm_set))
    claims = {c.claim.split(" (")[0]: c for c in moltc.lm_claims(settings, role)}
    aware = claims["swap test: MolTC reads the roles"]
    blind = claims[f"swap test: {moltc.SHARED} reads the roles"]
    assert aware.verdict == HOLDS and aware.n == 40 and aware.kind == "comparison"
    assert blind.verdict == UNDECIDED and blind.ours == 0.0
    assert aware.gates == ("MolTC beats training mean (combisolu, unseen solvent split)",)
    rows = subsample(100, 40, 0)
    swap = role.frame().query("metric == 'swap_mean_abs_change'").set_index("method").value
    assert swap["MolTC"] == pytest.approx(1.05) and swap[moltc.SHARED] == 0.0
    assert role.tables[set_name].loc["MolTC", "swap pairs"] == 40
    assert aware.detail.startswith("MolTC, in place 0.050 vs MolTC, swapped")
    two = moltc.role_lm(settings.with_overrides(role_lm_seeds=2), _stage(session, combisolu=lm_set))
    assert two.predictions(set_name, "MolTC", swapped=True).shape == (2, 40)
    assert [c.seeds for c in moltc.lm_claims(settings, two)] == [2, 2, 2, 2, 2]
    y = role.y_test[set_name][rows]
    assert aware.ours == pytest.approx(0.05 - np.sqrt(np.mean((y - 1.0 - y) ** 2)))
    # a variant that fails its gate gets no swap verdict
    session.predictions["MolTC"] = lambda y, seed: np.full(len(y), float(cs.logS.mean()))
    role = moltc.role_lm(settings, _stage(session, combisolu=lm_set))
    claims = {c.claim.split(" (")[0]: c for c in moltc.lm_claims(settings, role)}
    assert claims["swap test: MolTC reads the roles"].verdict == NOT_JUDGED
    assert claims["probe: role-separated projectors beat one shared projector"].verdict == (
        NOT_JUDGED)  # fmt: skip


def test_ddi_gates_against_chance_and_the_prior_of_the_lms_pairs_and_of_every_pair():
    n = 120
    labels = (np.arange(n) % 2).astype(float)
    both = pd.DataFrame({"smiles_1": ["C" * (i % 40 + 1) + "N" for i in range(n)],
                         "smiles_2": ["c1ccccc1"] * n, "label": labels})  # fmt: skip
    one = pd.DataFrame({"smiles_1": [f"N{'C' * i}" for i in range(n)], "smiles_2": ["CCl"] * n,
                        "label": labels})  # fmt: skip
    # every training pair: the one-unseen drugs with another partner, their labels given away
    told = one.assign(smiles_2="CBr")
    lm_train = pd.DataFrame({"smiles_1": ["C" * (i % 20 + 1) + "O" for i in range(n)],
                             "smiles_2": ["CCl"] * n, "label": labels})  # fmt: skip
    full = pd.concat([lm_train, told], ignore_index=True)
    task = moltc.TASKS["chchminer"]
    lm_set = _lm_set(task, full, {mx.LM_BOTH_UNSEEN: both, mx.LM_ONE_UNSEEN: one}, train=lm_train)
    session = _FakeSession({"MolTC": lambda y, seed: 0.6 * y + 0.2,
                            moltc.SMILES_ONLY: lambda y, seed: np.full(len(y), 0.5)})  # fmt: skip
    settings = moltc.Settings.for_profile("smoke").with_overrides(n_bits=32)
    assert settings.ddi_swap and not moltc.Settings().ddi_swap
    res = moltc.ddi_lm(settings, _stage(session, chchminer=lm_set))
    verdicts = {c.claim: c.verdict for c in moltc.lm_claims(settings, res)}
    assert verdicts["MolTC beats chance (constant score) (chchminer, both drugs unseen)"] == HOLDS
    # CCl's rate is one number for every test pair in the LM's own pairs: the prior ranks nothing
    lm_prior = "MolTC beats per-drug prior (the LM's training pairs) (chchminer, one drug unseen)"
    all_prior = "MolTC beats per-drug prior (all training pairs) (chchminer, one drug unseen)"
    assert verdicts[lm_prior] == HOLDS and verdicts[all_prior] == UNDECIDED
    assert res.tables[mx.LM_ONE_UNSEEN].loc[mx.PRIOR_ALL, "roc_auc"] == 1.0
    comparisons = [c for c in verdicts if c.startswith("probe:")]
    assert all(verdicts[c] == NOT_JUDGED for c in comparisons) and len(comparisons) == 2
    assert res.tables[mx.LM_BOTH_UNSEEN].loc["MolTC", "swap_label_agreement"] == 1.0
    unswapped = moltc.ddi_lm(settings.with_overrides(ddi_swap=False),
                             _stage(session, chchminer=lm_set))  # fmt: skip
    assert "swap_label_agreement" not in unswapped.tables[mx.LM_BOTH_UNSEEN]


def test_findings_results_table_and_figures():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    settings = moltc.Settings.for_profile("smoke")
    fs = _pair_frame(200, rng, "freesolv", ["O"])
    lm_set = _lm_set(moltc.TASKS["freesolv-pairs"], fs, {"grouped (LM test pairs)": fs.iloc[:60]})
    session = _FakeSession({"MolTC": lambda y, s: y + 0.1 * s, moltc.SMILES_ONLY: lambda y, s: y})
    stage = _stage(session, freesolv_pairs=lm_set)
    stage.prompt_lengths = pd.DataFrame(
        {"prompt tokens (whole SMILES)": [60.0], "prompt tokens (cut at 24)": [50.0],
         "SMILES over 24 characters (share)": [0.25]}, index=["freesolv-pairs"])  # fmt: skip
    res = moltc.freesolv_lm(settings, stage)
    regression = mx.RegressionBaselines(dedup=pd.DataFrame(
        {"rows": [10.0], "kept": [8.0], "duplicate_rows": [2.0], "repeated_keys": [1.0],
         "max_spread": [0.5]}, index=["combisolu"]))  # fmt: skip
    regression.freesolv_gbm = pd.DataFrame({"seed": [0, 1], "rmse_pair": [1.2, 0.9],
                                            "rmse_solute": [1.2, 0.9],
                                            "max_difference": [0.0, 0.0]})  # fmt: skip
    everything = res + moltc.judge(settings, res)
    lines = moltc.findings(everything, settings, regression, stage, [res])
    text = "\n".join(lines)
    assert "seed 0: 1.200, seed 1: 0.900 (a spread of 0.300)" in text and "0.850 ± 0.015" in text
    assert "predictions identical: water's constant block never enters a tree" in text
    assert "combisolu: 10 rows hold 8 distinct measurements" in text
    assert "+20% against the earlier cut (50 tokens; 25% of these SMILES" in text
    assert (
        "freesolv-pairs / MolTC: kept the step of lowest validation loss (seed 0: step 2 of 4;"
        " seed 1: step 2 of 4); readout chosen on validation: expected value 2 of 2"
    ) in text
    assert "Gate: MolTC beats training mean (freesolv-pairs, grouped split): passes" in text
    assert "Judged: probe: graph tokens beat SMILES only" in text and "training seeds 2)" in text
    table = moltc.results_table(everything)
    assert table.loc["MolTC", ("freesolv-pairs", "grouped (LM test pairs)", "rmse")].count("±")
    assert "LM validation" not in set(table.columns.get_level_values(1))
    fig = moltc.figures.training_curves(res)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "freesolv-pairs: MolTC"
    assert len(moltc.figures.parity_plots(res).axes) == 3  # GBM, then the two variants
    assert len(moltc.figures.pipeline().axes) == 1
    stage_table = moltc.figures.stages().axes[0].tables[0]
    assert stage_table.get_celld()[(0, 0)].get_text().get_text() == "GIN"
    assert len({r for r, _ in stage_table.get_celld()}) == len(moltc.STAGES) + 1  # + the header
    rows = Results()
    for seed, value in ((0, 0.6), (1, 0.7)):
        rows.add_row("chchminer", "prior", "roc_auc", value, seed, "drug_cold")
    rows.add_row("chchminer", "MolTC", "roc_auc", 0.9, 0, mx.LM_ONE_UNSEEN)
    fig = moltc.figures.baseline_bars(rows.frame())
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 1  # the LM set is left out
    frame = pd.DataFrame({"a": ["x"], "b": ["y"]})
    cells = moltc.figures.text_table(frame, "t").axes[0].tables[0].get_celld()
    assert cells[(1, 0)].get_text().get_text() == "x" and cells[(0, 1)].get_text().get_text() == "b"


def test_paper_scale_and_the_official_codes_role_handling():
    full, default = moltc.Settings.for_profile("full"), moltc.Settings.for_profile("default")
    table = moltc.paper_scale(full, default)
    assert list(table.columns) == ["paper / official code", "full", "default"]
    assert {"pre-training stages", "Q-Former depth", "fine-tuning pairs per task"} <= set(
        table.index)  # fmt: skip
    assert table.loc["Q-Former depth", "full"].startswith("6 layers")
    assert "12 layers" in table.loc["Q-Former depth", "paper / official code"]
    assert table.loc["pre-training stages", "default"] == "none"
    assert table.loc["fine-tuning pairs per task", "default"] == "384"
    where = dict(moltc.OFFICIAL_CODE)
    assert "graph_embeds2 = graph_embeds1.detach()" in where["model/blip2_opt.py:315-317"]
    assert "shared by both molecules in every stage" in moltc.OFFICIAL_SETTINGS["projector"]
    assert moltc.STAGES["official code: fine-tuning"]["Q-Former"] == "trained, shared"
    assert moltc.STAGES["paper: fine-tuning"]["Q-Former"] == "trained, per role"


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
    assert (
        line.startswith(f"memory: {os.path.basename(path)} needs about")
        and "bf16, LoRA r 8" in line
    )
    assert "1000.0 GB free on cpu" in line and "\n" not in line
    with pytest.raises(InsufficientMemoryError, match="lm_quantization='4bit', lm_batch_size"):
        moltc.lm_memory(settings, path, "cpu", free_bytes=1000)
    absent = moltc.lm_memory(full, "no-such-org/no-such-model-xyz", local_files_only=True)
    assert absent.startswith("memory: no estimate for no-such-org/no-such-model-xyz")
