"""Text and molecule generation metrics, including the check against MolT5-base's published
numbers."""

import math

import pytest

from molkit.eval.text import (
    caption_metrics,
    meteor_available,
    molecule_metrics,
    molecule_similarity,
    word_tokenize,
)


def test_word_tokenize_splits_words_and_punctuation():
    assert word_tokenize("The molecule is an (R)-acid.") == [
        "the",
        "molecule",
        "is",
        "an",
        "(",
        "r",
        ")",
        "-",
        "acid",
        ".",
    ]


def test_caption_metrics_identity_and_disjoint():
    refs = ["the molecule is a primary alcohol that is ethane substituted by a hydroxy group ."]
    same = caption_metrics(refs, refs)
    for key in ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL"):
        assert same[key] == pytest.approx(1.0)
    if meteor_available():
        assert same["meteor"] > 0.99
    else:
        assert math.isnan(same["meteor"])
    other = caption_metrics(["zinc ions bind"], refs)
    assert other["bleu2"] == 0.0 and other["rouge1"] == 0.0


def test_caption_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="predictions"):
        caption_metrics(["a"], ["a", "b"])


def test_molecule_metrics_known_values():
    refs = ["CCO", "c1ccccc1", "CC(=O)O"]
    preds = [
        "OCC",
        "c1ccccc1C",
        "not a smiles",
    ]  # same molecule written differently, toluene, invalid
    m = molecule_metrics(preds, refs)
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["validity"] == pytest.approx(2 / 3)
    assert m["levenshtein"] == pytest.approx((2 + 1 + 12) / 3)
    sims = molecule_similarity(preds, refs, "morgan")
    assert sims[0] == pytest.approx(1.0) and 0 < sims[1] < 1 and math.isnan(sims[2])
    assert m["morgan_fts"] == pytest.approx((1 + sims[1]) / 2)  # over the 2 valid predictions
    assert m["morgan_fts_all"] == pytest.approx((1 + sims[1]) / 3)  # the invalid one counts 0
    for kind in ("maccs", "rdk", "morgan"):
        assert m[f"{kind}_fts_all"] == pytest.approx(m[f"{kind}_fts"] * m["validity"])
    none_valid = molecule_metrics(["xyz"], ["CCO"])
    assert math.isnan(none_valid["morgan_fts"]) and none_valid["morgan_fts_all"] == 0.0
    assert molecule_metrics([""], ["CCO"])["validity"] == 0.0  # an empty string is not a molecule
    long = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]
    assert molecule_metrics(long, long)["bleu"] == pytest.approx(1.0)


@pytest.mark.usefixtures("mirror")
def test_rouge_matches_molt5_paper_on_molt5_base_outputs():
    """MolT5 paper, Table 1, MolT5-base mol2cap: ROUGE-1 0.634, ROUGE-2 0.485, ROUGE-L 0.578 (must
    match within 0.005). BLEU-2 0.540 / BLEU-4 0.457 / METEOR 0.569 used SciBERT's WordPiece
    tokenizer; with our word/punctuation tokenizer they come out within a few points (recorded in
    02_icma)."""
    from molkit.data import load_dataset

    df = load_dataset("molt5-base-mol2cap")
    assert len(df) == 3300
    m = caption_metrics(df["prediction"].tolist(), df["reference"].tolist())
    assert m["rouge1"] == pytest.approx(0.634, abs=0.005)
    assert m["rouge2"] == pytest.approx(0.485, abs=0.005)
    assert m["rougeL"] == pytest.approx(0.578, abs=0.005)
    assert m["bleu2"] == pytest.approx(0.540, abs=0.03)
    assert m["bleu4"] == pytest.approx(0.457, abs=0.03)
    if meteor_available():
        assert m["meteor"] == pytest.approx(0.569, abs=0.03)


@pytest.mark.usefixtures("mirror")
def test_molecule_metrics_on_molt5_base_outputs_against_molt5_paper():
    """Our cap2mol metrics on all 3,300 of MolT5-base's published ChEBI-20 test outputs
    (blender-nlp/MolT5 ``predictions/molt5-base-caption2smiles.txt``) against the MolT5 paper's
    Table 2 MolT5-base row: BLEU 0.769, exact 0.081, Levenshtein 24.458, MACCS FTS 0.721, RDK FTS
    0.588, Morgan FTS 0.529, validity 0.772 (the row as transcribed in phenixace/MolReGPT's README
    and in the "paper" column of blender-nlp/MolT5 issue #12).

    Only exact match agrees within 0.01. The other gaps are not in how we compute the metrics:
    MolT5's own ``evaluation/mol_translation_metrics.py`` and ``fingerprint_metrics.py`` run on
    this file give our values (identical in our environment; at their pinned RDKit 2022.03.2 /
    NLTK 3.7: BLEU 0.7833, Levenshtein 24.846, validity 0.7861, MACCS 0.7879, RDK 0.6617, Morgan
    0.6019, so RDKit's version moves these by at most 0.002). BLEU and Levenshtein do not involve
    RDKit at all, yet differ from the paper too, so the published outputs are not the strings the
    paper's table was computed on. The same holds for every published caption2smiles file of the
    repository (e.g. T5-base: Levenshtein 27.11 vs the paper's 24.95; MolT5-large: validity 0.958
    vs 0.905). An independent rerun of MolT5's scripts (issue #12) reports our numbers up to its
    use of test.txt's double-backslash references (with those we measure its BLEU 0.7794 and
    Levenshtein 25.188 exactly). So we assert our measured values, and the paper's within the
    measured gap."""
    from molkit.data import load_dataset

    df = load_dataset("molt5-base-cap2mol")
    assert len(df) == 3300
    m = molecule_metrics(df["prediction"].tolist(), df["reference"].tolist())
    from molkit.methods.icma import paper_table

    # MolT5 paper (Edwards et al., EMNLP 2022, arXiv 2204.11817), Table 2, row MolT5-base: the
    # transcription the ICMA notebook compares with
    paper = paper_table("cap2mol").loc["MolT5-base (MolT5 paper)"].dropna().to_dict()
    # measured here: ours - paper, all from the outputs file differing from the paper's outputs
    gap = {
        "bleu": 0.0143,  # 0.7833; string-only, no RDKit involved
        "exact_match": 0.0008,  # 0.0818 (270 / 3,300)
        "levenshtein": 0.388,  # 24.846; string-only, no RDKit involved
        "maccs_fts": 0.0671,  # 0.7881
        "rdk_fts": 0.0719,  # 0.6599 (0.6617 with RDKit 2022.03.2)
        "morgan_fts": 0.0730,  # 0.6020
        "validity": 0.0144,  # 0.7864 (0.7861 with RDKit 2022.03.2: one molecule)
    }
    for key, value in paper.items():
        margin = 0.05 if key == "levenshtein" else 0.005
        assert m[key] - value == pytest.approx(gap[key], abs=margin), key
    assert m["exact_match"] == pytest.approx(paper["exact_match"], abs=0.005)
    # the invalid-as-0 convention, beside MolT5's valid-only one
    assert m["maccs_fts_all"] == pytest.approx(0.6197, abs=0.005)
    assert m["rdk_fts_all"] == pytest.approx(0.5189, abs=0.005)
    assert m["morgan_fts_all"] == pytest.approx(0.4734, abs=0.005)
    for kind in ("maccs", "rdk", "morgan"):
        assert m[f"{kind}_fts_all"] == pytest.approx(m[f"{kind}_fts"] * m["validity"])
