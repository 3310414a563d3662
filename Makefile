SHELL := /bin/bash
ENV := source scripts/setup_env.sh

.PHONY: setup demo serve test test-all lint

setup:            ## create the venv and install tvindex (idempotent)
	@$(ENV) && tvindex --version

demo: setup       ## index the demo catalogue with the offline teachers, answer a query, serve the UI
	@$(ENV) && bash scripts/demo.sh

serve: setup      ## the web UI and API over the demo catalogue, on http://127.0.0.1:8080/
	@$(ENV) && tvindex --config demo/config.yaml serve

test: setup       ## the fast test suite (what CI runs)
	@$(ENV) && python -m pytest -q

test-all: setup   ## every test, the slow ones too
	@$(ENV) && python -m pytest -q -m ""

lint: setup       ## ruff over the whole repository (tests/test_lint.py runs it in the suite too)
	@$(ENV) && ruff check .
