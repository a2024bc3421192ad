# Two commands are all the set-up: `make demo` and `make test` create/update .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test test-all bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,export,video]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/happysad demo

test: venv
	$(PY) -m pytest -q

# The benchmarks' own extras (bench/faces_compare.py compares OpenCV's Haar cascades and MTCNN).
bench: venv
	$(PY) -m pip install --quiet -e '.[bench]'

# Slow real-data tests (need ../shared/datasets); not part of `make test`.
test-all: venv
	$(PY) -m pytest -q -m "slow or not slow"

clean-venv:
	rm -rf $(VENV)
