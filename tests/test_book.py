"""The record as a website (`make book`, molkit.book): built from the committed record into a
temporary folder, every notebook of papermill_runs/default/ has a page with its figures, every
claim row of CLAIMS.md is on the claims page, the record is only read, and Chromium draws the
pages (screenshots in book/_build/screenshots/ for a person to look at)."""

import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from molkit.book import coalesce_streams, readme_section, stage, terminal_text

# sphinx-book-theme 1.4 uses an API that Sphinx 11 will remove: not this project's to fix
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:sphinx_book_theme")

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "papermill_runs" / "default"
NOTEBOOKS = sorted(RECORD.glob("*.ipynb"))
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _record_digest() -> dict[str, str]:
    """sha256 of every file of the record that the book reads."""
    paths = [*NOTEBOOKS, RECORD / "CLAIMS.md", RECORD / "run.json", *RECORD.glob("figures/*")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError:
        pytest.skip(
            "the book extra (Sphinx, MyST-NB, sphinx-book-theme) is not installed: "
            'pip install -e ".[book]" (or make book)'
        )
    from molkit.book import build

    before = _record_digest()
    html = build(RECORD, tmp_path_factory.mktemp("book"))
    assert _record_digest() == before, "building the book changed papermill_runs/default/"
    return html


class _Page(HTMLParser):
    """The <img> sources, the table rows (cell texts) and the text of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self.words: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(_squash("".join(self._cell)))
            self._cell = None

    def handle_data(self, data):
        self.words.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return _squash(" ".join(self.words))


# Sphinx's smart quotes print ' " -- ... typographically
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _squash(text: str) -> str:
    text = text.translate(_TYPOGRAPHY).replace("\u2014", "---").replace("\u2013", "--")
    return " ".join(text.replace("\u2026", "...").split())


def _page(html: Path, name: str) -> _Page:
    path = html / f"{name}.html"
    assert path.is_file(), f"the site has no page {path.name}"
    return _Page(path.read_text(encoding="utf-8"))


def claims_tables(claims_md: str) -> list[list[list[str]]]:
    """Every table of a CLAIMS.md as Markdown renders it (CommonMark with tables): a list of rows,
    each a list of cell texts, the header row first."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(claims_md)
    tables, row = [], None
    for token in tokens:
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


def _claim_rows(claims_md: str) -> list[tuple[str, str]]:
    """(claim text, verdict) of every claim row of CLAIMS.md, as Markdown renders it."""
    rows = []
    for table in claims_tables(claims_md):
        header = table[0]
        for cells in table[1:]:
            text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", cells[0])  # CommonMark's escapes
            rows.append((_squash(text), cells[header.index("verdict")].strip("*")))
    return rows


def test_record_is_there():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]
    assert (RECORD / "CLAIMS.md").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_page_with_its_figures(site, path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    page = _page(site, path.stem)
    title = next(
        m.group(1)
        for c in notebook["cells"]
        if c["cell_type"] == "markdown"
        for m in [re.search(r"^# (.+)$", "".join(c["source"]), re.M)]
        if m
    )
    assert _squash(title) in page.text, f"{path.stem}: the page lacks the title {title!r}"
    images = sum(
        any(t in output.get("data", {}) for t in IMAGE_TYPES)
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
    )
    shown = [src for src in page.images if src.startswith("_images/")]
    assert len(shown) >= images, f"{path.stem}: {images} image outputs, {len(shown)} <img> shown"
    if images:
        assert shown, f"{path.stem}: no figure on the page"
    missing = [src for src in shown if not (site / src).is_file()]
    assert not missing, f"{path.stem}: images not in the site: {missing}"


def test_every_claim_row_is_on_the_claims_page(site):
    rows = _claim_rows((RECORD / "CLAIMS.md").read_text(encoding="utf-8"))
    assert rows, "CLAIMS.md has no claim rows"
    page = _page(site, "claims")
    width = len(claims_tables((RECORD / "CLAIMS.md").read_text(encoding="utf-8"))[0][0])
    verdict = claims_tables((RECORD / "CLAIMS.md").read_text(encoding="utf-8"))[0][0].index(
        "verdict"
    )
    shown = {row[0]: row for row in page.rows if len(row) == width and row[0] != "claim"}
    assert all(len(row) == width for row in page.rows), "a claims row with the wrong cell count"
    missing = [claim for claim, _ in rows if claim not in shown]
    assert not missing, f"{len(missing)} claim rows not on the claims page, e.g. {missing[:2]}"
    wrong = [(c, shown[c][verdict]) for c, v in rows if shown[c][verdict] != v]
    assert not wrong, f"verdicts shown in the wrong place: {wrong[:2]}"
    assert len(page.rows) - sum(row[0] == "claim" for row in page.rows) == len(rows)


def test_index_figures_and_run_pages(site):
    index = _page(site, "index")
    for path in NOTEBOOKS:
        assert f'href="{path.stem}.html"' in (site / "index.html").read_text(encoding="utf-8")
    assert "nothing here was re-run" in index.text
    figures = _page(site, "figures")
    assert len(figures.images) == len(list((RECORD / "figures").glob("*.png")))
    run = _page(site, "run")
    assert "Profiles and what they cost" in run.text
    assert "Peak memory of the notebook kernel" in run.text
    for path in NOTEBOOKS:  # the run.json table and the README's peak-memory table
        assert sum(path.stem in " ".join(row) for row in run.rows) >= 2, path.stem


def test_stage_fails_without_notebooks(tmp_path):
    (tmp_path / "record").mkdir()
    with pytest.raises(FileNotFoundError, match="no executed notebooks"):
        stage(tmp_path / "record", tmp_path / "src")


def test_terminal_text_keeps_what_a_carriage_return_leaves():
    assert terminal_text("a\rb") == "b"
    assert terminal_text("abc\rX") == "Xbc"
    assert terminal_text("\r 0%|\r 50%|\r100%|\n") == "100%|\n"
    assert terminal_text("one\ntwo\r\n") == "one\ntwo\n"


def test_coalesce_streams_shows_a_progress_bar_once():
    bar = [f"\rloading: {i:3d}%" for i in (0, 50, 100)] + ["\n"]
    cell = {
        "cell_type": "code",
        "outputs": [
            *({"output_type": "stream", "name": "stderr", "text": t} for t in bar),
            {"output_type": "stream", "name": "stdout", "text": ["done\n"]},
            {"output_type": "stream", "name": "stderr", "text": "warning\n"},
        ],
    }
    notebook = {"cells": [cell]}
    outputs = coalesce_streams(notebook)["cells"][0]["outputs"]
    assert [(o["name"], o["text"]) for o in outputs] == [
        ("stderr", "loading: 100%\n"),
        ("stdout", "done\n"),
        ("stderr", "warning\n"),
    ]
    assert len(notebook["cells"][0]["outputs"]) == 6, "the input notebook is left as it was"


def test_readme_section_takes_its_subsections_and_moves_headings():
    text = "# T\n\n## A\n\nx\n\n### B\n\n```\n# not a heading\n```\n\n## C\n\ny\n"
    assert readme_section(text, "A", level=2) == (
        "## A\n\nx\n\n### B\n\n```\n# not a heading\n```\n"
    )
    assert readme_section(text, "B", level=2).startswith("## B\n")
    with pytest.raises(KeyError):
        readme_section(text, "Z")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")


def _screenshot(chromium: str, page: Path, png: Path, profile: Path) -> None:
    profile.mkdir(parents=True)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"Chromium wrote no screenshot ({done.returncode}): {done.stderr[-2000:]}"


@pytest.mark.parametrize("name", ["claims", "01_molex"])
def test_chromium_draws_the_page(site, tmp_path, name):
    from PIL import Image, ImageStat

    chromium = _chromium()
    png = site / "screenshots" / f"{name}.png"
    png.parent.mkdir(exist_ok=True)
    _screenshot(chromium, site / f"{name}.html", png, tmp_path / "chromium-profile")
    with Image.open(png) as image:
        assert image.size[0] >= 1000 and image.size[1] >= 1000, image.size
        grey = image.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        colours = len(grey.getcolors(256) or [])
    assert spread > 10 and colours > 16, f"{png}: a blank page (stddev {spread:.1f})"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(png, SCREENSHOTS / png.name)
    print(f"screenshot: {SCREENSHOTS / png.name}")
