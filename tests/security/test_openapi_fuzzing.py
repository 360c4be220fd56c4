"""schemathesis against our own `/openapi.json`: no request, however malformed, gets a 5xx, and
every answer (status, content type, body, headers) is what the description says.

Real bugs it found: 405s without `Allow`, 500s on a non-string event type, on run ids past
bigint or written in non-ASCII digits, and on NUL characters or lone surrogates in ids and keys.
Three runs, each bounded in count (no example database, no deadline):
- each operation alone, `EXAMPLES` generated requests each;
- the stateful run: for each link of the description (a run started -> that run, a user
  synced -> that user, an event queued -> that user synced, ...), `LINKED` generated calls,
  each followed by the call its answer links to;
- the signed webhook with any timestamp header (`TIMESTAMPS` of them), which the description
  cannot generate: it names the header only as a security scheme.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from service.config import Settings
from service.db.engine import create_engine
from service.triggers.auth import sign
from service.triggers.openapi import spec
from tests.e2e.serving import TOKEN, WEBHOOK_SECRET
from tests.security.served import served_in_thread

EXAMPLES = 60
LINKED = 15
RARELY_REACHED = {("/sync/users/{key}", 202)}
"""Links from answers random calls seldom get (a user's sync outlasting its timeout)."""
TIMESTAMPS = 60
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
# unknown query parameters and headers are ignored by design, not refused
EXCLUDED = [schemathesis.checks.negative_data_rejection]
BOUNDED = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
schema = schemathesis.openapi.from_dict(spec(Settings(_env_file=None)))


KNOWN_USER = "fuzz-known-user"
"""A source row, so that generated calls on users can reach one that exists."""


async def _source_row(database_url: str, sql: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql), {"id": KNOWN_USER})
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    asyncio.run(
        _source_row(
            database_url,
            "INSERT INTO internal_users (id, identity, attributes, active)"
            " VALUES (:id, :id, '{}', true)",
        )
    )
    try:
        with served_in_thread(database_url) as url:
            yield url
    finally:
        asyncio.run(_source_row(database_url, "DELETE FROM internal_users WHERE id = :id"))


@schema.parametrize()
@settings(BOUNDED, max_examples=EXAMPLES)
def test_every_operation_answers_as_described_and_never_with_a_server_error(
    case: schemathesis.Case, base_url: str
) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTHORIZED, excluded_checks=EXCLUDED)


DESCRIPTION = spec(Settings(_env_file=None))
OPERATIONS = {
    operation["operationId"]: (path, method.upper())
    for path, item in DESCRIPTION["paths"].items()
    for method, operation in item.items()
    if "operationId" in operation
}
LINKS = [
    pytest.param(
        path, method.upper(), int(status), link, id=f"{method.upper()} {path} {status} {name}"
    )
    for path, item in DESCRIPTION["paths"].items()
    for method, operation in item.items()
    for status, response in operation["responses"].items()
    for name, link in response.get("links", {}).items()
]


def _resolve(expression: str, case: schemathesis.Case, response: Any) -> Any:
    """The value of a link's runtime expression (the forms our description uses), or None."""
    source, _, pointer = expression.partition("#")
    if source == "$request.path.key":
        return case.path_parameters["key"] if case.path_parameters else None
    document = {"$response.body": response.json, "$request.body": lambda: case.body}[source]()
    for part in pointer.strip("/").split("/"):
        if isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            return None
    return document


@pytest.mark.parametrize(("path", "method", "status", "link"), LINKS)
def test_following_each_link_answers_as_described_and_never_with_a_server_error(
    base_url: str, path: str, method: str, status: int, link: dict[str, Any]
) -> None:
    """The stateful run: a generated call, then the call its answer links to, with the values
    it returned (a run started -> that run, a user synced -> that user, ...). Driven here, not
    by schemathesis' state machine: Hypothesis replays a machine's choices and, the server
    keeping state, calls the scenario flaky."""
    followed = []
    target = schema[OPERATIONS[link["operationId"]][0]][OPERATIONS[link["operationId"]][1]]

    @given(case=schema[path][method].as_strategy(), known=st.booleans())
    @settings(BOUNDED, max_examples=LINKED)
    def walk(case: schemathesis.Case, known: bool) -> None:
        if known and case.path_parameters and "key" in case.path_parameters:
            case.path_parameters["key"] = KNOWN_USER
        response = case.call_and_validate(
            base_url=base_url, headers=AUTHORIZED, excluded_checks=EXCLUDED
        )
        if response.status_code != status:
            return
        values = {name: _resolve(e, case, response) for name, e in link["parameters"].items()}
        if any(v is None for v in values.values()):
            return
        follow = target.Case(path_parameters={k: str(v) for k, v in values.items()})
        follow.call_and_validate(base_url=base_url, headers=AUTHORIZED, excluded_checks=EXCLUDED)
        followed.append(values)

    walk()
    assert followed or (path, status) in RARELY_REACHED, "no generated call reached the link"


LATIN_1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
SENDABLE = re.compile(r"\S[^\r\n]*|")
"""What `requests` lets through as a header value (it refuses a leading space of any kind,
NEL and NBSP included, before anything is sent)."""


@given(
    stamp=st.one_of(
        st.text(LATIN_1, max_size=40).filter(SENDABLE.fullmatch),
        st.text("0123456789", min_size=1, max_size=6000),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
        st.just(str(int(time.time()))),
    )
)
@settings(BOUNDED, max_examples=TIMESTAMPS)
def test_a_signed_webhook_with_any_timestamp_is_accepted_or_refused_never_a_server_error(
    stamp: str, base_url: str
) -> None:
    body = json.dumps({"type": "user.updated", "id": "stamped"}).encode()
    headers = {
        "X-UserSync-Timestamp": stamp,
        "X-UserSync-Signature": sign(WEBHOOK_SECRET, timestamp=stamp.strip(), body=body),
        "Content-Type": "application/json",
    }
    response = requests.post(base_url + "/events", data=body, headers=headers, timeout=10)
    assert response.status_code in (202, 401, 403), (stamp, response.text)
    assert set(response.json()) >= ({"event_ids"} if response.ok else {"error", "message"})
