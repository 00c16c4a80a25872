"""The plan registry from Python: put, read and list the plans sub-plan actions refer to.

A sub-plan action with ``"plan_ref": "<name>"`` runs the plan registered under that name when
the action starts (see :mod:`eventstore.plan_registry`). Plans are validated before they are
stored, as ``tep plan put`` does.

Example:
    >>> revision = await sm.put_plan("send-welcome", plan_document)  # doctest: +SKIP
    >>> (await sm.get_plan("send-welcome")).plan.id  # doctest: +SKIP
    'send-welcome'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventstore.config import TepSettings
from eventstore.jetstream.log import EventLog
from eventstore.jetstream.plan_registry import PlanRegistry
from eventstore.plan import Plan
from eventstore.plan_registry import PlanRegistryError, RegisteredPlan, plan_name_problem
from eventstore.plan_validation import parse_plan

__all__ = ["PlanRegistryOperations"]


class PlanRegistryOperations:
    """The plan registry methods of :class:`~projections.state_manager.StateManager`."""

    log: EventLog
    settings: TepSettings

    async def _registry(self, *, create: bool) -> PlanRegistry | None:
        nc, js = self.log.nc, self.log.js
        if create:
            # Opened first: creating needs rights a client identity may not have.
            opened = await PlanRegistry.open(nc, js)
            return opened or await PlanRegistry.ensure(nc, js, replicas=self.settings.replicas)
        return await PlanRegistry.open(nc, js)

    async def put_plan(self, name: str, plan: Plan | Mapping[str, Any] | str | bytes) -> int:
        """Validate ``plan`` and store it as the newest revision of ``name``; the revision.

        Raises:
            PlanRegistryError: ``name`` is not ``[A-Za-z0-9_-]{1,64}``.
            PlanValidationError: the plan is invalid (nothing stored; every problem listed).
        """
        problem = plan_name_problem(name)
        if problem is not None:
            raise PlanRegistryError(problem)
        parsed = parse_plan(plan, limits=self.settings.plan_limits)
        registry = await self._registry(create=True)
        assert registry is not None
        return await registry.put(name, parsed)

    async def get_plan(self, name: str) -> RegisteredPlan | None:
        """The plan registered as ``name`` (with its revision), or ``None``.

        Raises:
            PlanRegistryError: ``name`` is not a valid name, or its value is unreadable.
        """
        problem = plan_name_problem(name)
        if problem is not None:
            raise PlanRegistryError(problem)
        registry = await self._registry(create=False)
        return None if registry is None else await registry.get(name)

    async def list_plans(self) -> list[RegisteredPlan]:
        """Every registered plan, by name (values that cannot be read are left out)."""
        registry = await self._registry(create=False)
        if registry is None:
            return []
        plans, _ = await registry.read_all()
        return plans

    async def delete_plan(self, name: str) -> bool:
        """Remove ``name`` from the registry; whether it was there. Executions that already
        started its plan are not affected.

        Raises:
            PlanRegistryError: ``name`` is not a valid name.
        """
        problem = plan_name_problem(name)
        if problem is not None:
            raise PlanRegistryError(problem)
        registry = await self._registry(create=False)
        return registry is not None and await registry.delete(name)
