# skullstrip: the two commands of the README, and a few helpers.
#   make demo   set up, then run the main job (synthetic heads -> index -> preprocess)
#   make test   set up, then run ruff and the whole test suite
# Everything is installed into ./.venv from pyproject.toml; nothing by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 2
SUBJECTS ?= 3
export SKULLSTRIP_DATA ?= $(CURDIR)/data

.PHONY: setup test demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n $(WORKERS)

demo: setup
	$(BIN)/skullstrip synth $(SKULLSTRIP_DATA)/synth --subjects $(SUBJECTS) --seed 0
	$(BIN)/skullstrip index $(SKULLSTRIP_DATA)/synth -o $(SKULLSTRIP_DATA)/synth/index.csv --overwrite
	$(BIN)/skullstrip preprocess $(SKULLSTRIP_DATA)/synth/index.csv -o $(SKULLSTRIP_DATA)/preprocessed \
		--plugin MultiProc --workers $(WORKERS)

bench: setup
	$(BIN)/python benchmarks/bench_preprocess.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
