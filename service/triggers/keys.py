"""Typed keys of what the composition root puts in the application for the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.metrics import Metrics
from service.triggers.leader import Leadership


@dataclass(slots=True)
class ServiceState:
    """The Service this replica serves, learnt once at start; until then it may not lead."""

    sid: str | None = None
    problem: str | None = None
    """Why it is not known yet (the last failed attempt), for `/readyz`."""


SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
LEADERSHIP = web.AppKey("leadership", Leadership)
SERVICE = web.AppKey("service", ServiceState)
HEAD_REVISION: web.AppKey[str | None] = web.AppKey("head_revision")
"""The migration the code expects; `/readyz` compares the database's with it."""
