"""The pure contract loads no broker or HTTP client: each module in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = ("nats", "aiohttp", "httpx")


def _pure_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    pure = next(c for c in contracts if "tep" in c.get("forbidden_modules", []))
    return list(pure["source_modules"])


PURE = _pure_modules()

_PROBE = (
    "import importlib, sys; importlib.import_module(sys.argv[1]); "
    f"print(','.join(m for m in {FOREIGN!r} if m in sys.modules))"
)


def test_the_contract_lists_the_core() -> None:
    core = {"eventstore.fold", "eventstore.events", "orchestrator.decide", "executor.target_policy"}
    assert core <= set(PURE)


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_broker_or_http_client(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} loads {result.stdout.strip()}"
