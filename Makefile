# The two commands: `make up` and `make test`. Both set up what is missing first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LAKEHOUSE := $(VENV)/bin/lakehouse
PYTEST_ARGS ?=
# `make test` runs its test files on this many pytest-xdist workers, a file at a
# time per worker (module fixtures stay in one process; each worker starts its
# own session stacks on free ports). Most slow tests wait on Airflow, Kafka or
# a sensor rather than compute. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2

.PHONY: help setup up down status logs clean psql test test-quick test-chaos bench bench-quick chaos lock compose-up compose-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install Debian packages and .venv when missing or stale
	@scripts/bootstrap.sh

up: setup ## Start the embedded stack (idempotent) and print the URLs
	@$(LAKEHOUSE) up

down: ## Stop every process of the stack (data is kept)
	@# without .venv nothing can be running; the CLI's error (e.g. a wrong setting) is make's
	@if [ -x $(LAKEHOUSE) ]; then $(LAKEHOUSE) down; fi

status: ## Show each service's state
	@# 3 is the CLI's "not running" (LSB's code): an answer here, not make's "Error 3"
	@$(LAKEHOUSE) status || [ $$? -eq 3 ]

logs: ## Tail the logs of every service (SERVICE=name for one)
	@$(LAKEHOUSE) logs $(SERVICE)

clean: ## Stop the stack and remove the run directory (all data)
	@# the CLI stops the stack before deleting; a refused setting must not delete .run under it
	@if [ -x $(LAKEHOUSE) ]; then $(LAKEHOUSE) clean; else rm -rf .run; fi

psql: ## psql on the serving database as the read-only role
	@$(LAKEHOUSE) psql

test: ## Run the whole suite (sets up first); the 5-minute chaos run is make test-chaos
	@scripts/bootstrap.sh --with-browser
	@$(PY) -m pytest -m "not chaos" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

test-chaos: ## The 5-minute chaos run of tests/test_chaos.py (faults at load, ~15 min; fails on any loss or double)
	@scripts/bootstrap.sh
	@$(PY) -m pytest -m chaos $(PYTEST_ARGS)

test-quick: ## Run the suite without the slow end-to-end tests
	@scripts/bootstrap.sh --tests
	@$(PY) -m pytest -m "not slow and not chaos" $(PYTEST_ARGS)

bench: ## Benchmark on an isolated stack (QUICK=1 = bench-quick; BENCH_ARGS="--events-per-day 10000000"); results in bench-results/
	@scripts/bootstrap.sh
	@$(PY) -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-quick: ## The benchmark in a few minutes (smaller runs, same measurements)
	@scripts/bootstrap.sh
	@$(PY) -m bench --quick $(BENCH_ARGS)

chaos: ## Faults at load on an isolated stack, then checks nothing was lost or doubled (CHAOS_ARGS="--duration 300 --seed 7"); table into docs/reliability.md
	@scripts/bootstrap.sh
	@$(PY) -m lakehouse.chaos $(CHAOS_ARGS)

lock: ## Re-resolve requirements.in into requirements.lock
	@$(VENV)/bin/uv pip compile --python-version 3.11 requirements.in -o requirements.lock

compose-up: ## Full stack in Docker (Kafka, PostgreSQL, streams, Spark Connect, Airflow, dashboard, Grafana); needs Docker Compose v2
	@docker compose version >/dev/null 2>&1 || { echo "make compose-up needs Docker with the Compose v2 plugin (docker compose); without Docker use make up"; exit 1; }
	@scripts/bootstrap.sh
	@$(PY) -c 'from lakehouse.platform.secrets import ensure_env_file as e; added = e(); added and print("[compose] generated", len(added), "secrets into .env (mode 600)")'
	@docker compose up -d --build --wait --wait-timeout 600
	@$(PY) -c 'from lakehouse.settings import get_settings as g; s = g(); print(f"  Airflow UI  http://127.0.0.1:{s.airflow_port}  login {s.airflow_admin_user} / AIRFLOW_ADMIN_PASSWORD in .env\n  dashboard   http://127.0.0.1:{s.dashboard_port}  login {s.dashboard_admin_user} / DASHBOARD_ADMIN_PASSWORD in .env\n  Grafana     http://127.0.0.1:{s.grafana_port}  login {s.grafana_admin_user} / GRAFANA_ADMIN_PASSWORD in .env\n  stop        make compose-down   (data kept in Docker volumes; docker compose down -v deletes it)")'

compose-down: ## Stop the Docker stack (its volumes keep the data)
	@docker compose down
