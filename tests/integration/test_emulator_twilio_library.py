"""The official `twilio` library, unchanged but for its base URL, works against the emulator.

The library is synchronous (requests), so each scenario runs in a worker thread while the
emulator serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from service.emulator import RunningEmulator
from tests.fixtures.emulator import TEST_API_KEY_SECRET, TEST_API_KEY_SID


@contextmanager
def twilio_client(
    running: RunningEmulator, *, username: str | None = None, password: str | None = None
) -> Iterator[Client]:
    client = Client(
        username or running.config.account_sid,
        password or running.config.auth_token,
        account_sid=running.config.account_sid,
    )
    client.conversations.base_url = running.base_url
    client.chat.base_url = running.base_url
    try:
        yield client
    finally:
        client.http_client.session.close()


def users_of(client: Client, kind: str, service_sid: str) -> Any:
    if kind == "conversations-default":
        return client.conversations.v1.users
    if kind == "conversations-service":
        return client.conversations.v1.services(service_sid).users
    return client.chat.v2.services(service_sid).users


def crud_round_trip(users: Any) -> dict[str, Any]:
    """Create, fetch (sid and identity), list over pages, update, delete; what was seen."""
    created = users.create(
        identity="alice@example.com",
        friendly_name="Alice",
        attributes=json.dumps({"team": "a"}),
        x_twilio_webhook_enabled="true",
    )
    by_sid = users(created.sid).fetch()
    by_identity = users("alice@example.com").fetch()
    listed = users.list(page_size=3)
    streamed = [user.identity for user in users.stream(page_size=3)]
    updated = users(created.sid).update(friendly_name="Alice A.")
    deleted = users("alice@example.com").delete()
    return {
        "created": created,
        "by_sid": by_sid,
        "by_identity": by_identity,
        "listed": [user.identity for user in listed],
        "streamed": streamed,
        "updated": updated,
        "deleted": deleted,
    }


def rest_error(call: Callable[[], object]) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("kind", ["conversations-default", "conversations-service", "chat-v2"])
async def test_the_official_library_creates_lists_updates_and_deletes(
    emulator: RunningEmulator, kind: str
) -> None:
    service_sid = emulator.config.default_service_sid
    emulator.emulator.seed_users({"identity": f"seed{i}"} for i in range(7))

    def scenario() -> dict[str, Any]:
        with twilio_client(emulator) as client:
            return crud_round_trip(users_of(client, kind, service_sid))

    seen = await asyncio.to_thread(scenario)

    created = seen["created"]
    assert created.sid.startswith("US")
    assert created.identity == "alice@example.com"
    assert json.loads(created.attributes) == {"team": "a"}
    assert seen["by_sid"].sid == seen["by_identity"].sid == created.sid
    expected = [f"seed{i}" for i in range(7)] + ["alice@example.com"]
    assert seen["listed"] == seen["streamed"] == expected
    assert seen["updated"].friendly_name == "Alice A."
    assert seen["deleted"] is True
    assert [u["identity"] for u in emulator.emulator.users()] == expected[:-1]
    stats = emulator.emulator.stats
    assert stats["list_users"] == 6  # 3 pages of 3 for list(), 3 for stream()
    assert stats["webhook_enabled"] == 1


@pytest.mark.parametrize("kind", ["conversations-default", "conversations-service", "chat-v2"])
async def test_the_official_library_raises_twilio_errors(
    emulator: RunningEmulator, kind: str
) -> None:
    service_sid = emulator.config.default_service_sid
    emulator.emulator.seed_users([{"identity": "taken"}])

    def scenario() -> list[TwilioRestException]:
        with twilio_client(emulator) as client:
            users = users_of(client, kind, service_sid)
            duplicate = rest_error(lambda: users.create(identity="taken"))
            missing = rest_error(lambda: users("nobody").fetch())
        with twilio_client(emulator, password="wrong") as client:
            unauthenticated = rest_error(
                lambda: users_of(client, kind, service_sid)("taken").fetch()
            )
        return [duplicate, missing, unauthenticated]

    duplicate, missing, unauthenticated = await asyncio.to_thread(scenario)
    assert (duplicate.status, duplicate.code) == (409, 50201)
    assert (missing.status, missing.code) == (404, 20404)
    assert (unauthenticated.status, unauthenticated.code) == (401, 20003)


async def test_the_official_library_authenticates_with_an_api_key(
    emulator: RunningEmulator,
) -> None:
    def scenario() -> str:
        with twilio_client(
            emulator, username=TEST_API_KEY_SID, password=TEST_API_KEY_SECRET
        ) as client:
            return str(client.conversations.v1.users.create(identity="k").identity)

    assert await asyncio.to_thread(scenario) == "k"


async def test_the_official_library_reads_roles(emulator: RunningEmulator) -> None:
    service_sid = emulator.config.default_service_sid

    def scenario() -> tuple[list[str], list[str]]:
        with twilio_client(emulator) as client:
            v1 = [role.type for role in client.conversations.v1.roles.list()]
            v2 = [role.type for role in client.chat.v2.services(service_sid).roles.list()]
            return v1, v2

    v1, v2 = await asyncio.to_thread(scenario)
    assert sorted(v1) == ["conversation", "conversation", "service", "service"]
    assert sorted(v2) == ["channel", "channel", "deployment", "deployment"]


async def test_the_official_library_fetches_and_updates_the_configuration(
    emulator: RunningEmulator,
) -> None:
    other = emulator.emulator.create_service("Other")

    def scenario() -> tuple[Any, Any, str]:
        with twilio_client(
            emulator, username=TEST_API_KEY_SID, password=TEST_API_KEY_SECRET
        ) as client:
            configuration = client.conversations.v1.configuration()
            fetched = configuration.fetch()
            updated = configuration.update(default_chat_service_sid=other)
            created = client.conversations.v1.users.create(identity="follows")
            return fetched, updated, str(created.chat_service_sid)

    fetched, updated, created_in = await asyncio.to_thread(scenario)
    assert fetched.default_chat_service_sid == emulator.config.default_service_sid
    assert fetched.account_sid == emulator.config.account_sid
    assert fetched.url == f"{emulator.base_url}/v1/Configuration"
    assert updated.default_chat_service_sid == other
    assert created_in == other
    stats = emulator.emulator.stats
    assert (stats["fetch_configuration"], stats["update_configuration"]) == (1, 1)


async def test_the_official_library_reads_attributes_text_unchanged(
    emulator: RunningEmulator,
) -> None:
    text = '{"huge":1E+400,"pi":3.14159265358979323846264338327950288,"tiny":1E-400}'
    emulator.emulator.seed_users([{"identity": "seeded", "attributes": text}])

    def scenario() -> list[str]:
        with twilio_client(emulator) as client:
            users = client.conversations.v1.users
            created = users.create(identity="created", attributes=text)
            fetched = users("seeded").fetch()
            listed = [user.attributes for user in users.list()]
            return [created.attributes, fetched.attributes, *listed]

    assert await asyncio.to_thread(scenario) == [text] * 4


def roles_of(client: Client, kind: str, service_sid: str) -> Any:
    if kind == "conversations-default":
        return client.conversations.v1.roles
    if kind == "conversations-service":
        return client.conversations.v1.services(service_sid).roles
    return client.chat.v2.services(service_sid).roles


ROLE_NAMES = {  # (service-level type, a permission, another) in each API's own words
    "conversations-default": ("service", "createConversation", "joinConversation"),
    "conversations-service": ("service", "createConversation", "joinConversation"),
    "chat-v2": ("deployment", "createChannel", "joinChannel"),
}


@pytest.mark.parametrize("kind", sorted(ROLE_NAMES))
async def test_the_official_library_creates_updates_and_deletes_custom_roles(
    emulator: RunningEmulator, kind: str
) -> None:
    service_sid = emulator.config.default_service_sid
    role_type, first, second = ROLE_NAMES[kind]

    def scenario() -> dict[str, Any]:
        with twilio_client(emulator) as client:
            roles = roles_of(client, kind, service_sid)
            created = roles.create(friendly_name="ops", type=role_type, permission=[first])
            user = users_of(client, kind, service_sid).create(identity="o", role_sid=created.sid)
            updated = roles(created.sid).update(permission=[first, second])
            fetched = roles(created.sid).fetch()
            listed = [role.friendly_name for role in roles.list()]
            deleted = roles(created.sid).delete()
            gone = rest_error(lambda: roles(created.sid).fetch())
            return {
                "created": created,
                "user": user,
                "updated": updated,
                "fetched": fetched,
                "listed": listed,
                "deleted": deleted,
                "gone": gone,
                "after": [role.friendly_name for role in roles.list()],
            }

    seen = await asyncio.to_thread(scenario)

    created = seen["created"]
    assert created.sid.startswith("RL")
    assert (created.friendly_name, created.type, created.permissions) == ("ops", role_type, [first])
    assert seen["user"].role_sid == created.sid
    assert seen["updated"].permissions == seen["fetched"].permissions == [first, second]
    assert "ops" in seen["listed"]
    assert seen["deleted"] is True
    assert (seen["gone"].status, seen["gone"].code) == (404, 20404)
    assert "ops" not in seen["after"]
    stats = emulator.emulator.stats
    assert (stats["create_role"], stats["update_role"], stats["delete_role"]) == (1, 1, 1)


@pytest.mark.parametrize("kind", sorted(ROLE_NAMES))
async def test_the_official_library_gets_twilio_errors_for_bad_roles(
    emulator: RunningEmulator, kind: str
) -> None:
    service_sid = emulator.config.default_service_sid
    role_type, first, _ = ROLE_NAMES[kind]
    default_role = emulator.emulator.service().default_role_sid

    def scenario() -> list[TwilioRestException]:
        with twilio_client(emulator) as client:
            roles = roles_of(client, kind, service_sid)
            return [
                rest_error(
                    lambda: roles.create(friendly_name="x", type="nope", permission=[first])
                ),
                rest_error(lambda: roles.create(friendly_name="x", type=role_type, permission=[])),
                rest_error(
                    lambda: roles.create(friendly_name="x", type=role_type, permission=["fly"])
                ),
                rest_error(
                    lambda: roles.create(friendly_name="", type=role_type, permission=[first])
                ),
                rest_error(lambda: roles(default_role).delete()),
                rest_error(lambda: roles("RL" + "0" * 32).update(permission=[first])),
            ]

    *bad, missing = await asyncio.to_thread(scenario)
    assert [(e.status, e.code) for e in bad] == [(400, 20001)] * 5
    assert (missing.status, missing.code) == (404, 20404)
    assert len(emulator.emulator.roles()) == 4
