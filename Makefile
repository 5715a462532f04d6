# somtorch: two commands do everything on a fresh machine.
#   make demo   -> build .venv, install torch + somtorch, run the end-to-end demo on the built-in sample
#   make test   -> build .venv, install torch + somtorch[dev], run the test suite
# Override the torch build for CUDA machines, e.g.
#   make test TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow bench lint clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m somtorch.demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: setup
	SOMTORCH_SLOW=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_engine.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis demo_output outputs multirun
