# The two commands: `make demo` and `make test`. Everything they need is installed here,
# into .venv (keyed by the lock file) and kafka/lib (keyed by kafka/pom.xml); caches are reused.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
LOCK_KEY := $(shell cat requirements.lock pyproject.toml sdk/python/pyproject.toml | sha256sum | cut -c1-16)
POM_KEY := $(shell sha256sum kafka/pom.xml | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(LOCK_KEY)
JARS_STAMP := kafka/lib/.resolved-$(POM_KEY)
PYTEST_ARGS ?=

# Each other runtime brings its own install step (mk/<runtime>.mk adds it to SDK_INSTALL): node_modules for
# sdk/typescript and tests/node, a cached cargo build for sdk/rust, Debian's chromium for the console's browser
# tests. `make test` runs them first.
SDK_INSTALL :=
include $(wildcard mk/*.mk)

.PHONY: install venv jars demo test soak chaos security fuzz contract lint imports typecheck compose-check bench lock clean help

help:
	@echo "make demo     install what is missing, run the whole pipeline on the example trajectories"
	@echo "make test     install what is missing, lint, type-check and run the tests"
	@echo "make chaos    kill every part under load, scale out, run out of disk and memory; count everything"
	@echo "make soak     10 minutes at 50 trajectories/s (docs/soak.png), 20 rounds of down/up/sql, the other slow tests"
	@echo "make security the SASL_SSL (SCRAM-SHA-512) broker with ACLs, alone (make test runs it too)"
	@echo "make fuzz     the fuzz tests with 100x the examples, then atheris for a minute on each target"
	@echo "make bench    run the benchmarks under benchmarks/"
	@echo "make lock     re-resolve requirements.lock from pyproject.toml"
	@echo "make contract after a schema change: write the shared vectors and the SDKs' contract tables"

install: venv jars

venv: $(VENV_STAMP)
$(VENV_STAMP): requirements.lock pyproject.toml sdk/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e ./sdk/python -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

jars: $(JARS_STAMP)
$(JARS_STAMP): kafka/pom.xml
	@rm -rf kafka/lib
	mvn -B -q -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/kafka/lib -DincludeScope=runtime
	@touch $@

# After a schema change: the shared vectors and each SDK's contract table, all from schemas/ (their tests
# fail while any is stale).
contract: venv
	$(BIN)/trajstream schemas vectors
	$(BIN)/python sdk/rust/gen_contract.py
	node sdk/typescript/scripts/generate-contract.mjs

lock: venv
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --generate-hashes --no-emit-package trajstream-sdk -o requirements.lock

demo: install
	$(BIN)/trajstream demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layers of the data flow (pyproject's [tool.importlinter]): no stage imports a later one.
imports: venv
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

compose-check:
	scripts/check-compose.sh

test: install $(SDK_INSTALL) lint imports typecheck compose-check
	$(BIN)/pytest $(PYTEST_ARGS)

# Longer than `make test` may take on 2 cores (CI's budget): the soak (10 minutes of load, its plot in docs/), the
# restart loop at full length, and the other tests marked slow (the chaos suite has its own target).
soak: install $(SDK_INSTALL)
	$(BIN)/pytest tests/chaos/test_soak.py -m slow -s $(PYTEST_ARGS)
	TRAJSTREAM_TEST_RESTART_LOOPS=20 TRAJSTREAM_TEST_OPS_MILVUS=server $(BIN)/pytest tests/e2e/test_operations.py -k again_and_again $(PYTEST_ARGS)
	$(BIN)/pytest -m slow --ignore=tests/chaos $(PYTEST_ARGS) || test $$? -eq 5  # 5: none is marked slow

# Faults under load, counted: each part SIGKILLed (and the broker), the mix, two streams workers, disks and memory
# running out. Its counts go to chaos-results.jsonl (TRAJSTREAM_CHAOS_RESULTS).
chaos: install
	$(BIN)/pytest tests/chaos -m slow --ignore=tests/chaos/test_soak.py -s $(PYTEST_ARGS)

security: install
	$(BIN)/pytest tests/security $(PYTEST_ARGS)

# The fuzz tests at length: 100 times the examples `make test` runs, then atheris (coverage-guided) for
# FUZZ_SECONDS on each target.
FUZZ_SECONDS ?= 60
fuzz: install
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/fuzz -m "slow or not slow" -o timeout=1800 $(PYTEST_ARGS)
	for t in codec emit sql-guard gateway-json gateway-otlp data-api; do \
		$(BIN)/python -m tests.fuzz.atheris_run --target $$t --seconds $(FUZZ_SECONDS) || exit 1; done
