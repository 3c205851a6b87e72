# The two fresh-machine commands (README): `make demo` and `make test`. Both work in the project's
# own virtual environment, .venv/ in this folder (created on first use with `python3 -m venv`), so
# nothing is ever installed into a system python (PEP 668) and pyenv/conda pythons work the same.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is this sandbox's local CPU build; elsewhere pip falls back to any torch >= 2.3.
TORCH ?= torch==2.13.0

.PHONY: install install-test test demo clean-venv

# A half-made environment (e.g. venv present but ensurepip missing) is removed, so the next run
# starts clean instead of failing on a broken .venv.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is missing or older than 3.10; run with PYTHON=/path/to/python3.10+" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv $(VENV)' failed: most often the venv module is missing (Debian/Ubuntu: apt-get install python3-venv); run it by hand to see why" >&2; exit 1; }
	@echo "created the virtual environment $(VENV)/ (the commands run from $(BIN)/)"

# Stamps make the second run instant; editing pyproject.toml re-installs.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)" || $(BIN)/python -m pip install -q "torch>=2.3"
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

install: $(VENV)/.runtime

install-test: $(VENV)/.test

test: install-test
	$(BIN)/python -m pytest

demo: install
	$(BIN)/bargainnet harmonize --input-dir examples --output-dir outputs/examples --figure outputs/examples/figure.png

clean-venv:
	rm -rf $(VENV)
