# The two contract commands (see README):
#   make demo   - install the CPU stack into .venv, build the built-in model, run the whole
#                 workbook on params/tiny-qwen2.yaml and export the report under outputs/
#   make test   - install what the tests need, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PARAMS ?= params/tiny-qwen2.yaml

.PHONY: install demo test test-fast notebooks

install:
	bash scripts/install_cpu.sh

demo: install
	$(PY) -m ascendeval.cli build-model tiny-qwen2
	$(PY) -m ascendeval.cli run $(PARAMS)

test: install
	bash scripts/install_test_deps.sh
	bash scripts/install_sglang_parser.sh
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: install
	bash scripts/install_sglang_parser.sh
	$(PY) -m pytest -ra -m "not e2e" $(PYTEST_ARGS)

notebooks: install
	$(VENV)/bin/jupytext --sync notebooks/*.py
