PYTHON ?= python3
# torch 2.13.0 is this sandbox's local CPU build; elsewhere pip falls back to any torch >= 2.3.
TORCH ?= torch==2.13.0

.PHONY: install install-test test demo

install:
	$(PYTHON) -m pip install -q "$(TORCH)" || $(PYTHON) -m pip install -q "torch>=2.3"
	$(PYTHON) -m pip install -q -e .

install-test: install
	$(PYTHON) -m pip install -q -e ".[test]"

test: install-test
	$(PYTHON) -m pytest

demo: install
	bargainnet harmonize --input-dir examples --output-dir outputs/examples --figure outputs/examples/figure.png
