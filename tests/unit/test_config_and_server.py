"""TepSettings from the environment, and the embedded server's error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore.config import TepSettings
from eventstore.errors import ServerBinaryNotFoundError, SettingsError
from tep.server import EmbeddedServer, find_server_binary


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
