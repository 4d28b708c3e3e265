# Sphinx configuration of the record's website (`make book`, molkit/book.py stages the sources).
#
# Why Sphinx + MyST-NB + sphinx-book-theme rather than Jupyter Book: Jupyter Book 2 (the release on
# PyPI now) is a front end to the Node-based MyST tool chain (mystmd): it needs Node.js (or
# downloads it) and fetches its site template on a first build, so neither an offline build nor a
# CI job without Node can make the site. Jupyter Book 1 was this same stack (Sphinx, MyST-NB, the
# book theme) behind a CLI and is in maintenance mode. Sphinx, MyST-NB and sphinx-book-theme are
# maintained, pure Python, pinned in requirements.lock with the rest, build offline, and render a
# notebook from its stored outputs (nb_execution_mode = "off"): the site shows the committed record.
# Equations are typeset by MathJax, which the pages load from its CDN (offline: the TeX as written).

project = "molkit"
author = "molkit contributors"
html_title = "molkit: the published record"

extensions = ["myst_nb"]

# never execute: the pages are the notebooks' stored outputs from papermill_runs/<profile>/
nb_execution_mode = "off"
# MyST syntax the notebooks' markdown uses ($...$ and $$...$$ equations, \begin{...} blocks)
myst_enable_extensions = ["dollarmath", "amsmath"]
# an ipywidgets output needs JavaScript from a CDN to draw: the page shows its stored text instead
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    # the claims, figures and run pages are tables and pictures: no "on this page" column there
    "secondary_sidebar_items": {"claims": [], "figures": [], "run": []},
}
# book/_static/molkit.css: the wide tables get the page's width
html_static_path = ["_static"]
html_css_files = ["molkit.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
