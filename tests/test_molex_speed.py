"""MoleX's speed report (`molkit.methods.molex.benchmark.speed_report`, what ``molkit bench``
calls) in its quick form: tiny models, a few molecules, one repeat. No figure is asserted, only
the report's shape and the identities between its numbers."""

import pytest

from molkit.methods.molex.benchmark import SPEED_TARGETS, group_matching_rate, speed_report
from molkit.methods.molex.ngrams import build_ngram_table
from molkit.models.lm import SMOKE_LM, load_causal_lm, resolve_lm
from molkit.models.prefix import load_chemical_lm

SMILES = [
    "O=[N+]([O-])c1ccccc1",
    "CCO",
    "Cc1ccc(cc1)[N+](=O)[O-]",
    "CC(=O)Nc1ccc(O)cc1",
    "ClC(Cl)Cl",
    "O=[N+]([O-])c1ccc2ccccc2c1",
    "OC(=O)c1ccccc1",
    "CCOC(C)=O",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_smiles_bert):
    bert = tiny_smiles_bert(tmp_path_factory.mktemp("bert"), SMILES, extra_tokens="()=#123cCNOS")
    corpus = [f"Is {s} mutagenic? Answer Yes or No. Yes" for s in SMILES] * 5
    llm = resolve_lm(SMOKE_LM, corpus, tmp_path_factory.mktemp("llm"), vocab_size=300, hidden=32)
    return load_chemical_lm(bert), load_causal_lm(llm, device="cpu")


def test_speed_report_in_quick_mode(models):
    chemical_lm, llm = models
    report = speed_report(
        SMILES[::2], warm=SMILES[1::2], chemical_lm=chemical_lm, llm=llm, repeats=1, batch_size=4
    )
    assert report["molecules"] == 4
    for key, stages in (
        ("molex", {"parse", "match", "texts", "lookup"}),
        ("rxnfp_bert", {"tokenise", "forward"}),
        ("smollm2", {"prompt and tokenise", "forward"}),
    ):
        entry = report[key]
        assert set(entry["shares"]) == stages
        assert sum(entry["shares"].values()) == pytest.approx(1.0)
        assert entry["mol_per_s"] == pytest.approx(4 / entry["seconds"])
    for key, name in (("speedup_vs_rxnfp_bert", "rxnfp_bert"), ("speedup_vs_smollm2", "smollm2")):
        assert report[key] == pytest.approx(report[name]["seconds"] / report["molex"]["seconds"])
        assert report["targets"][name] == (report[key] >= SPEED_TARGETS[name])
    molex = report["molex"]
    # known n-grams: every text found by a key (the canonical ones of the table's n-grams); a
    # first pass, with the keys of the other molecules only, has RDKit write some
    assert molex["memo_hit_rate"] == 1.0 and molex["first_pass_memo_hit_rate"] < 1.0
    assert molex["n_texts"] == len(build_ngram_table(SMILES, progress=False).texts)
    table = build_ngram_table(SMILES[::2], progress=False)
    counts = [len(table.occurrences[i]) for i in range(4)]
    assert molex["ngrams_per_molecule"] == pytest.approx(sum(counts) / 4)
    without_llm = speed_report(SMILES[:2], chemical_lm=chemical_lm, llm=None, repeats=1)
    assert "smollm2" not in without_llm and set(without_llm["targets"]) == {"rxnfp_bert"}
    with pytest.raises(ValueError, match="at least one molecule"):
        speed_report([], chemical_lm=chemical_lm, llm=None)


def test_group_matching_rate_counts_the_molecules():
    rates = group_matching_rate(SMILES, repeats=1)
    assert rates["molecules"] == len(SMILES)
    for step in ("parse", "match"):
        assert rates[f"{step}_mol_per_s"] == pytest.approx(len(SMILES) / rates[f"{step}_seconds"])
