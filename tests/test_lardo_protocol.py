"""MolGraph-LarDo's protocols and claims: the official split as MolCLR's code builds it, the units
of both protocols, sealed test labels (a selection that reads them raises), held-out retrieval,
the gates and gated comparisons with training seeds in the interval, the Discussion's lead, and
the rooms importing downwards only."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molkit.data import TestLabelAccessError, final_scoring, seal
from molkit.methods import lardo
from molkit.methods.experiment import CONTRADICTED, HOLDS, NOT_JUDGED

# ------------------------------------------------------------------------------ the official split


def molclr_scaffold_split(smiles, valid_size=0.1, test_size=0.1):
    """MolCLR's split as yuyangw/MolCLR@3d3bc19 dataset/dataset_test.py lines 40-89 builds it
    (its reader's first-row drop aside): scaffold sets keyed by MurckoScaffoldSmiles without
    chirality, sorted by (size, first index) largest first, then train, valid, test filled."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds.MurckoScaffold import MurckoScaffoldSmiles

    RDLogger.DisableLog("rdApp.*")
    scaffolds = {}
    for ind, s in enumerate(smiles):
        key = MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(s), includeChirality=False)
        scaffolds.setdefault(key, []).append(ind)
    scaffolds = {key: sorted(value) for key, value in scaffolds.items()}
    sets = [v for _, v in sorted(scaffolds.items(), key=lambda x: (len(x[1]), x[1][0]),
                                 reverse=True)]  # fmt: skip
    train_cutoff = (1.0 - valid_size - test_size) * len(smiles)
    valid_cutoff = (1.0 - test_size) * len(smiles)
    train, valid, test = [], [], []
    for s in sets:
        if len(train) + len(s) > train_cutoff:
            if len(train) + len(valid) + len(s) > valid_cutoff:
                test += s
            else:
                valid += s
        else:
            train += s
    return sorted(train), sorted(valid), sorted(test)


def test_the_official_split_is_molclrs(mirror):
    from molkit.data import load_dataset

    for name in ("esol", "bace"):
        df = load_dataset(name)
        ours = lardo.official_split(df["smiles_raw"].tolist())
        theirs = molclr_scaffold_split(df["smiles_raw"].tolist())
        for part, indices in zip(("train", "valid", "test"), theirs, strict=True):
            assert ours[part].tolist() == indices, (name, part)
    assert "dataset/dataset_test.py lines 46-89" in lardo.OFFICIAL_SPLIT
    assert "finetune_repeat3.py line 377" in lardo.OFFICIAL_REPEATS


def test_protocol_units_official_seeds_share_one_split_balanced_splits_differ():
    smiles = ["CCO", "c1ccccc1O", "c1ccccc1N", "C1CCCCC1", "C1CCCCC1O", "c1ccncc1", "CCN",
              "c1ccoc1", "C1CCNCC1", "c1ccc2ccccc2c1", "CC(=O)O", "c1cc[nH]c1"]  # fmt: skip
    settings = lardo.Settings.for_profile("smoke").with_overrides(official_seeds=(4, 5),
                                                                  splits=(0, 1))  # fmt: skip
    units = lardo.protocol_units(settings, smiles)
    assert [(u.protocol, u.split, u.seed) for u in units] == [
        ("official", 0, 4), ("official", 0, 5), ("balanced", 0, 0), ("balanced", 1, 1),
    ]  # fmt: skip
    assert units[0].parts is units[1].parts
    assert [u.label for u in units] == [
        "official split, seed 4", "official split, seed 5", "balanced split 0", "balanced split 1",
    ]  # fmt: skip
    for u in units:
        together = np.sort(np.concatenate([u.parts[k] for k in ("train", "valid", "test")]))
        assert together.tolist() == list(range(len(smiles)))
    none = lardo.protocol_units(settings.with_overrides(official_seeds=()), smiles)
    assert [u.protocol for u in none] == ["balanced", "balanced"]


# ---------------------------------------------------------------------------- sealed test labels


def test_test_labels_are_sealed_and_a_selection_that_reads_them_raises():
    """What a unit keeps of its test part is sealed: stopping fine-tuning on it (as a selection
    would) raises, and only the final scoring reads it."""
    from molkit.chem import graphs_from_smiles
    from molkit.models.gnn import GIN, GraphPredictor, train_graph_model

    smiles = ["CCO", "CCN", "c1ccccc1", "c1ccccc1O", "CCCl", "c1ccncc1"]
    y = np.array([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    graphs = graphs_from_smiles(smiles, y, progress=False)
    test_labels = seal(y[3:], "toy test")
    unit = lardo.UnitPredictions("official", 0, 0, test_labels, {"lardo": y[3:]})
    with pytest.raises(TestLabelAccessError, match="toy test"):
        np.asarray(unit.y)
    torch.manual_seed(0)
    model = GraphPredictor(1, gin=GIN(num_layers=1, hidden=4))
    with pytest.raises(TestLabelAccessError, match="validation part"):
        train_graph_model(model, graphs[:3], y[:3], graphs[3:], unit.y, epochs=1,
                          progress=False)  # fmt: skip
    with final_scoring():
        assert np.asarray(unit.y).tolist() == [[1.0], [0.0], [1.0]]
    assert len(unit.y) == 3  # how many test items there are is no secret


# ------------------------------------------------------------------------------------ retrieval


def test_retrieval_hits_known_answers_and_chance_for_texts_that_say_nothing():
    eye = np.eye(4)
    assert lardo.retrieval_hits(eye, eye, 1).tolist() == [1.0] * 4
    # each graph's text is the next one's: its own text ranks below the best match
    shifted = np.roll(eye, 1, axis=0)
    assert lardo.retrieval_hits(eye, shifted, 1).tolist() == [0.0] * 4
    assert lardo.retrieval_hits(eye, shifted, 4).tolist() == [1.0] * 4
    # texts all the same: every candidate ties, k / n exactly
    same = np.ones((5, 3)) / math.sqrt(3)
    graphs = np.random.default_rng(0).normal(size=(5, 3))
    assert lardo.retrieval_hits(graphs, same, 2).tolist() == [0.4] * 5
    # two molecules share a text: each has a one-in-two chance at k = 1
    text = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert lardo.retrieval_hits(text, text, 1).tolist() == [0.5, 0.5, 1.0]
    with pytest.raises(ValueError, match="embeddings differ"):
        lardo.retrieval_hits(eye, eye[:3], 1)
    with pytest.raises(ValueError, match="k counts candidates"):
        lardo.retrieval_hits(eye, eye, 0)


def test_graph_to_text_hits_uses_the_trained_projections():
    from molkit.chem import graphs_from_smiles
    from molkit.models.gnn import GIN

    smiles = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "c1ccncc1", "CCCl", "CCCCO", "c1ccoc1"]
    graphs = graphs_from_smiles(smiles, progress=False)
    text = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    torch.manual_seed(0)
    fitted = lardo.pretrain_clip(GIN(num_layers=2, hidden=8), graphs, text, epochs=40, lr=0.01,
                                 batch_size=8, progress=False)  # fmt: skip
    graph_z, text_z = fitted.model.project(graphs, text)
    assert graph_z.shape == text_z.shape == (8, 128)
    assert np.allclose(np.linalg.norm(graph_z, axis=1), 1.0, atol=1e-5)
    hits = lardo.graph_to_text_hits(fitted.model, graphs, text, ks=(1, 8))
    assert hits[8].tolist() == [1.0] * 8  # every text is among all eight
    assert hits[1].mean() > 1 / 8  # trained on these pairs: above chance
    assert np.array_equal(hits[1], lardo.retrieval_hits(graph_z, text_z, 1))


# ---------------------------------------------------------------------------------- claim rows


def unit(protocol, split, seed, y, **preds):
    return lardo.UnitPredictions(protocol, split, seed, seal(y, "test"), preds)


def fake_bench() -> lardo.Benchmark:
    """bbbp (classification): on the official split LarDo ranks perfectly in each of 3 seeds,
    scratch is noise, DSM text is the prior (fails its gate); on two balanced splits, LarDo's
    scores are shifted in split 1 (perfect per split, not pooled). esol (regression): scratch
    near perfect, LarDo worse."""
    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 15)[:, None]
    prior = np.full_like(y, 0.5)
    units = []
    for seed in (0, 1, 2):
        good = y + rng.normal(0, 0.1, y.shape)
        units.append(unit("official", 0, seed, y, lardo=good, scratch=rng.random(y.shape),
                          dsm_only=prior, mean=prior))  # fmt: skip
    for split, offset in ((0, 0.0), (1, -5.0)):
        good = y + rng.normal(0, 0.1, y.shape) + offset
        units.append(unit("balanced", split, split, y, lardo=good, scratch=1 - good,
                          mean=prior))  # fmt: skip
    reg_y = rng.normal(size=(20, 1))
    reg = [unit("official", 0, seed, reg_y, lardo=reg_y + 0.5, scratch=reg_y + 0.01,
                dsm_only=reg_y + 0.02, mean=np.zeros_like(reg_y)) for seed in (0, 1)]  # fmt: skip
    bench = lardo.Benchmark()
    bench.predictions = {
        "bbbp": lardo.DatasetPredictions("bbbp", "classification", units),
        "esol": lardo.DatasetPredictions("esol", "regression", reg),
    }
    return bench


def test_model_claims_gate_every_arm_then_judge_comparisons_with_the_seeds_in_the_interval():
    claims = lardo.model_claims(fake_bench())
    by = {c.claim: c for c in claims}
    # official split, bbbp: three gates, two comparisons; the seeds stacked (3 per arm)
    gate = by["bbbp, official split: LarDo (stage 1 + DSM) beats the training class prior"]
    assert gate.kind == "gate" and gate.verdict == HOLDS and gate.ours == pytest.approx(0.5)
    assert (gate.seeds, gate.seeds_baseline) == (3, 1) and gate.n == 30
    assert gate.metric == "roc_auc (mean over seeds)"
    assert "MolCLR's deterministic scaffold split, 3 training seed(s)" in gate.detail
    dsm_gate = by["bbbp, official split: DSM text only (no LLM) beats the training class prior"]
    assert dsm_gate.verdict != HOLDS  # the prior itself
    versus_dsm = by["bbbp, official split: LLM descriptions beat the DSM text alone "
                    "(both fine-tuned)"]  # fmt: skip
    assert versus_dsm.verdict == NOT_JUDGED and versus_dsm.kind == "comparison"
    assert math.isnan(versus_dsm.ours) and "gate undecided" in versus_dsm.detail
    scratch = by["bbbp, official split: LarDo pre-training beats GIN from scratch (both "
                 "fine-tuned)"]  # fmt: skip
    assert scratch.seeds == scratch.seeds_baseline == 3
    assert scratch.paper_figure.startswith("direction only (abstract, no figure)")
    # balanced splits: resampled within each split, the metric averaged over splits
    pooled = by["bbbp, balanced splits (probe): LarDo (stage 1 + DSM) beats the training class "
                "prior"]  # fmt: skip
    assert pooled.ours == pytest.approx(0.5) and pooled.metric == "roc_auc (mean over splits)"
    assert pooled.seeds == 1 and "2 balanced scaffold split(s), one run each" in pooled.detail
    balanced = by["bbbp, balanced splits (probe): LarDo pre-training beats GIN from scratch "
                  "(both fine-tuned)"]  # fmt: skip
    assert balanced.paper_figure == lardo.claims.BALANCED
    assert balanced.verdict == NOT_JUDGED  # scratch = 1 - LarDo: below the prior
    # regression: RMSE, lower is better; LarDo worse than scratch
    reg = by["esol, official split: LarDo pre-training beats GIN from scratch (both fine-tuned)"]
    assert reg.verdict == CONTRADICTED and reg.ours == pytest.approx(0.5 - 0.01, abs=1e-6)
    assert reg.metric == "rmse (mean over seeds)"
    assert "training mean" in by["esol, official split: GIN from scratch beats the training mean"
                                 ].claim  # fmt: skip
    # every comparison names its gates; no holds / contradicted row whose arm failed its gate
    for c in claims:
        if c.kind == "comparison":
            assert len(c.gates) == 2 and all(g in by for g in c.gates)
            failed = [by[g] for g in c.gates if by[g].verdict != HOLDS]
            assert (c.verdict == NOT_JUDGED) == bool(failed)
    order = [c.claim.split(":")[0] for c in claims]
    assert order.index("bbbp, balanced splits (probe)") > order.index("esol, official split")


def retrieval_result(lardo_hits, dsm_hits) -> lardo.Retrieval:
    n = lardo_hits.shape[1]
    res = lardo.Retrieval(seeds=(0, 1), split="official split")
    res.groups = np.array(["bbbp"] * (n // 2) + ["esol"] * (n - n // 2))
    res.chance = {5: np.full(n, 0.1)}
    res.hits = {"lardo": {5: lardo_hits}, "dsm_only": {5: dsm_hits},
                "no_dsm": {5: lardo_hits}}  # fmt: skip
    res.table = pd.DataFrame([
        {"source": lardo.METHOD_LABELS[s], "k": 5, "held-out molecules": n,
         "hit rate": h[5].mean(), "chance": 0.1, "hit rate - chance": h[5].mean() - 0.1,
         "low": h[5].mean() - 0.15, "high": h[5].mean() - 0.05, "seeds": 2}
        for s, h in res.hits.items()
    ])  # fmt: skip
    return res


def test_retrieval_claims_gate_each_source_against_chance():
    n = 40
    at_chance = np.full((2, n), 0.1)
    perfect = np.ones((2, n))
    claims = lardo.retrieval_claims(retrieval_result(at_chance, perfect))
    kinds = [c.kind for c in claims]
    assert kinds == ["gate"] * 3 + ["comparison"] * 2  # no SMILES-kept source: one row fewer
    gates = {c.claim: c for c in claims[:3]}
    dsm = gates["retrieval: DSM text only (no LLM) identifies its molecule above chance (top 5)"]
    assert dsm.verdict == HOLDS and dsm.ours == pytest.approx(0.9)
    assert (dsm.seeds, dsm.seeds_baseline) == (2, 1) and dsm.n == n
    assert dsm.detail.endswith(f"{n} held-out molecules of bbbp, esol (official split); "
                               "chance 0.100")  # fmt: skip
    beyond = claims[3]
    assert beyond.claim == ("retrieval: the LLM adds information beyond the DSM values (LarDo "
                            "text vs DSM text) (top 5)")  # fmt: skip
    assert beyond.verdict == NOT_JUDGED  # LarDo's texts sit at chance: its gate is undecided
    # a LarDo text above chance but below the DSM text: the comparison is judged, contradicted
    half = np.full((2, n), 0.5)
    judged = lardo.retrieval_claims(retrieval_result(half, perfect))
    assert judged[3].verdict == CONTRADICTED and judged[3].ours == pytest.approx(-0.5)
    assert lardo.retrieval_claims(lardo.Retrieval()) == []


def test_claim_set_table_verdicts_and_the_discussion_leads_with_the_text(mirror):
    bench = fake_bench()
    retrieval = retrieval_result(np.full((2, 40), 0.1), np.ones((2, 40)))
    calib = lardo.Calibration(datasets=("bbbp",))
    calib.counts = {"lardo": (np.array([1.0, 0, 1, 0]), np.array([2.0, 1, 2, 1])),
                    "no_dsm": (np.array([1.0, 1, 1, 1]), np.array([1.0, 1, 1, 1]))}  # fmt: skip
    calib.summary = pd.DataFrame(
        {"contradictions": [2, 4], "checkable_claims": [6, 4],
         "share_descriptions_with_checkable_claim": [1.0, 1.0],
         "share_descriptions_echoing_smiles": [0.25, 0.0]},
        index=pd.Index(["lardo", "no_dsm"], name="variant"),
    )  # fmt: skip
    claims = lardo.paper_claims(bench, retrieval, calib)
    assert claims.claims[0].claim.startswith("retrieval: ")
    assert claims.claims[-1].claim.startswith("calibration: ")
    table = claims.table()
    assert "paper" not in table.columns and len(table) == len(claims.claims)
    assert table["ours"].dropna().round(3).equals(table["ours"].dropna())
    lines = claims.verdicts().splitlines()
    assert all(": " in line for line in lines) and not any("beats the training" in line
                                                           for line in lines)  # fmt: skip
    calibration = [line for line in lines if line.startswith("DSM values cut")][0]
    assert calibration.startswith("DSM values cut the share of checkable claims contradicting "
                                  "RDKit: calibration ")  # fmt: skip
    stage1 = lardo.Stage1(table=pd.DataFrame([{
        "dataset": "bbbp", "free text: names": ["a"], "free text: mapped": {},
        "ranked: kept": ["polar surface area"],
    }]))  # fmt: skip
    text = lardo.discussion(stage1, bench, retrieval, calib, claims)
    first, second = text.splitlines()[:2]
    assert first.startswith("What the text tells about its molecule: after pre-training on each "
                            "text source, a graph finds its own text among the top 5")  # fmt: skip
    assert second.startswith("LarDo's texts do not identify their molecules better than chance")
    assert "Calibration per checkable claim: LarDo (stage 1 + DSM) 2 of 6 contradict RDKit" in text
    assert "0.250 of LarDo's descriptions repeat their SMILES" in text
    assert "bbbp, official split not judged: gate of DSM text only (no LLM) undecided" in text


# -------------------------------------------------------------------------------- the rooms


ROOMS = ["settings", "method | factcheck | clip", "descriptions | protocol", "responses",
         "experiment", "claims | figures"]  # fmt: skip


def test_the_rooms_import_downwards_only():
    """The import-linter contract of the package, checked here by reading the imports: a room
    imports only rooms below it, and rooms of one layer never import each other."""
    layer = {m.strip(): i for i, rooms in enumerate(ROOMS) for m in rooms.split("|")}
    package = Path(lardo.__file__).parent
    assert {p.stem for p in package.glob("*.py")} - {"__init__"} == set(layer)
    for path in package.glob("*.py"):
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "molkit.methods.lardo."
            ):
                target = node.module.rsplit(".", 1)[1]
                assert layer[target] < layer[path.stem], f"{path.stem} imports {target}"
        assert len(path.read_text().splitlines()) <= 600, path.name
