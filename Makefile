# The two commands a fresh machine needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest mutants mutants-e2e clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m k2_migrations.k2.demo

lint: $(STAMP)
	$(BIN)/ruff check k2_migrations versions tests bench
	$(BIN)/ruff format --check k2_migrations versions tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

# Mutation testing (mutmut) of the pure decisions and SQL splitting/rewriting against their property
# tests; prints the score (minutes; not part of test). Survivors: $(BIN)/mutmut results, mutmut show NAME.
mutants: $(STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -m tests.mutants.score mutants/mutmut-cicd-stats.json

# The planted-bug catalogue: one-line bugs in the safety-critical code, each caught by the real-process
# tests named for it (tests/mutants/catalogue.py; many minutes).
mutants-e2e: $(STAMP)
	$(BIN)/python -m tests.mutants

clean:
	rm -rf $(VENV) .k2-migrate .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants
