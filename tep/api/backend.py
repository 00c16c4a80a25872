"""What the routes stand on: the StateManager (the client identity) and, for schedule writes,
an admin connection opened on first use. The API keeps no state of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from eventstore.access import Role
from eventstore.config import TepSettings
from eventstore.jetstream.connection import NatsClient, connect_as
from eventstore.jetstream.log import EventLog
from projections.state_manager import StateManager
from tep.api.auth import ApiProblem
from tep.api.config import ApiSettings
from tep.api.problems import forbidden

__all__ = ["ApiBackend", "admin_settings"]

_NO_ADMIN = (
    "changing schedules needs the admin identity, which this API server was not given "
    "(TEP_API_ADMIN_NKEY or TEP_API_ADMIN_CREDS)"
)


def admin_settings(settings: TepSettings, api: ApiSettings) -> TepSettings | None:
    """The settings of the admin connection for schedule writes, or ``None`` if there is none.

    An explicit admin credential wins; without one, a server connected to without an explicit
    identity (a local ``tep up``, or one without authentication) is asked as admin, the way
    ``tep schedule`` does; with another explicit identity there is no admin to be.
    """
    cleared = {"creds": None, "nkey": None, "user": None, "password": None}
    if api.admin_creds is not None:
        return settings.model_copy(update={**cleared, "creds": api.admin_creds})
    if api.admin_nkey is not None:
        return settings.model_copy(update={**cleared, "nkey": api.admin_nkey})
    if settings.creds is None and settings.nkey is None and settings.user is None:
        return settings
    return None


class ApiBackend:
    """The StateManager the routes read and write through, and the admin connection.

    Args:
        manager: an open StateManager.
        admin: the settings of the admin connection (``None``: schedule writes refused).
    """

    def __init__(self, manager: StateManager, admin: TepSettings | None) -> None:
        self.manager = manager
        self._admin_settings = admin
        self._admin: NatsClient | None = None
        self._admin_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the StateManager's connection is up."""
        return bool(self.manager.nc.is_connected)

    async def admin_log(self) -> EventLog:
        """The log on the admin connection (opened on first use).

        Raises:
            ApiProblem: 403, no admin identity was configured.
            NatsUnavailableError: the server refused or did not answer.
        """
        if self._admin_settings is None:
            raise ApiProblem(forbidden(_NO_ADMIN))
        async with self._admin_lock:
            if self._admin is None or self._admin.is_closed:
                self._admin = await connect_as(
                    self._admin_settings, Role.ADMIN, name="tep-api-admin"
                )
        return EventLog(self._admin, self._admin_settings)

    async def statuses(self, execution_ids: list[str]) -> Mapping[str, str]:
        """The view's status of each execution it holds."""
        found = {}
        for execution_id in execution_ids:
            state = await self.manager.get_execution_state(execution_id)
            if state is not None:
                found[execution_id] = state.status
        return found

    async def close(self) -> None:
        """Close the admin connection (the StateManager is its owner's to close)."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin.close(), 2.0)
            self._admin = None
