# The two commands a fresh machine needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest zookeeper repeat mutants mutants-e2e clean

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

pytest: $(STAMP) zookeeper
	$(BIN)/pytest -q -n 2 --dist loadfile

# The 7 lock-in-Keeper tests (tests/test_keeper_lock.py) start Debian's ZooKeeper and skip without it:
# installed here when missing and this is root with apt-get; otherwise say what to install.
ZOOKEEPER_JAR := /usr/share/java/zookeeper.jar
zookeeper:
	@if [ ! -e $(ZOOKEEPER_JAR) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing zookeeperd (Debian's ZooKeeper) for the Keeper tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeperd; \
		else \
			echo "note: the 7 Keeper tests will skip: install ZooKeeper (Debian: sudo apt-get install zookeeperd)"; \
		fi; \
	fi

test: lint typecheck pytest

# The timing-sensitive tests N times (default 20) while 2 busy processes load the machine.
N ?= 20
repeat: $(STAMP)
	$(BIN)/python -m tests.repeat -n $(N) --load 2

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
