"""What ``tep up`` supervises: one child process per role, each with its own identity, and how
their log lines are shown."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from eventstore.access import Role
from tep.api.local import LocalApi
from tep.creds import seed_path
from tep.server import find_free_port
from tep.supervisor import ChildSpec

__all__ = ["CHILD_GRACE_S", "LOOPBACK_CIDRS", "LineRenderer", "child_specs"]

CHILD_GRACE_S = 2.5
LOOPBACK_CIDRS = ("127.0.0.0/8", "::1/128")
"""What ``tep up``'s executors may call beyond public addresses (development)."""

# Identity flags of `tep up` handed to children when it joins a server it did not start.
_PASSED_THROUGH = {
    "creds": "TEP_CREDS",
    "nkey": "TEP_NKEY",
    "user": "TEP_USER",
    "password": "TEP_PASSWORD",
    "tls_ca": "TEP_TLS_CA",
    "tls_cert": "TEP_TLS_CERT",
    "tls_key": "TEP_TLS_KEY",
}


def child_specs(
    args: argparse.Namespace,
    nats_url: str,
    *,
    creds_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    api: LocalApi | None = None,
) -> list[ChildSpec]:
    """The processes to supervise, each ``python -m tep.cli.main <role>`` (no PATH needed).

    ``args.orchestrators`` orchestrators and ``args.executors`` executors run, each numbered
    (``executor-2``) when there are several. Every role serves its health endpoint on a free
    loopback port, which ``tep up`` polls to tell when the stack is ready. With ``creds_dir``
    (the embedded server's credentials) each role gets its own nkey; otherwise the identity
    flags given to ``tep up`` are passed on.
    Executors may call loopback targets unless ``TEP_EXECUTOR_ALLOW_CIDRS`` says otherwise.
    With ``api``, ``tep api`` runs too, as the client identity (and the admin one for schedule
    writes), letting in the stack's token; its own ``/healthz`` is its health endpoint.
    """
    environ = environ if environ is not None else {}
    base = [sys.executable, "-m", "tep.cli.main"]
    env = {"TEP_NATS_URL": nats_url, "TEP_LOG_FORMAT": "json"}
    if creds_dir is None:
        for field, variable in _PASSED_THROUGH.items():
            value = getattr(args, field, None)
            if value is not None:
                env[variable] = str(value)
    url = ["--nats-url", nats_url]

    def role(name: str, command: str, identity: Role, *extra: str) -> ChildSpec:
        port = find_free_port()
        health = ["--health-port", str(port), "--health-host", "127.0.0.1"]
        argv = [*base, command, *url, *health, *extra]
        child_env = dict(env)
        if creds_dir is not None:
            child_env["TEP_NKEY"] = str(seed_path(creds_dir, identity))
        if identity is Role.EXECUTOR and "TEP_EXECUTOR_ALLOW_CIDRS" not in environ:
            child_env["TEP_EXECUTOR_ALLOW_CIDRS"] = json.dumps(list(LOOPBACK_CIDRS))
        return ChildSpec(name, argv, child_env, health_url=f"http://127.0.0.1:{port}/healthz")

    specs = [
        role(_numbered("orchestrator", n, args.orchestrators), "orchestrator", Role.ORCHESTRATOR)
        for n in range(1, args.orchestrators + 1)
    ]
    handler_args = [arg for module in args.handlers for arg in ("--handlers", module)]
    # In-flight calls must be handed back before the supervisor's grace period ends.
    grace = ["--shutdown-grace", str(CHILD_GRACE_S - 1)]
    for n in range(1, args.executors + 1):
        name = _numbered("executor", n, args.executors)
        specs.append(role(name, "executor", Role.EXECUTOR, *grace, *handler_args))
    specs.append(role("projector", "projector", Role.PROJECTOR))
    if api is not None:
        tokens = ["--tokens-file", str(api.credential.tokens_file)]
        listen = ["--host", "127.0.0.1", "--port", str(api.port)]
        api_env = dict(env)
        if creds_dir is not None:
            api_env["TEP_NKEY"] = str(seed_path(creds_dir, Role.CLIENT))
            api_env["TEP_API_ADMIN_NKEY"] = str(seed_path(creds_dir, Role.ADMIN))
        argv = [*base, "api", *url, *listen, *tokens]
        specs.append(ChildSpec("api", argv, api_env, health_url=f"{api.url}/healthz"))
    if args.with_demo_target:
        demo = [*base, "demo-target", "--port", str(args.demo_port)]
        health_url = f"http://127.0.0.1:{args.demo_port}/health"
        specs.append(ChildSpec("demo-target", demo, env, health_url=health_url))
    return specs


def _numbered(role: str, n: int, count: int) -> str:
    """A child's name: the role alone when it runs once, ``role-n`` among several."""
    return role if count == 1 else f"{role}-{n}"


class LineRenderer:
    """Child output, tagged with the child's name: readable on a terminal, JSON otherwise.

    Children log JSON lines; on a terminal each becomes ``HH:MM:SS name level message k=v``,
    elsewhere the JSON gains a ``proc`` field. Lines that are not JSON are prefixed.
    """

    _SKIP = frozenset({"ts", "level", "logger", "msg", "role", "proc"})

    def __init__(self, json_output: bool, width: int) -> None:
        self.json_output = json_output
        self.width = width

    def __call__(self, name: str, line: str) -> None:
        """Write one child line to stderr."""
        sys.stderr.write(self.render(name, line) + "\n")
        sys.stderr.flush()

    def render(self, name: str, line: str) -> str:
        """The line as it is written."""
        entry: Any = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
        if self.json_output:
            if not isinstance(entry, dict):
                entry = {"ts": datetime.now().astimezone().isoformat(), "msg": line}
            return json.dumps({"proc": name, **entry}, default=str)
        if not isinstance(entry, dict):
            return f"{datetime.now():%H:%M:%S} {name:<{self.width}} {line}"
        stamp = _clock(entry.get("ts"))
        extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in self._SKIP)
        text = f"{stamp} {name:<{self.width}} {entry.get('level', 'info'):7} {entry.get('msg', '')}"
        return f"{text}  {extras}" if extras else text


def _clock(timestamp: object) -> str:
    if isinstance(timestamp, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(timestamp).astimezone().strftime("%H:%M:%S")
    return datetime.now().strftime("%H:%M:%S")
