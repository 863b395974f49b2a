# Shortcuts; the README's two commands need nothing but Python.
.PHONY: run test check lint load fuzz lock lock-upgrade

LOCK = .venv/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet

run:
	python3 -m venv .venv && .venv/bin/pip install -q -r requirements.lock && .venv/bin/pip install -q --no-deps -e . && .venv/bin/ecard serve

test:
	python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.lock && .venv/bin/pip install -q --no-deps -e . && .venv/bin/python -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

check: lint test

load:
	.venv/bin/python load/run.py

# schemathesis over every operation of the served OpenAPI document (at least 10,000 cases): prints cases and 5xx
fuzz:
	.venv/bin/python -m tests.contract.fuzz

# After changing dependencies in pyproject.toml: the lock files again, keeping every pin that still fits.
lock:
	$(LOCK) -o requirements.lock && $(LOCK) --extra dev -o requirements-dev.lock

# Every pin moved to the newest release pyproject.toml allows.
lock-upgrade:
	$(LOCK) --upgrade -o requirements.lock && $(LOCK) --upgrade --extra dev -o requirements-dev.lock
