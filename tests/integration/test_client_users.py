"""The client's operations over real HTTP against the emulator, in all three URL forms."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from service.config import Settings
from service.conversations import NotFound
from service.conversations.endpoints import ApiFlavor
from service.emulator import RunningEmulator
from service.remote import conversations_client
from tests.fixtures.emulator import TEST_API_KEY_SECRET, TEST_API_KEY_SID
from tests.integration.client_factory import ALL_FORMS, Form, target

SPECIAL_IDENTITIES = [
    "with space",
    "slash/inside",
    "per%cent",
    "50%25 already-encoded-looking",
    "plus+sign",
    "question?mark=1&x=2",
    "hash#fragment",
    "dots/../..",
    "ünïcødé-日本語-😀",
    "mail+tag@example.com",
]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def remote_identities(running: RunningEmulator, service_sid: str | None) -> list[str]:
    return [user["identity"] for user in running.emulator.users(service_sid)]


@pytest.mark.parametrize("form", ALL_FORMS, ids=lambda f: f.value)
async def test_creates_fetches_updates_and_deletes_a_user_in_every_url_form(
    emulator: RunningEmulator, http: aiohttp.ClientSession, form: Form
) -> None:
    t = target(emulator, http, form=form)
    created = await t.client.create_user("alice", friendly_name="Alice", attributes='{"a": 1}')
    assert remote_identities(emulator, t.service_sid) == ["alice"]
    fetched = await t.client.fetch_user(created.sid)
    assert fetched == created
    assert (created.identity, created.friendly_name, created.attributes) == (
        "alice",
        "Alice",
        '{"a": 1}',
    )
    updated = await t.client.update_user(created.sid, friendly_name="Alice B.")
    assert updated.friendly_name == "Alice B."
    await t.client.delete_user(created.sid)
    assert remote_identities(emulator, t.service_sid) == []


async def test_sid_forms_touch_only_their_own_service(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    v1 = target(emulator, http, form=Form.V1_SERVICE)
    v2 = target(emulator, http, form=Form.CHAT_V2)
    await v1.client.create_user("in-v1-service")
    await v2.client.create_user("in-v2-service")
    assert remote_identities(emulator, None) == []
    assert remote_identities(emulator, v1.service_sid) == ["in-v1-service"]
    assert remote_identities(emulator, v2.service_sid) == ["in-v2-service"]


@pytest.mark.parametrize("form", ALL_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("identity", SPECIAL_IDENTITIES)
async def test_addresses_a_user_by_an_identity_with_special_characters(
    emulator: RunningEmulator, http: aiohttp.ClientSession, form: Form, identity: str
) -> None:
    t = target(emulator, http, form=form)
    created = await t.client.create_user(identity)
    assert created.identity == identity
    assert (await t.client.fetch_user(identity)).sid == created.sid
    assert (await t.client.update_user(identity, friendly_name="F")).sid == created.sid
    await t.client.delete_user(identity)
    assert remote_identities(emulator, t.service_sid) == []
    with pytest.raises(NotFound):
        await t.client.fetch_user(identity)


async def test_an_identity_is_never_confused_with_a_sibling_path(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    await t.client.create_user("a")
    with pytest.raises(NotFound):
        await t.client.fetch_user("a/../a")


async def test_update_sends_only_the_fields_given(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    roles = {role.friendly_name: role.sid for role in await t.client.list_roles()}
    created = await t.client.create_user(
        "bob", friendly_name="Bob", attributes='{"team": "x"}', role_sid=roles["service admin"]
    )
    updated = await t.client.update_user("bob", attributes='{"team": "y"}')
    assert (updated.friendly_name, updated.role_sid) == ("Bob", created.role_sid)
    assert json.loads(updated.attributes) == {"team": "y"}
    updated = await t.client.update_user("bob", role_sid=roles["service user"])
    assert (updated.friendly_name, updated.role_sid) == ("Bob", roles["service user"])
    assert json.loads(updated.attributes) == {"team": "y"}


async def test_create_without_optional_fields_takes_the_service_defaults(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    roles = {role.friendly_name: role.sid for role in await t.client.list_roles()}
    user = await t.client.create_user("carol")
    assert (user.friendly_name, user.attributes) == (None, "{}")
    assert user.role_sid == roles["service user"]


@pytest.mark.parametrize(
    ("form", "users", "pages"),
    [(Form.V1_DEFAULT, 120, 3), (Form.V1_SERVICE, 100, 2), (Form.CHAT_V2, 120, 2)],
    ids=["v1-default-50-per-page", "v1-service-exact-multiple", "chat-v2-100-per-page"],
)
async def test_lists_every_user_across_pages_at_the_largest_page_size(
    emulator: RunningEmulator, http: aiohttp.ClientSession, form: Form, users: int, pages: int
) -> None:
    t = target(emulator, http, form=form)
    identities = [f"user-{n:04d}" for n in range(users)]
    emulator.emulator.seed_users([{"identity": i} for i in identities], service_sid=t.service_sid)
    listed = [page async for page in t.client.iter_user_pages()]
    assert len(listed) == pages
    assert [user.identity for page in listed for user in page] == identities
    assert emulator.emulator.stats["list_users"] == pages


async def test_lists_no_users_as_one_empty_page(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    assert [page async for page in t.client.iter_user_pages()] == [[]]


@pytest.mark.parametrize("form", ALL_FORMS, ids=lambda f: f.value)
async def test_lists_the_roles_of_the_service(
    emulator: RunningEmulator, http: aiohttp.ClientSession, form: Form
) -> None:
    t = target(emulator, http, form=form)
    roles = await t.client.list_roles()
    expected = {role["sid"] for role in emulator.emulator.roles(t.service_sid)}
    assert {role.sid for role in roles} == expected
    service_type = "deployment" if form.api is ApiFlavor.CHAT_V2 else "service"
    assert {"service admin", "service user"} <= {
        r.friendly_name for r in roles if r.type == service_type
    }


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("form", ALL_FORMS, ids=lambda f: f.value)
async def test_sends_the_webhook_header_on_the_writes_the_spec_allows(
    emulator: RunningEmulator, http: aiohttp.ClientSession, form: Form, enabled: bool
) -> None:
    t = target(emulator, http, form=form, webhook_enabled=enabled)
    await t.client.create_user("dave")
    await t.client.update_user("dave", friendly_name="Dave")
    await t.client.delete_user("dave")
    stats = emulator.emulator.stats
    sent = 2 if form is Form.CHAT_V2 else 3  # Chat v2's delete takes no such header
    assert stats["webhook_enabled" if enabled else "webhook_disabled"] == sent
    assert stats["webhook_disabled" if enabled else "webhook_enabled"] == 0


async def test_authenticates_with_an_api_key(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, credentials=(TEST_API_KEY_SID, TEST_API_KEY_SECRET))
    await t.client.create_user("erin")
    assert remote_identities(emulator, None) == ["erin"]


async def test_is_built_from_settings(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    service_sid = emulator.emulator.create_service()
    settings = Settings(
        account_sid=emulator.config.account_sid,
        auth_token=emulator.config.auth_token,
        api=ApiFlavor.CHAT_V2,
        service_sid=service_sid,
        api_base_url=emulator.base_url + "/",
        webhook_enabled=True,
    )
    client = conversations_client(http, settings)
    assert (client.api, client.service_sid) == (ApiFlavor.CHAT_V2, service_sid)
    await client.create_user("frank")
    assert remote_identities(emulator, service_sid) == ["frank"]
    assert emulator.emulator.stats["webhook_enabled"] == 1
    assert client.limiter.ceiling == client.limiter.rate == settings.write_rate
    assert client.stats.total == 1
