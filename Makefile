# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint demo pretrain bench clean

$(BIN)/dreamtune: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/dreamtune

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: setup
	$(BIN)/ruff check dreamtune tests benchmarks

demo: setup
	$(BIN)/dreamtune demo --out runs/demo

pretrain: setup
	bash benchmarks/pretrain_miniature.sh runs/miniature

bench: setup
	$(BIN)/python benchmarks/tiny_lora_run.py

clean:
	rm -rf $(VENV) runs
