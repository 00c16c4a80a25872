#!/usr/bin/env bash
# Create .venv (once) and install the project with its test tools into it, and the system's
# Chromium for the dashboard's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.tep-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi

# The dashboard's browser tests drive Debian's Chromium through Playwright, which never
# downloads a browser of its own: install the system's one when there is none.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "bootstrap: chromium is missing (the dashboard tests need it) and apt-get needs root or sudo: run 'apt-get install chromium' as root" >&2
    exit 1
  fi
  if ! { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "bootstrap: 'apt-get install chromium' failed; the dashboard tests need Debian's chromium" >&2
    exit 1
  fi
fi
