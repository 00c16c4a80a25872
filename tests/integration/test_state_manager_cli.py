"""``tep status``, ``tep list`` and ``tep rebuild`` in-process against a real nats-server."""

from __future__ import annotations

import asyncio
import json

import pytest

from eventstore.config import TepSettings
from eventstore.jetstream.connection import connect
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.provision import ensure_log
from projections import StateManager
from projections.testing import (
    interleave,
    running_projector,
    synthetic_plan,
    synthetic_run,
    synthetic_runs,
)
from tep.cli.main import main
from tep.server import find_free_port


async def _project_runs(settings: TepSettings) -> int:
    """Append a few runs and project them; the view outlives the projector."""
    nc = await connect(settings.nats_url)
    try:
        await ensure_log(nc.jetstream(), settings)
        runs = [synthetic_run("done", actions=3), *synthetic_runs(6, prefix="mix", seed=2)]
        results = await EventLog(nc, settings).append_many(list(interleave(runs)))
        async with (
            running_projector(nc, settings),
            await StateManager.connect(settings=settings) as sm,
        ):
            await sm.wait_for_sequence(results[-1].sequence, timeout=30)
        return results[-1].sequence
    finally:
        await nc.close()


@pytest.fixture
def projected(settings: TepSettings) -> int:
    return asyncio.run(_project_runs(settings))


def _run(settings: TepSettings, *argv: str) -> int:
    return main([*argv, "--nats-url", settings.nats_url])


def test_status_prints_the_state_and_its_actions(
    settings: TepSettings, projected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(settings, "status", "done") == 0

    out = capsys.readouterr().out
    assert "status     completed" in out
    assert "actions    3 total, 3 completed" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("+ a")] == [
        "a0",
        "a1",
        "a2",
    ]


def test_status_json_and_time_travel(
    settings: TepSettings, projected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(settings, "status", "done", "--json")
    now = json.loads(capsys.readouterr().out)
    assert _run(settings, "status", "done", "--json", "--at", str(now["last_sequence"] - 1)) == 0
    before_end = json.loads(capsys.readouterr().out)

    assert now["execution_id"] == "done" and now["status"] == "completed"
    assert "plan" not in now or now["plan"] is None
    assert before_end["status"] == "running"
    assert before_end["event_count"] == now["event_count"] - 1


def test_status_of_an_unknown_execution_exits_2(
    settings: TepSettings, projected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as missing:
        _run(settings, "status", "nope")
    assert missing.value.code == 2
    assert "unknown execution 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_at:
        _run(settings, "status", "done", "--at", "last tuesday")
    assert bad_at.value.code == 2
    assert "--at" in capsys.readouterr().err


def test_list_filters_by_status_and_plan(
    settings: TepSettings, projected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(settings, "list", "--json")
    everything = json.loads(capsys.readouterr().out)
    _run(settings, "list", "--status", "completed", "--plan", "synthetic", "--json")
    filtered = json.loads(capsys.readouterr().out)
    _run(settings, "list")
    table = capsys.readouterr().out

    assert everything["count"] == 7
    assert sum(everything["stats"]["executions"].values()) == 7
    assert [e["execution_id"] for e in filtered["executions"]] == ["done"]
    assert table.splitlines()[0].split() == [
        "EXECUTION",
        "PLAN",
        "STATUS",
        "SUBMITTED",
        "COMPLETED",
    ]


def test_rebuild_reports_and_switches(
    settings: TepSettings, projected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(settings, "rebuild", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert _run(settings, "status", "done", "--json") == 0
    after = json.loads(capsys.readouterr().out)

    assert report["generation"] == 2 and report["switched"] and report["previous_deleted"]
    assert report["events"] == projected and report["executions"] == 7
    assert report["events_per_second"] > 0
    assert after["status"] == "completed"


def test_unreachable_nats_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{find_free_port()}"
    for command in (["status", "x"], ["list"], ["rebuild"]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--nats-url", url])
        assert exc.value.code == 3
    assert "cannot reach NATS" in capsys.readouterr().err


def test_status_says_when_the_view_lags_the_log(
    settings: TepSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def submit_without_projector() -> None:
        async with await StateManager.connect(settings=settings) as sm:
            await sm.initialize_state(synthetic_plan("p", actions=1), execution_id="e1")

    asyncio.run(submit_without_projector())

    with pytest.raises(SystemExit) as exc:
        _run(settings, "status", "e1")
    assert exc.value.code == 2
    assert "in the log but not in the view yet" in capsys.readouterr().err
