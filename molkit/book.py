"""The published record as a website (``make book``, ``python -m molkit.book``).

``stage`` copies a record (``papermill_runs/<profile>/``: the executed notebooks, ``CLAIMS.md``,
``figures/``, ``run.json``) and the README's run sections into a Sphinx source folder; ``build``
renders it with MyST-NB from the notebooks' stored outputs (``book/conf.py``: nothing is
executed) into ``<out>/html``. The record itself is only read. Needs the ``book`` extra
(``pip install -e ".[book]"``); imports nothing from the rest of molkit.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "book"
INSTALL_HINT = 'pip install -e ".[book]" (or make book)'

# the README sections the run page shows: what each profile costs in time and memory
RUN_SECTIONS = ("Profiles and what they cost",)


def terminal_text(text: str) -> str:
    """What a terminal, or Jupyter, shows for ``text``: a carriage return goes back to the start of
    its line and the next characters overwrite it (a progress bar ends as its last state)."""
    lines = []
    for line in text.split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part) :]
        lines.append(shown)
    return "\n".join(lines)


def coalesce_streams(notebook: dict) -> dict:
    """Join each run of consecutive stream outputs of one name (stdout or stderr) in a code cell
    into one output shown as a terminal would (``terminal_text``), as Jupyter draws them. papermill
    stores every refresh of a progress bar as its own output. Returns a new notebook dict."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]:
        merged: list[dict] = []
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                merged.append(output)
                continue
            text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
            last = merged[-1] if merged else None
            if last and last.get("output_type") == "stream" and last["name"] == output["name"]:
                last["text"] += text
            else:
                merged.append({**output, "text": text})
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = terminal_text(output["text"])
        if "outputs" in cell:
            cell["outputs"] = merged
    return notebook


def _sections(markdown: str) -> list[tuple[int, str, list[str]]]:
    """(level, title, lines including the heading) of each heading's own part, code blocks kept."""
    parts: list[tuple[int, str, list[str]]] = [(0, "", [])]
    fenced = False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(#{1,6}) (.*)$", line)
        if heading:
            parts.append((len(heading.group(1)), heading.group(2).strip(), []))
        parts[-1][2].append(line)
    return parts


def readme_section(markdown: str, title: str, level: int = 2) -> str:
    """The section of ``markdown`` headed ``title`` with its subsections, its headings moved so
    that it starts at ``level``; raises KeyError when there is no such heading."""
    parts = _sections(markdown)
    starts = [i for i, (_, t, _) in enumerate(parts) if t == title]
    if not starts:
        raise KeyError(f"no heading {title!r} in the README")
    top = parts[starts[0]][0]
    lines: list[str] = []
    for depth, _, body in parts[starts[0] :]:
        if lines and depth <= top:
            break
        lines += ["#" * (depth - top + level) + body[0][depth:], *body[1:]]
    return _unlink_local("\n".join(lines).strip() + "\n")


def readme_intro(markdown: str) -> str:
    """The README's text between its title and its first ``##`` heading."""
    parts = _sections(markdown)
    body = [line for depth, _, lines in parts if depth == 1 for line in lines[1:]]
    return _unlink_local("\n".join(body).strip() + "\n")


def _unlink_local(markdown: str) -> str:
    """Links to files of the repository (not part of the site) become their plain text."""
    return re.sub(r"\[([^\]]+)\]\((?!https?:|mailto:|#)[^)]*\)", r"\1", markdown)


def run_table(run: dict) -> str:
    """A markdown table of ``run.json``: one row per notebook (status, when, time, memory)."""
    lines = [
        "| notebook | status | finished | wall time | peak memory | precision | torch threads "
        "| commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in sorted(run.get("notebooks", {}).items()):
        wall = entry.get("wall_time_s")
        peak = entry.get("peak_memory_mb")
        commit = str(entry.get("git_commit", ""))
        lines.append(
            f"| `{name}` | {entry.get('status', '')} | {entry.get('finished', '')} | "
            f"{'' if wall is None else f'{wall / 60:.1f} min'} | "
            f"{'' if peak is None else f'{peak:,.0f} MB'} | {entry.get('precision', '')} | "
            f"{entry.get('torch_threads', '')} | `{commit[:10]}{commit[40:]}` |"
        )
    return "\n".join(lines) + "\n"


def _title(notebook: dict, fallback: str) -> str:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            heading = re.search(r"^# (.+)$", "".join(cell["source"]), re.M)
            if heading:
                return heading.group(1).strip()
    return fallback


def stage(record: Path, src: Path, readme: Path | None = None) -> list[str]:
    """Write the site's sources for ``record`` into ``src`` (emptied first); returns the notebook
    names in the order of their numbers. Raises FileNotFoundError where there is no notebook."""
    record, src = Path(record), Path(src)
    notebooks = sorted(record.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"{record} holds no executed notebooks (*.ipynb)")
    if src.exists():
        shutil.rmtree(src)
    (src / "figures").mkdir(parents=True)

    titles = {}
    for path in notebooks:
        notebook = coalesce_streams(json.loads(path.read_text(encoding="utf-8")))
        titles[path.stem] = _title(notebook, path.stem)
        (src / path.name).write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")

    claims = record / "CLAIMS.md"
    claims_text = claims.read_text(encoding="utf-8") if claims.exists() else "# Claims\n\nNone.\n"
    (src / "claims.md").write_text(claims_text, encoding="utf-8")

    figures = sorted((record / "figures").glob("*.png"))
    gallery = ["# Figures", "", f"The {len(figures)} figures the notebooks saved, by notebook.", ""]
    for stem in titles:
        own = [f for f in figures if f.name.startswith(f"{stem}__")]
        if own:
            gallery += [f"## {titles[stem]}", "", f"{{doc}}`The notebook <{stem}>`", ""]
        for figure in own:
            shutil.copy2(figure, src / "figures" / figure.name)
            caption = figure.stem.split("__", 1)[1].replace("_", " ")
            gallery += [f"```{{figure}} figures/{figure.name}", "", caption, "```", ""]
    (src / "figures.md").write_text("\n".join(gallery), encoding="utf-8")

    readme_text = Path(readme).read_text(encoding="utf-8") if readme else ""
    run_path = record / "run.json"
    run = json.loads(run_path.read_text(encoding="utf-8")) if run_path.exists() else {}
    page = [
        "# The run: time and memory",
        "",
        f"`run.json` of the record (profile `{run.get('profile', record.name)}`, "
        f"updated {run.get('updated', 'unknown')}), one row per notebook:",
        "",
        run_table(run),
    ]
    page += [readme_section(readme_text, title) for title in RUN_SECTIONS if readme_text]
    (src / "run.md").write_text("\n".join(page), encoding="utf-8")

    index = [
        "# molkit: the published record",
        "",
        f"The executed notebooks of the `{run.get('profile', record.name)}` run, rendered from "
        "their stored outputs (nothing here was re-run), with the claims they tested, the "
        "figures they saved and what the run cost.",
        "",
        readme_intro(readme_text) if readme_text else "",
        "```{toctree}",
        ":caption: Notebooks",
        ":maxdepth: 1",
        "",
        *titles,
        "```",
        "",
        "```{toctree}",
        ":caption: The record",
        ":maxdepth: 1",
        "",
        "claims",
        "figures",
        "run",
        "```",
        "",
    ]
    (src / "index.md").write_text("\n".join(index), encoding="utf-8")
    return list(titles)


def build(
    record: Path, out: Path, readme: Path | None = ROOT / "README.md", conf: Path = CONF_DIR
) -> Path:
    """Stage ``record`` into ``<out>/src`` and build the HTML site into ``<out>/html`` (replaced);
    Sphinx's warnings go to ``<out>/warnings.txt`` and do not fail the build. Returns the html
    folder; raises RuntimeError when Sphinx fails, ImportError without the book extra."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError as exc:
        raise ImportError(f"the book needs Sphinx and MyST-NB: {INSTALL_HINT}") from exc
    out = Path(out)
    stage(record, out / "src", readme)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    warnings = out / "warnings.txt"
    args = ["-b", "html", "-q", "-E", "-c", str(conf), "-d", str(out / "doctrees")]
    code = build_main([*args, "-w", str(warnings), str(out / "src"), str(html)])
    if code != 0:
        raise RuntimeError(f"sphinx-build failed ({code}); see {warnings}")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m molkit.book", description=__doc__)
    parser.add_argument("record", type=Path, nargs="?", default=ROOT / "papermill_runs/default")
    parser.add_argument("--out", type=Path, default=ROOT / "book/_build")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    try:
        html = build(args.record, args.out, args.readme)
    except (ImportError, RuntimeError, FileNotFoundError, KeyError) as exc:
        print(f"molkit.book: {exc}", file=sys.stderr)
        return 1
    warnings = args.out / "warnings.txt"
    count = len(re.findall(r"WARNING", warnings.read_text())) if warnings.exists() else 0
    print(f"site: {html / 'index.html'} ({count} Sphinx warnings in {warnings})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
