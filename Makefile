# `make demo` and `make test` work on a fresh machine with only python3.
# RUNTIME picks the onnxruntime flavour: cpu (default, .venv) or openvino (.venv-openvino); both live side by side.
PYTHON ?= python3
RUNTIME ?= cpu
ifeq ($(RUNTIME),openvino)
VENV ?= .venv-openvino
LOCK := requirements-openvino.lock
else ifeq ($(RUNTIME),cpu)
VENV ?= .venv
LOCK := requirements.lock
else
$(error RUNTIME=$(RUNTIME): choose cpu or openvino)
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-providers conformance bench clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	@mkdir -p build/demo
	$(VENV)/bin/optimize sample_models/cnn_bn.onnx -o build/demo/cnn_bn.opt.onnx --force --budget 10 --report build/demo/report.html --report build/demo/report.md

test: setup
	$(PY) -m pytest -q

# The subset that depends on the runtime flavour (providers, tuning, lossy), e.g. make test-providers RUNTIME=openvino.
test-providers: setup
	$(PY) -m pytest -q -m providers

conformance: setup
	$(PY) scripts/conformance.py --full

bench: setup
	$(PY) bench/run_bench.py sample_models

clean:
	rm -rf .venv .venv-openvino build .pytest_cache
