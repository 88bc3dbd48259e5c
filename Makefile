# DeepWML: `make demo` sets up .venv and segments the bundled phantom; `make test` runs all tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test benchmark clean

# compileall: the engine's bytecode up front (an editable install has none, and with
# PYTHONDONTWRITEBYTECODE set every start compiled ~30 modules again: ~10 ms of a ~1 s cold start)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m compileall -q DeepWML/deepwml > /dev/null
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m deepwml.demo demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

benchmark: $(STAMP)
	$(BIN)/python benchmarks/benchmark_inference.py

clean:
	rm -rf $(VENV) demo-output
