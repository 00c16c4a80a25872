"""docs/configuration.md is generated from the settings classes and kept current."""

from __future__ import annotations

from eventstore.config import TepSettings
from executor.config import ExecutorConfig
from orchestrator.config import OrchestratorConfig
from tep.config_docs import DEFAULT_PATH, render, stale


def test_committed_configuration_reference_is_current() -> None:
    assert not stale(), "run `python -m tep.config_docs` and commit docs/configuration.md"


def test_every_setting_is_documented_with_its_variable() -> None:
    text = render()
    for cls in (TepSettings, OrchestratorConfig, ExecutorConfig):
        for name, info in cls.model_fields.items():
            assert f"`{cls.variable(name)}`" in text
            assert info.description, f"{cls.__name__}.{name} has no description"
    assert DEFAULT_PATH.name == "configuration.md"


def test_executor_output_limit_keeps_its_historic_variable() -> None:
    assert ExecutorConfig.variable("max_output_bytes") == "TEP_MAX_OUTPUT_BYTES"
    assert ExecutorConfig.from_env({"TEP_MAX_OUTPUT_BYTES": "2048"}).max_output_bytes == 2048
    assert OrchestratorConfig.from_env({"TEP_ORCHESTRATOR_LEASE_S": "9"}).lease_s == 9.0
