"""The dashboard's files: served at / and /dashboard/ with headers keeping the page to its own
origin, every module import resolving, no HTML built from strings, the vendored layout
library as published, and every file shipped as package data."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import httpx
import pytest
from fastapi import FastAPI

from tep.dashboard import STATIC_DIR, mount_dashboard

ROOT = Path(__file__).parents[2]
OWN_SCRIPTS = sorted(STATIC_DIR.glob("*.js"))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    mount_dashboard(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as http:
        yield http


@pytest.mark.anyio
async def test_the_page_is_served_at_the_root_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'src="dashboard/main.js"' in response.text


@pytest.mark.anyio
async def test_modules_are_served_as_javascript_with_the_same_headers(
    client: httpx.AsyncClient,
) -> None:
    for script in ("main.js", "vendor/dagre/dagre.esm.js"):
        response = await client.get(f"/dashboard/{script}")
        assert response.status_code == 200, script
        assert "javascript" in response.headers["content-type"]
        assert "content-security-policy" in response.headers
    css = await client.get("/dashboard/style.css")
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.anyio
async def test_nothing_outside_the_static_files_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard/../__init__.py", "/dashboard/%2e%2e/serving.py", "/dashboard/nope.js"):
        assert (await client.get(path)).status_code == 404, path


def test_every_import_and_reference_resolves() -> None:
    for script in OWN_SCRIPTS:
        for target in re.findall(r'from "(\./[^"]+)"', script.read_text()):
            assert (script.parent / target).is_file(), f"{script.name} imports {target}"
    html = (STATIC_DIR / "index.html").read_text()
    for reference in re.findall(r'(?:src|href)="dashboard/([^"]+)"', html):
        assert (STATIC_DIR / reference).is_file(), reference


def test_no_script_builds_html_from_strings() -> None:
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    for script in OWN_SCRIPTS:
        assert not forbidden.search(script.read_text()), script.name


def test_the_vendored_dagre_is_the_published_file() -> None:
    vendor = STATIC_DIR / "vendor" / "dagre"
    table = (vendor / "README.md").read_text()
    expected = re.search(r"`dagre\.esm\.js` \| `([0-9a-f]{64})`", table)
    assert expected is not None
    assert hashlib.sha256((vendor / "dagre.esm.js").read_bytes()).hexdigest() == expected[1]
    assert "Permission is hereby granted, free of charge" in (vendor / "LICENSE").read_text()


def test_every_static_file_ships_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["tep.dashboard"]
    package = STATIC_DIR.parent
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = PurePosixPath(path.relative_to(package).as_posix())
            # As setuptools globs: `*` never crosses a `/`.
            shipped = any(
                len(PurePosixPath(p).parts) == len(relative.parts) and relative.match(p)
                for p in patterns
            )
            assert shipped, relative
