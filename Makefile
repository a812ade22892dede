# skullstrip: the two commands of the README, and a few helpers.
#   make book   set up, then the main job: build the book, every chapter executed (sample profile)
#   make test   set up, then run ruff and the whole test suite (chapters executed too)
#   make test-fast  ruff and the tests without the chapter runs and full-size volumes
# Everything is installed into ./.venv from pyproject.toml; nothing by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 2
SUBJECTS ?= 3
export SKULLSTRIP_DATA ?= $(CURDIR)/data

.PHONY: setup test test-fast book student-edition colab-edition demo bench bench-families lint \
	clean default-model ablation

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,book]'
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n $(WORKERS)

# Day-to-day: everything but the chapter executions and the full-size (256x256x192) volumes.
test-fast: lint
	$(BIN)/python -m pytest -n $(WORKERS) -m "not slow and not notebook"

# The book, offline, every chapter executed in the sample profile; any warning fails it.
# Chapters are re-executed only when their code changed (jupyter-cache in _build/).
# Then every page is opened offline in headless Chromium (tools/check_book.py: math typeset,
# images loaded, no error output, no request off the machine, Colab and download links).
book: setup
	SKULLSTRIP_PROFILE=sample TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/jupyter-book build . \
		--warningiserror --keep-going
	@# The offline check needs Debian's chromium: set it up like the venv when we may.
	@command -v $${CHROMIUM:-chromium} >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "installing chromium for the offline check (apt-get)" \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "make book: the offline check needs chromium: apt-get install chromium (or CHROMIUM=/path)"; exit 2; }
	$(BIN)/python tools/check_book.py _build/html --config _config.yml
	@echo "The book: $(CURDIR)/_build/html/index.html"

# The chapters without exercise solutions, for handing out (see book/instructors.md).
student-edition: setup
	$(BIN)/python -c 'from tools.bookbuild.editions import student_edition as s; \
		print(s("notebooks", "_build/student", overwrite=True))'

# The chapters as their Colab badges open them (colab/, committed): plain Markdown, solutions
# folded into form cells. Run after editing a chapter; a test checks colab/ is up to date.
colab-edition: setup
	$(BIN)/python -c 'from tools.bookbuild.editions import colab_edition as c; \
		print(len(c("notebooks", "colab", overwrite=True)), "chapters written to colab/")'

# The chapters as nbgrader source notebooks (_build/nbgrader/source/<chapter>/), each
# build-it exercise an autograded answer and its checks autograded tests; then run nbgrader
# in _build/nbgrader (book/instructors.md). ASSIGNMENTS=build-only: only the build-it parts.
.PHONY: assignments
ASSIGNMENTS ?= whole
assignments: setup
	$(BIN)/python -c 'from tools.bookbuild.nbgrader import nbgrader_source as n; \
		points = n("notebooks", "_build/nbgrader", overwrite=True, \
		           build_only="$(ASSIGNMENTS)" == "build-only"); \
		print("\n".join(f"{k}: {v} points" for k, v in points.items()))'
	@echo "nbgrader course folder: $(CURDIR)/_build/nbgrader (cd there, then nbgrader generate_assignment NAME)"

demo: setup
	$(BIN)/skullstrip synth $(SKULLSTRIP_DATA)/synth --subjects $(SUBJECTS) --seed 0
	$(BIN)/skullstrip index $(SKULLSTRIP_DATA)/synth -o $(SKULLSTRIP_DATA)/synth/index.csv --overwrite
	$(BIN)/skullstrip preprocess $(SKULLSTRIP_DATA)/synth/index.csv -o $(SKULLSTRIP_DATA)/preprocessed \
		--plugin MultiProc --workers $(WORKERS)
	$(BIN)/skullstrip predict $(SKULLSTRIP_DATA)/synth/NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w.nii.gz \
		-o $(SKULLSTRIP_DATA)/predicted --qc --overwrite

bench: setup
	$(BIN)/python benchmarks/bench_preprocess.py --markdown
	$(BIN)/python benchmarks/bench_inference.py --markdown
	$(BIN)/python benchmarks/bench_training.py --markdown
	$(BIN)/python benchmarks/bench_input_pipeline.py
	$(BIN)/python benchmarks/bench_fetch.py
	$(MAKE) bench-families

# Held-out synthetic families (settings and seeds no training group uses): what the
# bundled model is chosen by, and the README's accuracy table. About 15 minutes on 2 cores.
bench-families: setup
	$(BIN)/python benchmarks/bench_families.py --markdown

# The source article's defects, measured (book/source_article.md, chapter 8): the sample
# profile's pipeline, then each defect alone, 5 seeds each, scored on held-out heads in
# native space. Writes skullstrip_lib/lessons/results/ablation.{csv,json} and
# book/ablation_table.md. About 40 minutes on 2 cores; finished runs are reused.
ablation: setup
	$(BIN)/python benchmarks/ablation.py

# The bundled default model, reproducibly: train with the "default" profile, export it
# into the package with flip test-time augmentation and the threshold calibrated on the
# run's validation heads (native space). Measured times: README, "The bundled model".
default-model: setup
	$(BIN)/skullstrip train --profile default -o runs/default
	$(BIN)/skullstrip export runs/default -o skullstrip_lib/models/default --overwrite --calibrate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info _build
