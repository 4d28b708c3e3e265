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
        "retrieved_neighbours",
        "prompt_lengths",
        "metrics_vs_baselines",
        "retrieval_quality",
        "draw_translations",
    ):
        assert name in figures.__all__
        assert callable(getattr(figures, name))


def test_pipeline_diagram_steps_and_highlight():
    fig = figures.pipeline_diagram()
    (ax,) = fig.axes
    text = " ".join(t.replace("\n", " ") for t in _texts(fig))
    for fragment in (
        "query: molecule (mol2cap) or caption (cap2mol)",
        "BM25 over captions",
        "sequence reversal (most similar last)",
        "both always fit the cut-off",
        "answer-only loss (trained weights cached)",
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


def test_metrics_vs_baselines_morgan_fts_all_has_no_published_lines():
    fig = figures.metrics_vs_baselines(_tables("morgan_fts_all"), n_test=50)
    assert len(fig.axes) == 2
    mol2cap, cap2mol = fig.axes
    assert mol2cap.get_xlabel() == "bleu2 (50 test molecules)"
    assert cap2mol.get_xlabel() == "morgan_fts_all (50 test molecules)"
    # the published BLEU-2 rows except MolT5-base: ICMA, direct fine-tuning, MolT5-large
    assert len([ln for ln in mol2cap.get_lines() if ln.get_linestyle() == "--"]) == 3
    assert not [ln for ln in cap2mol.get_lines() if ln.get_linestyle() == "--"]
    colours = _bar_colours(mol2cap)
    assert colours["ICMA"] == figures.ICMA_COLOUR
    assert colours["ICMA (no reversal)"] == figures.ABLATION_COLOUR
    assert colours["direct fine-tuning"] == colours["retrieval only"]
    assert colours["direct fine-tuning"] not in (figures.ICMA_COLOUR, figures.ABLATION_COLOUR)
    colours = _bar_colours(cap2mol)
    assert colours["ICMA"] == figures.ICMA_COLOUR
    assert colours["ICMA (random contexts)"] == figures.ABLATION_COLOUR


def test_metrics_vs_baselines_falls_back_to_morgan_fts():
    tables = _tables("morgan_fts")
    tables["mol2cap"].loc["retrieval only", "bleu2"] = np.nan  # a missing value is left out
    fig = figures.metrics_vs_baselines(tables, n_test=7)
    mol2cap, cap2mol = fig.axes
    assert cap2mol.get_xlabel() == "morgan_fts (7 test molecules)"
    assert len([ln for ln in cap2mol.get_lines() if ln.get_linestyle() == "--"]) == 3
    assert len(mol2cap.patches) == 3
    with pytest.raises(KeyError):
        figures.metrics_vs_baselines(_tables("exact_match"), n_test=7)


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
    fig = figures.draw_translations(["CCO", "CC(=O)O"], {"ICMA": ["CCO", "C1CC"]})
    assert len(fig.axes) == 4
    assert any("invalid SMILES" in t.get_text() for t in fig.axes[3].texts)
