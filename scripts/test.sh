#!/usr/bin/env bash
# The whole test suite: lint, types, architecture contracts, unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
# Side by side in TEP_TEST_WORKERS processes (3 by default: most tests wait on servers and
# subprocesses rather than compute); a module's tests stay together in one worker, in order.
.venv/bin/python -m pytest -q -n "${TEP_TEST_WORKERS:-3}" --dist loadfile "$@"
