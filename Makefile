# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup print-profile browser test test-fast lint demo pretrain bench clean

$(BIN)/dreamtune: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The print reward's default CMYK profile: Ghostscript's (Debian libgs-common, AGPL-3+, not shipped).
ICC := /usr/share/color/icc/ghostscript/default_cmyk.icc

setup: $(BIN)/dreamtune print-profile

print-profile:
	@test -f $(ICC) || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && (apt-get install -y -q libgs-common \
	  || (apt-get update -q && apt-get install -y -q libgs-common)) >/dev/null 2>&1) \
	  || echo "note: $(ICC) is missing; the print reward needs a CMYK profile (apt-get install libgs-common, or pass your own)."

# The web UI's end-to-end test drives Debian's chromium through Playwright (browser downloads do not work here).
browser:
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && (apt-get install -y -q chromium \
	  || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null 2>&1) \
	  || echo "note: chromium is missing; the web UI's browser test will be skipped (apt-get install chromium)."

test: setup browser
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The fast tier: what needs no training run (about a minute on 2 cores).
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

lint: setup
	$(BIN)/ruff check dreamtune tests benchmarks experiments
	$(BIN)/ruff format --check dreamtune tests benchmarks experiments

demo: setup
	$(BIN)/dreamtune demo --out runs/demo

pretrain: setup
	bash benchmarks/pretrain_miniature.sh runs/miniature

bench: setup
	$(BIN)/python benchmarks/tiny_lora_run.py

clean:
	rm -rf $(VENV) runs
