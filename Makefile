.PHONY: run test lint typecheck bench lock
SHELL := /bin/bash

run: ## Set up and start PsicoGest with the embedded default (SQLite, embedded broker, local SMTP)
	scripts/run.sh

test: ## Install the test dependencies, start PostgreSQL and Redis, run the linters and tests
	scripts/test.sh $(PYTEST_ARGS)

lint:
	.venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/lint-imports --no-cache

typecheck:
	.venv/bin/mypy psicogest emailsettings devtools

lock: ## Re-lock the dependencies after editing pyproject.toml (needs uv)
	uv pip compile pyproject.toml --python-version 3.11 --universal --generate-hashes -o requirements/base.lock
	uv pip compile pyproject.toml --extra test --python-version 3.11 --universal --generate-hashes -o requirements/test.lock
