"""What `tep up` supervises: one child per role process, numbered when a role runs several."""

from __future__ import annotations

import argparse

from tep.cli.up_children import child_specs


def _args(orchestrators: int, executors: int) -> argparse.Namespace:
    return argparse.Namespace(
        orchestrators=orchestrators, executors=executors, handlers=[], with_demo_target=False
    )


def test_one_orchestrator_and_one_executor_keep_their_role_names() -> None:
    specs = child_specs(_args(1, 1), "nats://127.0.0.1:4222")

    assert [spec.name for spec in specs] == ["orchestrator", "executor", "projector"]


def test_several_orchestrators_each_get_a_numbered_name_and_a_health_port() -> None:
    specs = child_specs(_args(3, 2), "nats://127.0.0.1:4222")

    names = [spec.name for spec in specs]
    assert names == [
        "orchestrator-1",
        "orchestrator-2",
        "orchestrator-3",
        "executor-1",
        "executor-2",
        "projector",
    ]
    orchestrators = [spec for spec in specs if spec.name.startswith("orchestrator")]
    assert all(spec.argv[spec.argv.index("-m") + 2] == "orchestrator" for spec in orchestrators)
    assert len({spec.health_url for spec in specs}) == len(specs)
