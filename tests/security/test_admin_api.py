"""The admin API's doors, completing tests/e2e: what the signed webhook path refuses, and that
a signature never opens any other route (routes enumerated from the app's router)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.triggers.auth import PUBLIC_PATHS, sign
from tests.e2e.conftest import fast_emulator, fetch_all, settings_for
from tests.e2e.serving import FAST, WEBHOOK_SECRET, Served, leading, serve_app

__all__ = ["fast_emulator", "settings_for"]
BODY = json.dumps({"type": "user.updated", "id": "x1"}).encode()


@pytest.fixture
async def served(db: Any, settings_for: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serve_app(settings_for(**FAST)) as running:
        await leading(running)
        yield running


async def post_signed(served: Served, body: bytes, stamp: str, signature: str) -> int:
    headers = {"X-UserSync-Timestamp": stamp, "X-UserSync-Signature": signature}
    async with served.anonymous.post(served.base_url + "/events", data=body, headers=headers) as r:
        assert r.content_type == "application/json"
        return r.status


ODD_STAMPS = {"superscript timestamp": "²", "401 digits": "9" * 401, "5000 digits": "1" * 5000}


@pytest.mark.parametrize(
    "tamper",
    [
        *("changed body", "wrong secret", "old timestamp", "future timestamp", "no timestamp"),
        *sorted(ODD_STAMPS),
    ],
)
async def test_a_signed_webhook_is_refused_when(served: Served, engine: AsyncEngine, tamper: str):
    now = int(time.time())
    stamp = str(now - 3600 if tamper == "old timestamp" else now)
    stamp = str(now + 3600) if tamper == "future timestamp" else stamp
    stamp = ODD_STAMPS.get(tamper, stamp)
    secret = "another-secret-0123456789" if tamper == "wrong secret" else WEBHOOK_SECRET
    signature = sign(secret, timestamp=stamp, body=BODY)
    body = BODY.replace(b"x1", b"x2") if tamper == "changed body" else BODY
    stamp = "" if tamper == "no timestamp" else stamp

    assert await post_signed(served, body, stamp, signature) in (401, 403)
    assert await fetch_all(engine, "SELECT id FROM user_event") == []


@pytest.mark.parametrize("path", ["/events", "/sync"])
async def test_a_deeply_nested_body_is_a_bad_request(
    served: Served, engine: AsyncEngine, path: str
):
    async with served.http.post(served.base_url + path, data=b"[" * 100_000) as response:
        assert response.status == 400
        assert "too deeply" in (await response.json())["message"]
    assert await fetch_all(engine, "SELECT id FROM user_event") == []


async def test_a_valid_signature_opens_no_route_but_events(served: Served):
    stamp = str(int(time.time()))
    headers = {
        "X-UserSync-Timestamp": stamp,
        "X-UserSync-Signature": sign(WEBHOOK_SECRET, timestamp=stamp, body=b""),
    }
    routes = {
        (r.method, r.resource.canonical)
        for r in served.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    protected = [r for r in routes if r[1] not in PUBLIC_PATHS | {"/events"}]
    assert protected
    for method, path in sorted(protected):
        url = served.base_url + re.sub(r"\{[^}]+\}", "1", path)
        async with served.anonymous.request(method, url, headers=headers) as response:
            assert response.status == 401, (method, path)
        basic = {"Authorization": "Basic dXNlcjpwYXNz"}
        async with served.anonymous.request(method, url, headers=basic) as response:
            assert response.status == 401, (method, path)
