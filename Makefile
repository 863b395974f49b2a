# Shortcuts; the README's two commands need nothing but Python.
.PHONY: run test check lint load fuzz

run:
	python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ecard serve

test:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

check: lint test

load:
	.venv/bin/python load/run.py

# schemathesis over every operation of the served OpenAPI document (at least 10,000 cases): prints cases and 5xx
fuzz:
	.venv/bin/python -m tests.contract.fuzz
