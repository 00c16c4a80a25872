"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against
a real stack with `tep api` (see api_support.py): sign in, the live list, an execution's DAG
turning as its actions complete, time travel back to the start, cancel, resume a waitpoint
from its schema's form, retry from a node, and the schedules page.

Every wait is Playwright's auto-waiting ``expect`` with a deadline; screenshots of each step
are kept under tests/artifacts/dashboard/ (see dashboard_support.py).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_support import TOKENS, Api, running_api
from dashboard_support import BrowserPage, launched_browser, opened_page
from playwright.async_api import Browser, Locator, Page, expect
from support.http_target import HttpTarget

pytestmark = pytest.mark.anyio

expect.set_options(timeout=20_000)

SCHEMA = {
    "type": "object",
    "required": ["approved"],
    "properties": {
        "approved": {"type": "boolean"},
        "amount": {"type": "integer", "minimum": 1},
        "note": {"type": "string"},
    },
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[HttpTarget]:
    async with HttpTarget() as server:
        yield server


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, target: HttpTarget) -> AsyncIterator[Api]:
    async with running_api(tmp_path_factory.mktemp("dashboard"), target) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_browser() as launched:
        yield launched


@pytest.fixture
async def tab(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[BrowserPage]:
    async with opened_page(browser, request.node.name) as opened:
        yield opened


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def submit(api: Api, plan: dict[str, Any], execution_id: str) -> None:
    async with api.client() as client:
        await client.submit(plan, execution_id=execution_id)


async def open_execution(page: Page, api: Api, execution_id: str) -> None:
    """The execution's page, signed in with ``?token=`` (which leaves the address)."""
    await page.goto(f"{api.url}/?token={TOKENS['all']}#/executions/{execution_id}")
    await expect(page.locator(".exec-title h1")).to_contain_text(execution_id)
    assert "token" not in page.url


def node(page: Page, action_id: str) -> Locator:
    return page.locator(f'svg.dag g.node[data-action="{action_id}"]')


def wait_then_call(target: HttpTarget, e: str, wait_id: str = "gate") -> dict[str, Any]:
    """A waitpoint with a schema, then a call that runs once it is resumed."""
    return {
        "id": "dash-gate",
        "actions": [
            {"id": wait_id, "type": "wait", "schema": SCHEMA},
            {"id": "after", "depends_on": [wait_id], "request": {"url": target.url(f"/echo/{e}")}},
        ],
    }


async def test_sign_in_and_the_live_list(api: Api, target: HttpTarget, tab: BrowserPage) -> None:
    page = tab.page
    e = new_id("dash-list")
    plan = {
        "id": "dash-list",
        "actions": [
            {"id": "slow", "request": {"url": target.url(f"/slow/{e}"), "query": {"delay": "1.5"}}}
        ],
    }
    await page.goto(api.url + "/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("token").fill("not-a-token-of-this-server")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("refused the token")
    await page.get_by_label("token").fill(TOKENS["all"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Executions")).to_be_visible()

    await submit(api, plan, e)
    row = page.locator(f'tr[data-execution="{e}"]')
    await expect(row).to_be_visible()
    await tab.shot("listed")
    # The list refreshes by itself: the row turns completed, with its progress.
    await expect(row).to_have_attribute("data-status", "completed")
    await expect(row).to_contain_text("1/1")
    # A poll that finds nothing changed leaves the row's element alone: one replaced under a
    # pressed mouse button loses the click.
    kept = await row.element_handle()
    for _ in range(2):  # the next poll is sent only once this one's rows are drawn
        async with page.expect_response(lambda r: "/v1/executions?" in r.url):
            pass
    assert await kept.evaluate("element => element.isConnected")
    await page.locator("#filter-q").fill(e)
    await expect(page.locator("tbody tr")).to_have_count(1)
    await page.locator("#filter-status").select_option("failed")
    await expect(page.get_by_text("No executions match.")).to_be_visible()
    await tab.shot("filtered")
    await page.locator("#filter-status").select_option("completed")
    await row.get_by_role("link", name=e).click()
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")


async def test_nodes_turn_live_and_time_travel_back(
    api: Api, target: HttpTarget, tab: BrowserPage
) -> None:
    page = tab.page
    e = new_id("dash-live")
    await submit(api, wait_then_call(target, e), e)
    await open_execution(page, api, e)
    await expect(node(page, "gate")).to_have_attribute("data-status", "waiting")
    await expect(node(page, "after")).to_have_attribute("data-status", "pending")
    await expect(page.locator(".stream-state")).to_have_attribute("data-state", "live")
    await tab.shot("waiting")

    # Resumed by someone else: the open page follows the stream.
    async with api.client() as client:
        await client.resume(e, "gate", {"approved": True})
    await expect(node(page, "gate")).to_have_attribute("data-status", "completed")
    await expect(node(page, "after")).to_have_attribute("data-status", "completed")
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")
    await expect(page.locator(".timeline-list")).to_contain_text("execution.completed")
    await tab.shot("completed")

    # Drag the time-travel slider back to the first event: nothing had run yet.
    slider = page.locator(".travel-slider")
    box = await slider.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] - 2, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] / 2, y, steps=5)
    await page.mouse.move(box["x"] + 1, y, steps=5)
    await page.mouse.up()
    await expect(page.locator(".travel-label")).to_contain_text("as of event 1 of")
    await expect(node(page, "after")).to_have_attribute("data-status", "pending")
    await expect(node(page, "gate")).to_have_attribute("data-status", "pending")
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "pending")
    await tab.shot("travelled-to-start")

    # Step forward to the waitpoint waiting, then back to live.
    await page.locator(".timeline-list li[data-type='action.waiting']").click()
    await expect(node(page, "gate")).to_have_attribute("data-status", "waiting")
    await expect(node(page, "after")).to_have_attribute("data-status", "pending")
    await page.get_by_role("button", name="Live").click()
    await expect(node(page, "after")).to_have_attribute("data-status", "completed")

    # The action's panel: its request as sent, its attempt; then run it again from there.
    await node(page, "after").click()
    panel = page.locator(".action-panel")
    await expect(panel).to_contain_text(f"GET {target.url(f'/echo/{e}')}")
    await expect(panel.locator("table.attempts tbody tr")).to_have_count(1)
    await panel.get_by_role("button", name="Retry from after").click()
    await expect(page.locator(".exec-head")).to_contain_text(re.compile(r"run\s*2"))
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")
    await expect(panel).to_contain_text("Earlier runs")
    await tab.shot("retried")


async def test_cancel_from_the_page(api: Api, target: HttpTarget, tab: BrowserPage) -> None:
    page = tab.page
    e = new_id("dash-cancel")
    await submit(api, wait_then_call(target, e, "hold"), e)
    await open_execution(page, api, e)
    await expect(node(page, "hold")).to_have_attribute("data-status", "waiting")
    await page.get_by_role("button", name="Cancel execution").click()
    dialog = page.locator("dialog.confirm")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("reason").fill("not needed any more")
    await tab.shot("confirm")
    await dialog.get_by_role("button", name="Yes, cancel it").click()
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "cancelled")
    await expect(node(page, "hold")).to_have_attribute("data-status", "cancelled")
    await expect(page.locator(".exec-head")).to_contain_text("not needed any more")
    await expect(page.get_by_role("button", name="Cancel execution")).to_be_hidden()


async def test_resume_a_waitpoint_from_its_form(
    api: Api, target: HttpTarget, tab: BrowserPage
) -> None:
    page = tab.page
    e = new_id("dash-resume")
    await submit(api, wait_then_call(target, e), e)
    await open_execution(page, api, e)
    await node(page, "gate").click()
    form = page.get_by_role("form", name="resume the waitpoint")
    await expect(form).to_be_visible()
    # A field per property of the schema; the server's refusal is listed in the form.
    await form.get_by_label("approved").check()
    await form.get_by_label("amount").fill("0")
    await form.get_by_label("note").fill("looks fine")
    await form.get_by_role("button", name="Resume").click()
    await expect(form.get_by_role("alert")).to_contain_text("amount")
    await tab.shot("refused")
    await expect(node(page, "gate")).to_have_attribute("data-status", "waiting")
    await form.get_by_label("amount").fill("120")
    await form.get_by_role("button", name="Resume").click()
    await expect(node(page, "gate")).to_have_attribute("data-status", "completed")
    await expect(node(page, "after")).to_have_attribute("data-status", "completed")
    output = page.locator('.action-panel [data-section="Output"]')
    await expect(output).to_contain_text('"amount": 120')
    await expect(output).to_contain_text('"approved": true')
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")


async def test_reject_a_waitpoint(api: Api, target: HttpTarget, tab: BrowserPage) -> None:
    page = tab.page
    e = new_id("dash-reject")
    await submit(api, wait_then_call(target, e), e)
    await page.goto(f"{api.url}/?token={TOKENS['all']}#/executions/{e}?action=gate")
    form = page.get_by_role("form", name="resume the waitpoint")
    await form.get_by_label("reject reason").fill("over budget")
    await form.get_by_role("button", name="Reject").click()
    await expect(node(page, "gate")).to_have_attribute("data-status", "failed")
    await expect(page.locator(".action-panel")).to_contain_text("over budget")
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "failed")


async def test_schedules_page(api: Api, target: HttpTarget, tab: BrowserPage) -> None:
    page = tab.page
    name = new_id("dash-sched")
    plan = {"id": "dash-sched", "actions": [{"id": "a", "request": {"url": target.url("/echo/s")}}]}
    await page.goto(f"{api.url}/?token={TOKENS['all']}#/schedules")
    await expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
    form = page.locator("form.schedule-form")
    await form.get_by_label("name").fill(name)
    await form.get_by_label("cron").fill("not a cron")
    await form.get_by_label("plan (JSON)").fill(json.dumps(plan))
    await form.get_by_role("button", name="Add schedule").click()
    await expect(form.get_by_role("alert")).to_contain_text("cron")
    await form.get_by_label("cron").fill("0 3 * * *")
    await form.get_by_role("button", name="Add schedule").click()
    row = page.locator(f'tr[data-schedule="{name}"]')
    await expect(row).to_contain_text("active")
    await expect(form.get_by_label("cron")).to_have_value("@hourly")  # the form starts again
    await row.get_by_role("button", name="Trigger now").click()
    await expect(page.get_by_role("status")).to_contain_text(f"{name} started {name}-manual-")
    await expect(row.get_by_role("link")).to_contain_text(f"{name}-manual-")
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_contain_text("paused")
    await tab.shot("paused")
    await row.get_by_role("button", name="Remove").click()
    await row.get_by_role("button", name="Really remove?").click()
    await expect(row).to_have_count(0)


async def test_the_page_follows_on_after_the_api_restarts(
    api: Api, target: HttpTarget, tab: BrowserPage
) -> None:
    page = tab.page
    e = new_id("dash-restart")
    await submit(api, wait_then_call(target, e), e)
    await open_execution(page, api, e)
    await expect(node(page, "gate")).to_have_attribute("data-status", "waiting")
    await api.restart()
    # The page reconnects by itself (Last-Event-ID) and sees what happens after.
    async with api.client() as client:
        await client.resume(e, "gate", {"approved": True})
    await expect(node(page, "after")).to_have_attribute("data-status", "completed")
    await expect(page.locator(".stream-state")).to_have_attribute("data-state", "live")
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")


async def test_the_stream_parser_reads_events_split_anywhere(api: Api, tab: BrowserPage) -> None:
    text = (
        "retry: 2000\n\n"
        ": keep-alive\n\n"
        'id: 7\nevent: state\ndata: {"a":\ndata: 1}\r\n\r\n'
        "id: 9\r\nevent: end\rdata: x\r\r"
        "data: no id of its own\n\n"
    )
    await page_at_origin(tab.page, api)
    results = await tab.page.evaluate(
        """async (text) => {
          const { SseParser } = await import("./dashboard/sse.js");
          const seen = new Set();
          for (let size = 1; size <= text.length; size++) {
            const events = [];
            const parser = new SseParser((event) => events.push(event));
            for (let i = 0; i < text.length; i += size) parser.feed(text.slice(i, i + size));
            seen.add(JSON.stringify({ events, retry: parser.retry }));
          }
          return [...seen];
        }""",
        text,
    )
    assert [json.loads(r) for r in results] == [
        {
            "events": [
                {"event": "state", "id": "7", "data": '{"a":\n1}'},
                {"event": "end", "id": "9", "data": "x"},
                {"event": "message", "id": "9", "data": "no id of its own"},
            ],
            "retry": 2000,
        }
    ]


async def page_at_origin(page: Page, api: Api) -> None:
    """The dashboard loaded (signed out), so its modules can be imported by the page."""
    await page.goto(api.url + "/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_for_each_items_and_a_sub_plan_child(
    api: Api, target: HttpTarget, tab: BrowserPage
) -> None:
    page = tab.page
    e = new_id("dash-shapes")
    child = {
        "id": "dash-child",
        "actions": [{"id": "inner", "request": {"url": target.url("/echo/c")}}],
    }
    plan = {
        "id": "dash-shapes",
        "actions": [
            {
                "id": "each",
                "for_each": [1, 2, 3],
                "concurrency": 2,
                "request": {"url": target.url(f"/echo/{e}"), "query": {"n": "{{item}}"}},
            },
            {"id": "sub", "type": "plan", "depends_on": ["each"], "plan": child},
        ],
    }
    await submit(api, plan, e)
    await open_execution(page, api, e)
    await expect(page.locator(".exec-status")).to_have_attribute("data-status", "completed")
    await expect(node(page, "each")).to_contain_text("completed")
    await node(page, "each").click()
    items = page.locator('.action-panel [data-section="Items"]')
    await expect(items).to_contain_text("3/3 done: 3 completed")
    await expect(items.locator("tbody tr")).to_have_count(3)
    await expect(page.locator(".action-panel")).to_contain_text("item 0's request")
    await tab.shot("items")
    await node(page, "sub").click()
    link = page.locator(".action-panel dl.facts a")  # the child execution
    await expect(link).to_be_visible()
    await link.click()
    await expect(page.locator(".exec-head")).to_contain_text(f"{e} (sub)")
    await expect(node(page, "inner")).to_have_attribute("data-status", "completed")
