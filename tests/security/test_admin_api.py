"""The admin API's doors, completing tests/e2e: what the signed webhook path refuses, and that
a signature never opens any other route (routes enumerated from the app's router)."""

from __future__ import annotations

import io
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
JSON = {"Content-Type": "application/json"}


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
    nested = b"[" * 100_000
    async with served.http.post(served.base_url + path, data=nested, headers=JSON) as response:
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


@pytest.mark.parametrize("path", ["/events", "/sync"])
@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("multipart/form-data; boundary=x", "multipart/form-data"),
        ("application/octet-stream", "application/octet-stream"),
    ],
)
async def test_a_body_sent_as_another_media_type_is_415_and_nothing_happens(
    served: Served, engine: AsyncEngine, path: str, content_type: str, named: str
):
    headers = {"Content-Type": content_type}
    async with served.http.post(served.base_url + path, data=BODY, headers=headers) as response:
        assert response.status == 415
        answer = await response.json()
    assert answer == {
        "error": "unsupported_media_type",
        "message": f"the body must be sent as application/json, not {named}",
    }
    assert await fetch_all(engine, "SELECT id FROM user_event") == []
    assert await fetch_all(engine, "SELECT id FROM sync_run") == []


async def test_json_with_a_charset_or_without_a_content_type_is_read(served: Served):
    for headers in ({"Content-Type": "application/json; charset=utf-8"}, {}):
        async with served.http.post(
            served.base_url + "/events",
            data=BODY,
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response:
            assert response.status == 202, await response.text()


async def status_of(served: Served, method: str, path: str, **extra: Any) -> int:
    async with served.http.request(method, served.base_url + path, **extra) as response:
        assert response.content_type == "application/json"
        assert set(await response.json()) == {"error", "message"}
        return response.status


async def test_every_error_the_api_answers_is_declared_in_its_description(served: Served):
    """What the fuzzing cannot easily reach: a NUL in a key, a body too large, another
    media type, another method, each compared with the operation's declared responses."""
    paths = (await served.get_json("/openapi.json"))["paths"]
    text = {"data": BODY, "headers": {"Content-Type": "text/plain"}}
    large = {"data": io.BytesIO(b" " * (5 * 1024 * 1024)), "headers": JSON}
    answered = {
        ("/users/{key}", "get"): await status_of(served, "GET", "/users/a%00b"),
        ("/sync/users/{key}", "post"): await status_of(served, "POST", "/sync/users/a%00b"),
        ("/events", "post"): await status_of(served, "POST", "/events", **large),
        ("/sync", "post"): await status_of(served, "POST", "/sync", **text),
    }
    assert list(answered.values()) == [400, 400, 413, 415]
    for (path, method), status in answered.items():
        assert str(status) in paths[path][method]["responses"], (path, method, status)
    for path, operations in paths.items():
        for method, operation in operations.items():
            other = "DELETE" if method != "delete" else "PUT"
            assert (
                await status_of(served, other, path.replace("{key}", "a").replace("{run_id}", "1"))
                == 405
            )
            assert "405" in operation["responses"], (path, method)
