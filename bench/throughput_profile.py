"""py-spy on every role of a `tep up` stack during a phase, and where each role's CPU went.

Each role is sampled with ``py-spy record --format raw`` (collapsed stacks; idle threads are
not sampled, so a share of the samples is a share of the role's CPU time). The summary lists,
per role, the functions with the most samples on top of the stack (self) and the project's
functions with the most samples anywhere in the stack (inclusive).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tep_stack import Stack

__all__ = ["Profiler", "py_spy", "summarize"]

_PY_SPY = Path(sys.executable).parent / "py-spy"


def py_spy() -> str:
    """The venv's ``py-spy`` (else the one on PATH); exits with one line when there is none."""
    if _PY_SPY.is_file():
        return str(_PY_SPY)
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install -e '.[bench]'")
    return found
_OURS = ("eventstore/", "orchestrator/", "executor/", "projections/", "tep/")
_SKIP_ROLES = {"tep up", "nats-server"}


class Profiler:
    """Records every Python role of ``stack`` into ``directory`` until :meth:`stop`."""

    def __init__(self, stack: Stack, directory: Path, rate: int = 200) -> None:
        self.stack = stack
        self.directory = directory
        self.rate = rate
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        counts: Counter[str] = Counter()
        for pid, name in sorted(self.stack.processes().items()):
            if name in _SKIP_ROLES:
                continue
            counts[name] += 1
            label = f"{name}-{counts[name]}"
            out = self.directory / f"{label}.txt"
            command = [py_spy(), "record", "--pid", str(pid), "--format", "raw"]
            command += ["--rate", str(self.rate), "--nonblocking", "-o", str(out)]
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.running[label] = (process, out)

    def stop(self) -> list[str]:
        """Stop recording; the summary lines of every role."""
        for process, _ in self.running.values():
            process.send_signal(signal.SIGINT)
        lines = [
            f"profile (py-spy at {self.rate} Hz, non-idle samples; files in {self.directory}):"
        ]
        for label, (process, out) in self.running.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if out.exists():
                lines += summarize(label, out.read_text())
        return lines


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (short path)``, lines dropped so a function is one row."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize(label: str, collapsed: str, top: int = 8) -> list[str]:
    """The largest self and inclusive shares of one role's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            if any(f"({marker}" in function for marker in _OURS):
                inclusive[function] += count
    if not total:
        return [f"  {label}: no samples"]
    lines = [f"  {label}: {total} samples; self:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("   inclusive (project code):")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return lines
