# One command sets everything up and runs the tests: `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test demo bench clean

$(BIN)/wm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/wm

setup: $(BIN)/wm

test: setup
	$(BIN)/python -m pytest -q -ra

demo: setup
	$(BIN)/wm demo --keep

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
