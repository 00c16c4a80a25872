"""scripts/demo.sh, the README's main command, runs every example and cleans up after itself."""

from __future__ import annotations

import os
import subprocess

from tep_cli import ROOT, child_env


def test_demo_script_runs_the_examples_and_stops_the_stack() -> None:
    env = child_env(TEP_DEMO_TIMEOUT="60")
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for plan in ("sequential-pipeline", "fan-out-fan-in", "conditional-fallback"):
        assert f"tep submit examples/{plan}.json --wait" in out
        assert f"plan       {plan}" in out  # its tep status
    assert "tep submit examples/approval.json, then tep resume" in out
    assert "resumed: tep resume " in out  # the waitpoint, resumed by the demo's approver
    assert "retried: tep retry " in out  # a failed run re-run from its failed step
    examples = len(list((ROOT / "examples").glob("*.json")))
    assert out.count("status     completed") == examples
    assert "action.attempt.failed" in out and "execution.completed" in out  # the history
    assert out.rstrip().endswith("stopped")
    # Nothing it started is left: no process still runs from its temporary data dir.
    leftovers = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and b"tep-demo." in _cmdline(pid)
    ]
    assert leftovers == []


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""
