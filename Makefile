# vaejax: `make run` trains, evaluates and draws the default experiment; `make test` runs the tests.
# Every target creates and uses the local virtualenv $(VENV); nothing is installed system-wide
# except the Debian package dataset-fashion-mnist (offline real data), when apt can install it.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
VAEJAX  := $(VENV)/bin/vaejax
WORKDIR ?= runs/default
CONFIG  ?= experiments/default.py
FASHION_DIR := /usr/share/datasets/fashion-mnist

# The project's offline copies of MNIST beside the checkout (../shared/data), when present.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/mnist),)
export VAEJAX_MNIST_DIR ?= $(SHARED_DATA)/mnist
endif
ifneq ($(wildcard $(SHARED_DATA)/binarized_mnist),)
export VAEJAX_BINARIZED_MNIST_DIR ?= $(SHARED_DATA)/binarized_mnist
endif

.PHONY: setup setup-dev data browser run test docs docs-screenshots slurm-test bench clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Tests also install the `tfds` extra so that the TFDS code path is exercised (offline, mocked),
# `slurm` (submitit) for `vaejax sweep --submit slurm`, and `docs` (mkdocs-material,
# mkdocstrings): tests/test_docs.py builds the site strictly.
$(VENV)/.dev: $(VENV)/.core
	$(PY) -m pip install -q -e '.[dev,tfds,slurm,docs]'
	touch $@

setup: $(VENV)/.core

setup-dev: $(VENV)/.dev

# Real, offline data: Debian's dataset-fashion-mnist puts the IDX files in $(FASHION_DIR).
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "data: Fashion-MNIST found in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "data: installing Debian package dataset-fashion-mnist (Fashion-MNIST IDX files, offline)"; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo "data: apt could not install dataset-fashion-mnist; see README 'Datasets' for other sources"; \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  echo "data: installing Debian package dataset-fashion-mnist with sudo"; \
	  sudo apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	  echo "data: sudo apt-get failed; see README 'Datasets' for other sources"; \
	else \
	  echo "data: $(FASHION_DIR) is missing and apt is not available."; \
	  echo "      Put the four Fashion-MNIST IDX files in a folder and set VAEJAX_DATA_DIR=<folder>,"; \
	  echo "      or install the tfds extra (pip install -e '.[tfds]') on a machine with internet."; \
	fi

# A real browser for tests/test_docs.py (the built site rendered by headless Chromium).
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "browser: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "browser: installing Debian package chromium (headless, for the docs' tests)"; \
	  apt-get install -y -q chromium >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else \
	  echo "browser: chromium is missing; tests/test_docs.py needs it (apt-get install chromium)"; \
	fi

run: setup data
	$(VAEJAX) train --config $(CONFIG) --workdir $(WORKDIR) --resume

test: setup-dev data browser
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

# tests/test_slurm.py against a one-node Slurm on this machine (root: apt-get installs slurm-wlm
# and munge the first time); the cluster is stopped afterwards, whatever the tests gave.
SLURM_DIR ?= /tmp/vaejax-slurm
slurm-test: setup-dev
	scripts/slurm/cluster.sh start $(SLURM_DIR)
	VAEJAX_SLURM_DIR=$(SLURM_DIR) $(PY) -m pytest -q -m slurm tests/test_slurm.py; \
	  rc=$$?; scripts/slurm/cluster.sh stop $(SLURM_DIR); exit $$rc

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or reference fails.
docs: setup-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The committed screenshots of the built site (Getting started and the API reference).
SHOTS := docs/assets/screenshots
docs-screenshots: docs browser
	mkdir -p $(SHOTS)
	for page in getting-started api; do \
	  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1600 \
	    --screenshot=$(SHOTS)/$$page.png file://$(abspath site)/$$page/index.html 2>/dev/null; \
	done

bench: setup data
	$(PY) benchmarks/run.py --out benchmarks/RESULTS.md

clean:
	rm -rf runs sweeps site .pytest_cache
