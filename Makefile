PYTHON ?= python3

.PHONY: install test demo

install:
	$(PYTHON) -m pip install -q torch==2.13.0 || $(PYTHON) -m pip install -q "torch>=2.3"
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest

demo: install
	bargainnet harmonize --input-dir examples --output-dir outputs/examples --figure outputs/examples/figure.png
