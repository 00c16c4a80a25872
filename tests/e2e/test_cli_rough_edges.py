"""Rough edges of the command line, each against a real nats-server: output piped into
`head`, ids that cannot name an execution, the numbers `tep rebuild` prints, and `tep up`
passing on log lines far longer than a pipe's buffer."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import anyio
import pytest
from tep_cli import ROOT, child_env, json_output, run_tep, tep_command, wait_for
from test_up import Up, embedded_args
from test_up import ups as ups  # the fixture

from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient
from eventstore.jetstream.log import EventLog
from projections import StateManager
from projections.testing import running_projector, synthetic_run
from tep.server import EmbeddedServer

BIG = "big"
ACTIONS = 1200
"""Enough for each command below to print several times a pipe's 64 KiB buffer."""


def piped_into_head(
    args: list[str], url: str, *, with_stderr: bool
) -> subprocess.CompletedProcess[str]:
    """``tep ARGS | head -1`` in a shell that fails on the first failing command of the pipe."""
    command = shlex.join(tep_command(*args, "--nats-url", url))
    redirect = " 2>&1" if with_stderr else ""
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}{redirect} | head -1"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.anyio
async def test_output_piped_into_head_ends_quietly_with_exit_0(
    nc: NatsClient, settings: TepSettings, event_log: EventLog
) -> None:
    results = await event_log.append_many(synthetic_run(BIG, actions=ACTIONS))
    cases = [
        (["events", BIG], False, "TIME"),
        (["events", BIG], True, "TIME"),
        (["events", BIG, "--json"], True, '{"execution_id":"big"'),
        (["watch", BIG, "--plain"], False, ""),
        (["status", BIG, "--json"], True, '{"execution_id":"big"'),
    ]
    async with (
        running_projector(nc, settings),
        await StateManager.connect(settings=settings) as sm,
    ):
        await sm.wait_for_sequence(results[-1].sequence, timeout=30)
        for args, with_stderr, start in cases:
            result = await anyio.to_thread.run_sync(
                lambda a=args, w=with_stderr: piped_into_head(a, settings.nats_url, with_stderr=w)
            )
            assert result.returncode == 0, (args, result.stderr)
            assert result.stderr == "", (args, result.stderr)
            lines = result.stdout.splitlines()
            assert len(lines) == 1 and lines[0].startswith(start), (args, lines)


@pytest.mark.parametrize("command", ["status", "events", "watch", "cancel"])
def test_an_id_that_cannot_name_an_execution_exits_2_with_one_line(
    nats_server: EmbeddedServer, command: str
) -> None:
    result = run_tep(command, "*", nats_url=nats_server.url)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "tep: execution id '*' must match [A-Za-z0-9_-]{1,128}"
    ], result.stderr
    assert result.stdout == ""


_SUMMARY = re.compile(
    r"^rebuilt tep_view_(?P<gen>\d+): (?P<events>[\d,]+) events, (?P<executions>[\d,]+) "
    r"executions in (?P<took>\d+ms|[\d.]+s) \((?P<rate>[\d,]+) events/s\); readers switched"
)


def _seconds(took: str) -> float:
    return float(took[:-2]) / 1000 if took.endswith("ms") else float(took[:-1])


@pytest.mark.anyio
async def test_rebuild_reports_one_rate_and_how_long_it_really_took(
    event_log: EventLog, settings: TepSettings
) -> None:
    executions = 40
    for n in range(executions):
        await event_log.append_many(synthetic_run(f"r{n}", actions=5))
    events = await event_log.last_sequence()

    text = await anyio.to_thread.run_sync(lambda: run_tep("rebuild", nats_url=settings.nats_url))
    document = await anyio.to_thread.run_sync(
        lambda: run_tep("rebuild", "--json", nats_url=settings.nats_url)
    )

    assert text.returncode == 0, text.stderr
    summary = _SUMMARY.match(text.stdout.strip())
    assert summary is not None, text.stdout
    assert int(summary["events"].replace(",", "")) == events
    assert int(summary["executions"].replace(",", "")) == executions
    took = _seconds(summary["took"])
    assert took > 0, summary["took"]  # never "in 0.0s"
    # The printed rate is the printed count over the printed time (rounded for display).
    assert int(summary["rate"].replace(",", "")) == pytest.approx(events / took, rel=0.05)
    assert document.returncode == 0, document.stderr
    report = json_output(document)
    assert report["events"] == events and report["seconds"] > 0
    assert report["events_per_second"] == pytest.approx(events / report["seconds"], rel=1e-3)


HANDLER_MODULE = """\
import json, sys
blob = "x" * 300_000
sys.stdout.write(json.dumps({"level": "info", "msg": "a long line", "blob": blob}) + "\\n")
sys.stdout.write("plain " + "y" * 200_000 + "\\n")
sys.stdout.write(json.dumps({"level": "info", "msg": "after the long lines"}) + "\\n")
sys.stdout.flush()
"""


def test_up_passes_on_a_300_kb_log_line_as_one_line(tmp_path: Path, ups: list[Up]) -> None:
    (tmp_path / "long_lines.py").write_text(HANDLER_MODULE)
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            tep_command("up", *embedded_args(tmp_path), "--handlers", "long_lines"),
            cwd=ROOT,
            env=child_env(PYTHONPATH=str(tmp_path)),
            stdout=stdout,
            stderr=stderr,
            process_group=0,
        )
    up = Up(process, out, err, "")
    ups.append(up)
    wait_for(lambda: "after the long lines" in err.read_text(), 30, "the executor's lines")
    up.stop()

    entries = [json.loads(line) for line in err.read_text().splitlines()]  # every line is JSON
    long_json = [e for e in entries if e.get("msg") == "a long line"]
    plain = [e for e in entries if str(e.get("msg", "")).startswith("plain ")]
    assert len(long_json) == 1 and long_json[0]["proc"] == "executor"
    assert long_json[0]["blob"] == "x" * 300_000
    assert len(plain) == 1 and plain[0]["msg"] == "plain " + "y" * 200_000
    assert plain[0]["proc"] == "executor"
