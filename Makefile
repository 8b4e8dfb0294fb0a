# `make demo` and `make test` work on a fresh machine with only python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test conformance bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	@mkdir -p build/demo
	$(VENV)/bin/optimize sample_models/cnn_bn.onnx -o build/demo/cnn_bn.opt.onnx --force --budget 10 --report build/demo/report.html --report build/demo/report.md

test: setup
	$(PY) -m pytest -q

conformance: setup
	$(PY) scripts/conformance.py --full

bench: setup
	$(PY) bench/run_bench.py sample_models

clean:
	rm -rf $(VENV) build .pytest_cache
