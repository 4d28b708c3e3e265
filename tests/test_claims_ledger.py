"""The claims ledger: `CLAIMS.md` renders as Markdown tables whose every row has the header's
columns (a claim text with a '|' or a line break cannot shift them), for a record written here and
for the committed record; claims carry their kind, training seeds and the paper's size against our
interval; a comparison is judged only through its gates."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molkit.methods.experiment import (
    CLAIM_COLUMNS,
    HOLDS,
    NOT_JUDGED,
    UNDECIDED,
    Claim,
    gated,
    paired_claim,
)
from molkit.run import write_claims_md

ROOT = Path(__file__).resolve().parents[1]


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of ``text`` as CommonMark with tables renders it: rows of cell texts, the
    header first."""
    from markdown_it import MarkdownIt

    tables, row = [], None
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            tables[-1].append(row)
            row = None
    return tables


def claim(text: str, verdict: str = HOLDS, **fields) -> Claim:
    values = dict(paper="P", claim=text, paper_figure="x", metric="m", ours=0.1, low=0.05,
                  high=0.2, verdict=verdict, n=10)  # fmt: skip
    return Claim(**{**values, **fields})


def test_claims_md_renders_every_row_in_the_headers_columns(tmp_path):
    rows = [
        claim("token |importance| reading", detail="a | b\nc"),
        claim("plain", kind="gate", seeds=3),
        claim("sized", paper_value=0.5),
    ]
    frame = pd.DataFrame([c.as_row() for c in rows])
    frame.insert(0, "notebook", "01_x")
    (tmp_path / "claims").mkdir()
    frame.to_csv(tmp_path / "claims" / "01_x.csv", index=False)
    text = write_claims_md(tmp_path, "default").read_text()
    (table,) = markdown_tables(text)
    header, body = table[0], table[1:]
    assert len(body) == 3 and all(len(r) == len(header) for r in body)
    assert (
        body[0][0] == "token |importance| reading" and body[0][header.index("detail")] == "a | b c"
    )
    assert body[0][header.index("verdict")] == "**holds**"
    assert body[1][header.index("seeds")] == "3 / 1" and body[1][header.index("kind")] == "gate"
    assert body[2][header.index("paper vs ours")] == "+0.5 above"
    assert "not judged" in text and "Gates" in text  # the header explains both


def test_each_table_says_which_run_made_it_and_whether_its_notebook_changed_since(tmp_path):
    """Under each paper's heading, the run that made its rows (commit, date, precision, time),
    and a stale warning once the notebook has been committed again after that run."""
    import json
    import subprocess

    root = tmp_path / "repo"
    record = root / "papermill_runs" / "default"
    (record / "claims").mkdir(parents=True)
    (root / "notebooks").mkdir()

    def git(*args: str) -> str:
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}  # fmt: skip
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              env=env, check=True)  # fmt: skip
        return done.stdout.strip()

    git("init", "-q")
    notebook = root / "notebooks" / "01_x.ipynb"
    notebook.write_text("{}")
    git("add", ".")
    git("commit", "-qm", "first")
    recorded = git("rev-parse", "HEAD")
    frame = pd.DataFrame([claim("plain").as_row()])
    frame.insert(0, "notebook", "01_x")
    frame.to_csv(record / "claims" / "01_x.csv", index=False)
    run = {"git_commit": recorded, "finished": "2026-12-07T10:00:00+00:00", "precision": "bf16",
           "wall_time_s": 600.0}  # fmt: skip
    (record / "run.json").write_text(json.dumps({"notebooks": {"01_x": run}}))
    text = write_claims_md(record, "default").read_text()
    assert f"Recorded by `01_x`: commit `{recorded[:10]}`, 2026-12-07, bf16, 10.0 min." in text
    assert "Stale" not in text
    notebook.write_text('{"cells": []}')
    git("commit", "-qam", "second")
    text = write_claims_md(record, "default").read_text()
    newest = git("rev-parse", "--short", "HEAD")
    assert f"**Stale:** `notebooks/01_x.ipynb` has changed since (commit `{newest}`)" in text
    assert "make run NOTEBOOKS=01" in text
    assert len(markdown_tables(text)) == 1


def test_the_committed_ledger_renders():
    path = ROOT / "papermill_runs" / "default" / "CLAIMS.md"
    tables = markdown_tables(path.read_text(encoding="utf-8"))
    assert tables, "the committed CLAIMS.md holds no table"
    for table in tables:
        assert all(len(row) == len(table[0]) for row in table), table[0]


def test_paper_size_position_against_our_interval():
    assert claim("a", paper_value=0.07, low=-0.009, high=0.015).paper_position == "above"
    assert claim("a", paper_value=0.0, low=-0.009, high=0.015).paper_position == "inside"
    assert claim("a", paper_value=-1.0).paper_position == "below"
    assert claim("a").paper_position == "" and claim("a").paper_vs_ours == ""
    assert list(claim("a").as_row()) == list(CLAIM_COLUMNS)
    with pytest.raises(ValueError, match="kind"):
        claim("a", kind="other")


def test_gated_comparisons_carry_their_gates_and_withhold_failed_ones():
    passed, failed = claim("A beats prior", kind="gate"), claim("B beats prior", UNDECIDED)
    judged = gated(claim("A beats B"), [passed])
    assert judged.kind == "comparison" and judged.gates == ("A beats prior",)
    assert judged.verdict == HOLDS and "every arm passes its gate" in judged.detail
    withheld = gated(claim("A beats B"), [passed, failed])
    assert withheld.verdict == NOT_JUDGED and math.isnan(withheld.ours)
    assert "B beats prior" in withheld.detail and withheld.gates == (
        "A beats prior",
        "B beats prior",
    )


def test_paired_claim_counts_the_training_seeds():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    runs = np.stack([y + rng.normal(scale=0.3, size=50) for _ in range(3)])
    mean = np.full(50, y.mean())
    rmse = lambda t, p: float(np.sqrt(np.mean((t - p) ** 2)))  # noqa: E731
    row = paired_claim("P", "beats the mean", "-", y, runs, mean, rmse, "RMSE",
                       higher_is_better=False, n_boot=200, kind="gate")  # fmt: skip
    assert row.seeds == 3 and row.seeds_baseline == 1 and row.seeds_text == "3 / 1"
    assert row.verdict == HOLDS and row.kind == "gate"
