"""What the dashboard keeps between requests: its sign-in sessions and its summaries' short-lived cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.dashboard.cache import SingleFlightCache
from router.dashboard.sessions import LocalSessions, Sessions

if TYPE_CHECKING:
    from router.storage.redis_health import RedisHealth


@dataclass
class DashboardState:
    """One proxy process's dashboard sessions (shared through Redis when there is one) and summary cache."""

    sessions: Sessions = field(default_factory=lambda: Sessions(LocalSessions()))
    summaries: SingleFlightCache[dict[str, Any]] = field(default_factory=SingleFlightCache)

    @classmethod
    def build(cls, health: RedisHealth | None, prefix: str) -> DashboardState:
        """Sessions in the shared Redis (`health`, under `prefix`) when there is one, else in this process."""
        return cls(sessions=Sessions.build(health, prefix))

    async def stop(self) -> None:
        """Close the sessions' connections."""
        await self.sessions.stop()
