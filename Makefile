# matrix-hotline: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs the hotline and Synapse; the tests also pytest, Playwright and psycopg2.
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[homeserver]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

## Everything the tests need (what `make test` installs first).
install: $(TEST_STAMP)

## Homeserver, bot and web chat on 127.0.0.1; Ctrl-C stops everything. State stays in var/demo.
demo: $(STAMP)
	$(BIN)/python -m hotline demo --dir var/demo

## The whole test suite; it starts its own Synapse, bot, gateway and browser. It also installs a
## `git archive` of the checkout into a fresh venv (pip's cache keeps that to about half a minute)
## and runs the bot and gateway from it, and NEXT-STEPS.md's systemd path with it (as root). Then
## the chat path again with Synapse on PostgreSQL (a throwaway loopback cluster).
## Two pytest workers (pytest-xdist), each with its own stack, each test file whole in one of them:
## most of the suite waits on the homeserver (a restart, a lock's expiry, a grace period), so two
## take about half as long as one (13 minutes against 23 here). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
	HOTLINE_TEST_DATABASE=postgres $(BIN)/python -m pytest tests/test_chat_path.py

## The benchmarks (bench/): tables on stdout, plots and results.json in docs/performance/.
## Needs chromium and PostgreSQL (installed with apt-get if missing). BENCH_ARGS=--quick for a smoke run.
bench: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
