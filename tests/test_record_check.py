"""The record's cleanliness check (`molkit.record_check`): it names stray stderr, warnings, object
reprs, staging paths, redrawn progress bars and errors, and lets a cell tagged show-stderr keep
its stderr."""

import json
from pathlib import Path

import pytest

from molkit.record_check import SHOW_STDERR_TAG, record_problems


def _notebook(path, cells):
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def _code(*outputs, tags=()):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": list(outputs),
            "source": "", "execution_count": 1}  # fmt: skip


def _stream(name, text):
    return {"output_type": "stream", "name": name, "text": text}


def _plain(text):
    return {"output_type": "execute_result", "data": {"text/plain": text}, "metadata": {}}


def test_a_clean_record_has_no_problems(tmp_path):
    path = _notebook(tmp_path / "01_x.ipynb", [
        _code(_stream("stdout", "fine-tuning: 100%|##########| 8/8 [00:03<00:00]\n")),
        _code(_plain("   a  b\n0  1  2")),
        {"cell_type": "markdown", "metadata": {}, "source": "PosixPath( in prose is fine"},
    ])  # fmt: skip
    assert record_problems(path) == []


def test_every_kind_of_noise_is_named_with_its_cell(tmp_path):
    path = _notebook(tmp_path / "02_y.ipynb", [
        _code(_stream("stderr", "[12:00] SMILES Parse Error: syntax error\n")),
        _code(_stream("stdout", "/tmp/x.py:5: UserWarning: 3 rows invalid\n")),
        _code(_plain("PosixPath('/work/main/papermill_runs/default/.staging-02_y-12/f.png')")),
        _code(_plain("<pandas.io.formats.style.Styler at 0x7f12ab>")),
        _code(_stream("stdout", "\rgenerating:  50%|#####     | 5/10")),
        _code({"output_type": "error", "ename": "ValueError", "evalue": "", "traceback": []}),
        _code(_stream("stderr", "an error message shown on purpose\n"), tags=[SHOW_STDERR_TAG]),
    ])  # fmt: skip
    problems = record_problems(path)
    assert problems[0].startswith("02_y code cell 1: stderr output")
    kinds = " ".join(problems)
    for what in ("a warning", "a path repr", "a staging folder", "an object repr",
                 "a redrawn progress bar", "an error (ValueError)"):  # fmt: skip
        assert what in kinds, what
    assert not any("cell 7" in p for p in problems)


RECORD = Path(__file__).resolve().parents[1] / "papermill_runs" / "default"


@pytest.mark.parametrize("path", sorted(RECORD.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_the_published_records_are_clean(path):
    """Every executed notebook of the published record reads clean (no stray stderr, warnings,
    reprs or staging paths). A record whose notebook has changed since it was made is skipped
    with the command that regenerates it: CLAIMS.md marks its rows stale in the same way."""
    from molkit.run import stale_since

    newer = stale_since(RECORD, path.stem)
    if newer:
        pytest.skip(
            f"{path.stem}'s record predates notebook commit {newer}: "
            f"make run NOTEBOOKS={path.stem[:2]}"
        )
    assert record_problems(path) == []
