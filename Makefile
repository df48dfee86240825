# trackpipe — developer commands. `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create the venv and install trackpipe with dev tools

kafka-jars: $(STAMP) ## fetch the Apache Kafka broker jars (Maven) for tests and local runs
	$(BIN)/python -c "from trackpipe.devservers.kafka import ensure_kafka_jars; print(ensure_kafka_jars())"

run: $(STAMP) ## start the embedded pipeline on http://127.0.0.1:8080 (data in ./var)
	$(BIN)/trackpipe run

EDGES   ?= 2
WORKERS ?= 2
PORT    ?= 8080
cluster: $(STAMP) kafka-jars ## distributed pipeline on one machine: Kafka, ClickHouse, EDGES edges on PORT, WORKERS workers
	$(BIN)/trackpipe cluster up --edges $(EDGES) --workers $(WORKERS) --port $(PORT) $(CLUSTER_ARGS)

test-deps: ## Debian packages the tests need (Chromium, openssl), installed when missing
	bash tests/system-deps.sh

test: $(STAMP) kafka-jars test-deps ## run the whole test suite (starts real Kafka and ClickHouse servers)
	$(BIN)/pytest

test-fast: $(STAMP) ## the tests that need no server (under a minute)
	$(BIN)/pytest -m "not integration"

lint: $(STAMP) ## ruff + mypy + the layer rule (import-linter, contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas ingest processors sinks trackpipe
	$(BIN)/lint-imports

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-deps: ## Debian packages the benchmarks need (wrk), installed when missing
	bash bench/system-deps.sh

bench: $(STAMP) kafka-jars bench-deps ## full benchmarks -> bench/results/latest.json, the table in docs/performance.md
	$(BIN)/python -m bench --full --publish

bench-quick: $(STAMP) kafka-jars bench-deps ## quick benchmarks (~5 minutes)
	$(BIN)/python -m bench

clean: ## remove the venv, caches and local data
	rm -rf $(VENV) .cache var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install kafka-jars run cluster test test-deps test-fast lint fmt bench-deps bench bench-quick clean
