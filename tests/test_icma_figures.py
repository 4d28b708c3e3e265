"""The figures of ``02_icma.ipynb`` (molkit.methods.icma.figures) on small synthetic inputs."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.image import AxesImage
from matplotlib.text import Text

from molkit.methods.icma import figures


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


def test_all_is_exported():
    for name in (
        "pipeline_diagram",
        "training_curves",
        "masking_curve",
        "retrieved_neighbours",
        "prompt_lengths",
        "metrics_vs_baselines",
        "retrieval_quality",
        "draw_translations",
        "translation_examples",
    ):
        assert name in figures.__all__
        assert callable(getattr(figures, name))


def test_pipeline_diagram_steps_and_highlight():
    fig = figures.pipeline_diagram()
    (ax,) = fig.axes
    text = " ".join(t.replace("\n", " ") for t in _texts(fig))
    for fragment in (
        "query: molecule (mol2cap) or caption (cap2mol)",
        "BM25 over captions (Okapi, as the official code)",
        "sequence reversal (most similar last)",
        "the share kept whole is printed",
        "LoRA, answer-only loss, stopped on a validation part",
        "stop at the end of the line",
    ):
        assert fragment in text
    assert ax.get_title().startswith("ICMA:")
    boxes = [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]
    assert len(boxes) == 7  # six steps, the retrieval one with two branches
    filled = [b for b in boxes if to_hex(b.get_facecolor()) != "#ffffff"]
    assert len(filled) == 2  # re-rank and tune
    labels = [t.get_text().replace("\n", " ") for t in ax.texts]
    filled_labels = {labels[boxes.index(b)] for b in filled}
    assert any(lbl.startswith("re-rank") for lbl in filled_labels)
    assert any(lbl.startswith("tune") for lbl in filled_labels)


def test_retrieved_neighbours_grid():
    long_caption = "The molecule is a phenol " * 20
    neighbours = {
        "morgan": [
            ("c1ccccc1O", long_caption, 0.81234),
            ("CC(=O)O", "an acid", 0.5),
            ("CCO", "an alcohol", 0.25),
        ],
        "gin": [("C1CC", "broken", 0.9), ("CCO", "an alcohol", 0.1)],
        "random": [("CC(=O)O", "an acid", 0.0)],
    }
    fig = figures.retrieved_neighbours(
        "CCO", "ethanol is a primary alcohol", neighbours, truncate=40
    )
    assert len(fig.axes) == 3 * 4  # rows = retrievers, columns = 1 + max k
    width, height = fig.get_size_inches()
    assert width / height == pytest.approx((4 * 2.3) / (3 * 3.2))
    grid = np.array(fig.axes).reshape(3, 4)
    # the query: drawn in the first cell, its caption below
    assert grid[0, 0].get_title() == "query"
    assert any(isinstance(a, AxesImage) for a in grid[0, 0].get_children())
    assert any("ethanol" in t.get_text() for t in grid[0, 0].texts)
    # the first column of the other rows is empty
    for row in (1, 2):
        assert not grid[row, 0].texts and not grid[row, 0].images
    # scores with three decimals, in ranked order
    assert [grid[0, j].get_title() for j in (1, 2, 3)] == ["#1: 0.812", "#2: 0.500", "#3: 0.250"]
    # captions truncated to `truncate` characters (the wrap adds only newlines)
    caption = [t.get_text() for t in grid[0, 1].texts if "phenol" in t.get_text()][0]
    assert len(caption.replace("\n", " ")) <= 40 and caption.endswith("…")
    # an invalid SMILES is text, not a drawing
    assert not grid[1, 1].images
    assert any("invalid SMILES" in t.get_text() for t in grid[1, 1].texts)
    assert grid[1, 2].images
    # cells beyond a retriever's k are empty
    assert not grid[2, 2].images and not grid[2, 2].get_title()
    # each row names its retriever
    for row, name in enumerate(neighbours):
        assert any(t.get_text() == name for t in grid[row, 1].texts)


def test_retrieved_neighbours_needs_a_retriever():
    with pytest.raises(ValueError):
        figures.retrieved_neighbours("CCO", "ethanol", {})


def test_prompt_lengths_cutoff_and_shares():
    lengths = {
        "mol2cap ICMA train": np.array([100, 200, 300]),
        "cap2mol ICMA train": np.array([50, 60]),
        "mol2cap ICMA test": np.array([120, 700, 180]),
        "cap2mol ICMA test": np.array([70]),
    }
    fig = figures.prompt_lengths(lengths, cutoff=256)
    assert len(fig.axes) == 2
    mol2cap, cap2mol = fig.axes
    # 4 of 6 mol2cap prompts are within 256 tokens
    assert mol2cap.get_title() == "mol2cap: 67% within the cut-off"
    assert cap2mol.get_title() == "cap2mol: 100% within the cut-off"
    for ax in fig.axes:
        assert ax.get_xlabel() == "tokens (prompt + answer)"
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert set(dashed[0].get_xdata()) == {256}
        assert to_hex(dashed[0].get_color()) == "#ff0000"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "cut-off 256" in legend
    legend = [t.get_text() for t in mol2cap.get_legend().get_texts()]
    assert "mol2cap ICMA train (n=3, max=300)" in legend
    assert "mol2cap ICMA test (n=3, max=700)" in legend
    assert len(mol2cap.patches) == 2  # one step histogram per set


def test_prompt_lengths_share_is_never_rounded_to_all():
    fig = figures.prompt_lengths({"mol2cap ICMA train": np.r_[np.ones(999), 1000]}, cutoff=10)
    assert fig.axes[0].get_title() == "mol2cap: 99% within the cut-off"


def _tables(cap2mol_metric: str = "morgan_fts_all"):
    mol2cap = pd.DataFrame(
        {"bleu2": [0.40, 0.35, 0.30, 0.20], "rougeL": [0.5, 0.4, 0.3, 0.2]},
        index=["ICMA", "ICMA (no reversal)", "direct fine-tuning", "retrieval only"],
    )
    cap2mol = pd.DataFrame(
        {cap2mol_metric: [0.5, 0.45, 0.3], "validity": [0.9, 0.8, 0.7]},
        index=["ICMA", "ICMA (random contexts)", "direct fine-tuning"],
    )
    return {"mol2cap": mol2cap, "cap2mol": cap2mol}


def _bar_colours(ax) -> dict[str, str]:
    names = [t.get_text() for t in ax.get_yticklabels()]
    return {n: to_hex(p.get_facecolor()) for n, p in zip(names, ax.patches, strict=True)}


def _published():
    from molkit.methods.icma import paper_table

    return {d: paper_table(d) for d in ("mol2cap", "cap2mol")}


def _paper_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label().startswith("paper: ")]


def test_metrics_vs_baselines_plots_the_claims_metric_with_values_and_seeds():
    """The metric the claims judge (ROUGE-L, Morgan Tanimoto with invalid = 0), every bar
    labelled with its value (an arm at 0 is still seen), an arm's training seeds named."""
    tables = _tables("morgan_fts_all")
    tables["mol2cap"].loc["direct fine-tuning", "rougeL"] = 0.0
    fig = figures.metrics_vs_baselines(tables, 50, _published(), seeds={"ICMA": 3})
    assert len(fig.axes) == 2
    mol2cap, cap2mol = fig.axes
    assert mol2cap.get_xlabel() == "ROUGE-L F1 (mean per caption)"
    assert cap2mol.get_xlabel() == "Morgan Tanimoto (mean per molecule, invalid = 0)"
    assert mol2cap.get_title() == "mol2cap: the same 50 test molecules"
    # the published ROUGE-L rows except MolT5-base: ICMA, direct fine-tuning, MolT5-large
    legend = [t.get_text() for t in mol2cap.get_legend().get_texts()]
    assert len(legend) == 3 and all(t.startswith("paper: ") for t in legend)
    assert not _paper_lines(cap2mol) and cap2mol.get_legend() is None  # no such column
    values = [t.get_text() for t in mol2cap.texts if t.get_text()[:2] == "0."]
    assert sorted(values) == ["0.000", "0.200", "0.400", "0.500"]
    colours = _bar_colours(mol2cap)
    assert colours["ICMA (mean of 3 seeds)"] == figures.ICMA_COLOUR
    assert colours["ICMA (no reversal)"] == figures.ABLATION_COLOUR
    assert colours["direct fine-tuning"] == colours["retrieval only"]
    assert colours["direct fine-tuning"] not in (figures.ICMA_COLOUR, figures.ABLATION_COLOUR)
    colours = _bar_colours(cap2mol)
    assert colours["ICMA (mean of 3 seeds)"] == figures.ICMA_COLOUR
    assert colours["ICMA (random contexts)"] == figures.ABLATION_COLOUR


def test_metrics_vs_baselines_leaves_out_missing_values_and_needs_the_metric():
    tables = _tables()
    tables["mol2cap"].loc["retrieval only", "rougeL"] = np.nan  # a missing value is left out
    fig = figures.metrics_vs_baselines(tables, 7)
    mol2cap, _ = fig.axes
    assert len(mol2cap.patches) == 3
    assert not [ln for ax in fig.axes for ln in _paper_lines(ax)]
    with pytest.raises(KeyError, match="morgan_fts_all"):
        figures.metrics_vs_baselines(_tables("morgan_fts"), n_test=7)


def test_retrieval_quality_highlights_the_chosen_retriever():
    table = pd.DataFrame(
        {
            "bleu2": [0.30, 0.28, 0.25, 0.05],
            "rougeL": [0.35, 0.40, 0.30, 0.10],
            "chosen": [False, True, False, False],
        },
        index=["morgan", "rdkit", "gin", "random"],
    )
    fig = figures.retrieval_quality(table, n_pairs=128)
    (ax,) = fig.axes
    assert ax.get_title() == "mol2cap retrieval only on 128 validation queries of the pool"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["morgan", "rdkit", "gin", "random"]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.35, 0.40, 0.30, 0.10])
    colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours[1] != colours[0]
    assert colours[0] == colours[2] == colours[3]
    annotated = [t for t in ax.texts if "chosen" in t.get_text()]
    assert len(annotated) == 1
    assert annotated[0].xy[0] == pytest.approx(
        ax.patches[1].get_x() + ax.patches[1].get_width() / 2
    )
    assert "rougeL" in ax.get_ylabel()
    # another metric; no `chosen` column: nothing highlighted
    fig = figures.retrieval_quality(table.drop(columns="chosen"), n_pairs=5, metric="bleu2")
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.30, 0.28, 0.25, 0.05])
    assert len({to_hex(p.get_facecolor()) for p in ax.patches}) == 1
    assert not [t for t in ax.texts if "chosen" in t.get_text()]
    with pytest.raises(KeyError):
        figures.retrieval_quality(table, n_pairs=5, metric="meteor")


def test_draw_translations_marks_invalid():
    fig = figures.draw_translations(["CCO", "CC(=O)O"], {"ICMA": ["CCO", "C1CC\x00\x05"]})
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[:2]] == ["ground truth", "ICMA"]
    assert fig.axes[0].images and fig.axes[1].images and not fig.axes[3].images
    # an invalid SMILES is printed without its control characters (no missing-glyph warnings)
    assert [t.get_text() for t in fig.axes[3].texts] == ["invalid SMILES\nC1CC"]
    # a long one wraps inside its panel (three lines of 20 at most), not across the next column
    long = "CC(C)(C)OC(=O)N[C@@H](CC1=CC=CC=C1)C(=O)O" * 2 + "(("
    fig = figures.draw_translations(["CCO"], {"ICMA": [long]})
    lines = fig.axes[1].texts[0].get_text().split("\n")
    assert lines[0] == "invalid SMILES" and len(lines) == 4 and max(map(len, lines)) <= 20


class _Report:
    """Stands in for a TrainReport: a validation curve and the kept step."""

    def __init__(self, losses, best_step):
        self.curve = [{"step": float(i), "valid_loss": v} for i, v in enumerate(losses)]
        self.best_step = best_step

    def curve_frame(self):
        return pd.DataFrame(self.curve)


def test_training_curves_one_panel_per_direction_and_the_kept_step():
    reports = {
        "mol2cap": {"ICMA": [_Report([3.0, 2.0, 2.5], 1), _Report([3.0, 2.2, 2.1], 2)],
                    "in-context prompting (no tuning)": [None]},
        "cap2mol": {"ICMA": [_Report([4.0, 3.0], 1)], "direct fine-tuning": [_Report([4, 5], 0)]},
    }  # fmt: skip
    fig = figures.training_curves(reports)
    mol2cap, cap2mol = fig.axes
    assert mol2cap.get_title().startswith("mol2cap") and cap2mol.get_title().startswith("cap2mol")
    # one line and one kept-step dot per trained run; the untuned arm draws nothing
    dots = [ln for ln in mol2cap.get_lines() if ln.get_marker() == "o"]
    assert [(d.get_xdata()[0], d.get_ydata()[0]) for d in dots] == [(1.0, 2.0), (2.0, 2.1)]
    assert len(mol2cap.get_lines()) == 4
    assert [t.get_text() for t in cap2mol.get_legend().get_texts()] == [
        "ICMA", "direct fine-tuning"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="trained run"):
        figures.training_curves({"mol2cap": {"x": [None]}})


def test_masking_curve_marks_the_kept_epoch():
    from molkit.models.fit import FitReport

    report = FitReport(
        curve=[{"step": 0, "epoch": 0.0, "train_loss": np.nan, "valid_loss": 4.0},
               {"step": 5, "epoch": 1.0, "train_loss": 3.0, "valid_loss": 2.5},
               {"step": 10, "epoch": 2.0, "train_loss": 2.0, "valid_loss": 2.7}],
        best_step=5,
    )  # fmt: skip
    (ax,) = figures.masking_curve(report).axes
    kept = [ln for ln in ax.get_lines() if ln.get_label() == "kept"]
    assert len(kept) == 1 and list(kept[0].get_xdata()) == [1.0]
    assert list(kept[0].get_ydata()) == [2.5]


def test_translation_examples_draw_the_first_molecules_of_each_arm():
    result = type("DirectionEvaluation", (), {})()
    result.predictions = pd.DataFrame(
        {"truth": ["CCO", "CCN", "CCC"], "ICMA": ["CCO", "C1CC", "CCC"],
         "direct fine-tuning": ["C", "C", "C"], "retrieval only (bm25)": ["O", "O", "O"]}
    )  # fmt: skip
    fig = figures.translation_examples(result, n=2)
    assert len(fig.axes) == 2 * 3  # truth, ICMA, direct: the baselines are not drawn
    assert [ax.get_title() for ax in fig.axes[:3]] == ["ground truth", "ICMA", "direct fine-tuning"]
    assert any("invalid SMILES" in t.get_text() for t in fig.axes[4].texts)
