# Everything a fresh machine needs: `make run` serves on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DATA_DIR ?= .bootvault

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bootvault serve --data-dir $(DATA_DIR) --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests

test: $(STAMP) lint
	$(BIN)/pytest

# BENCH_ARGS, e.g. "--size-mib 256" for a quick run of the peer comparison; see bench/run.py --help.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/s3.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
