"""TepSettings from the environment, and the embedded server's error paths."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from eventstore.config import TepSettings
from eventstore.errors import ServerBinaryNotFoundError, SettingsError
from tep.server import EmbeddedServer, find_free_port, find_server_binary


def test_settings_read_tep_variables_and_flags_win() -> None:
    settings = TepSettings.from_env(
        {"TEP_REPLICAS": "3", "TEP_MAX_ACTIONS": "10", "TEP_NATS_URL": "nats://a:1"},
        nats_url="nats://b:2",
    )
    assert (settings.replicas, settings.max_actions, settings.nats_url) == (3, 10, "nats://b:2")


def test_invalid_setting_names_the_field() -> None:
    with pytest.raises(SettingsError, match="replicas"):
        TepSettings.from_env({"TEP_REPLICAS": "many"})
    with pytest.raises(SettingsError, match="replicas must be 1, 3 or 5"):
        TepSettings.from_env({"TEP_REPLICAS": "2"})
    with pytest.raises(SettingsError, match="max_plan_bytes"):
        TepSettings.from_env({"TEP_MAX_PLAN_BYTES": "2000000"})


def test_missing_server_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEP_NATS_SERVER_BIN", str(tmp_path / "absent"))
    with pytest.raises(ServerBinaryNotFoundError, match="TEP_NATS_SERVER_BIN"):
        find_server_binary()


def test_server_starts_listens_and_stops(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "data")
    server.start()
    pid = server.pid
    assert pid is not None and server.url.endswith(f":{server.port}")
    server.stop()
    assert server.pid is None
    assert (tmp_path / "data" / "jetstream").is_dir()


def test_a_free_port_is_picked_outside_the_range_of_outgoing_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A port from that range can be taken by any client's connection before its server binds
    # it: parallel tests and `tep up`'s children then failed with "address already in use".
    monkeypatch.delenv("TEP_PORT_RANGE", raising=False)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [find_free_port() for _ in range(20)]

    if low > 10_001:
        assert all(10_000 <= port < low for port in ports), ports
    assert len(set(ports)) > 1  # not one fixed sequence
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free, as promised


def test_a_port_range_of_its_own_is_kept_to_and_a_bad_one_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEP_PORT_RANGE", "41000-41009")
    assert {find_free_port() for _ in range(20)} <= set(range(41000, 41010))

    for bad in ("41000", "41009-41000", "80-90", "a-b"):
        monkeypatch.setenv("TEP_PORT_RANGE", bad)
        with pytest.raises(SettingsError, match="TEP_PORT_RANGE"):
            find_free_port()
