# The two commands: `make up` and `make test`. Both set up what is missing first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LAKEHOUSE := $(VENV)/bin/lakehouse
PYTEST_ARGS ?=

.PHONY: help setup up down status logs clean psql test test-quick bench bench-quick lock compose-up compose-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install Debian packages and .venv when missing or stale
	@scripts/bootstrap.sh

up: setup ## Start the embedded stack (idempotent) and print the URLs
	@$(LAKEHOUSE) up

down: ## Stop every process of the stack (data is kept)
	@[ -x $(LAKEHOUSE) ] && $(LAKEHOUSE) down || true

status: ## Show each service's state
	@$(LAKEHOUSE) status

logs: ## Tail the logs of every service (SERVICE=name for one)
	@$(LAKEHOUSE) logs $(SERVICE)

clean: ## Stop the stack and remove the run directory (all data)
	@[ -x $(LAKEHOUSE) ] && $(LAKEHOUSE) clean || rm -rf .run

psql: ## psql on the serving database as the read-only role
	@$(LAKEHOUSE) psql

test: ## Run the whole suite (sets up first)
	@scripts/bootstrap.sh --with-browser
	@$(PY) -m pytest $(PYTEST_ARGS)

test-quick: ## Run the suite without the slow end-to-end tests
	@scripts/bootstrap.sh
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lock: ## Re-resolve requirements.in into requirements.lock
	@$(VENV)/bin/uv pip compile --python-version 3.11 requirements.in -o requirements.lock
