"""Listing users: Twilio's page meta, absolute URLs, page sizes, and paging that stays correct
while users are created and deleted between page requests."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from service.emulator import RunningEmulator

USERS = "/v1/Users"


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def walk(http: aiohttp.ClientSession, first: str) -> list[dict[str, Any]]:
    """Every page from `first`, following `meta.next_page_url` verbatim."""
    pages = []
    url: str | None = first
    while url:
        status, page = await get_json(http, url)
        assert status == 200
        pages.append(page)
        url = page["meta"]["next_page_url"]
    return pages


def seed(running: RunningEmulator, count: int, *, prefix: str = "user") -> None:
    running.emulator.seed_users({"identity": f"{prefix}{i:05d}"} for i in range(count))


async def test_first_page_meta_has_absolute_urls_and_the_users_key(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 3)
    status, page = await get_json(emulator_http, f"{USERS}?PageSize=2")
    assert status == 200
    meta = page["meta"]
    assert meta["key"] == "users"
    assert (meta["page"], meta["page_size"]) == (0, 2)
    assert meta["first_page_url"] == f"{emulator.base_url}{USERS}?PageSize=2&Page=0"
    assert meta["url"] == meta["first_page_url"]
    assert meta["previous_page_url"] is None
    assert meta["next_page_url"].startswith(
        f"{emulator.base_url}{USERS}?PageSize=2&Page=1&PageToken="
    )
    assert [u["identity"] for u in page["users"]] == ["user00000", "user00001"]
    assert all(u["is_online"] is None and u["is_notifiable"] is None for u in page["users"])


async def test_walking_next_page_urls_lists_every_user_once_in_creation_order(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 120)
    pages = await walk(emulator_http, f"{USERS}?PageSize=50")
    assert [len(p["users"]) for p in pages] == [50, 50, 20]
    assert [p["meta"]["page"] for p in pages] == [0, 1, 2]
    identities = [u["identity"] for p in pages for u in p["users"]]
    assert identities == [f"user{i:05d}" for i in range(120)]


async def test_previous_page_url_leads_back_to_the_previous_page(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 7)
    _, first = await get_json(emulator_http, f"{USERS}?PageSize=3")
    _, second = await get_json(emulator_http, first["meta"]["next_page_url"])
    _, back = await get_json(emulator_http, second["meta"]["previous_page_url"])
    assert back["users"] == first["users"]
    assert back["meta"]["page"] == 0
    assert back["meta"]["previous_page_url"] is None


async def test_paging_is_stable_while_users_are_created_and_deleted_between_pages(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    """No user present for the whole walk is skipped or repeated (an offset would do both)."""
    seed(emulator, 100)
    emulator.emulator.set_write_limit(None)
    _, page = await get_json(emulator_http, f"{USERS}?PageSize=10")
    seen = [u["identity"] for u in page["users"]]
    deleted: set[str] = set()
    round_ = 0
    while page["meta"]["next_page_url"]:
        # delete two already-seen users and one not yet seen, create a new one
        for identity in (seen[2 * round_], seen[2 * round_ + 1]):
            async with emulator_http.delete(f"{USERS}/{identity}") as response:
                assert response.status == 204
        unseen = f"user{99 - round_:05d}"
        async with emulator_http.delete(f"{USERS}/{unseen}") as response:
            assert response.status == 204
        deleted |= {seen[2 * round_], seen[2 * round_ + 1], unseen}
        async with emulator_http.post(USERS, data={"Identity": f"new{round_}"}) as response:
            assert response.status == 201
        _, page = await get_json(emulator_http, page["meta"]["next_page_url"])
        seen += [u["identity"] for u in page["users"]]
        round_ += 1

    assert len(seen) == len(set(seen)), "a user was listed twice"
    always_there = {f"user{i:05d}" for i in range(100)} - deleted
    assert always_there <= set(seen), "a user present all along was skipped"


@pytest.mark.parametrize(
    ("path", "asked", "served"),
    [
        ("/v1/Users", 1000, 50),
        ("/v1/Services/{sid}/Users", 51, 50),
        ("/v2/Services/{sid}/Users", 1000, 100),
        ("/v2/Services/{sid}/Users", 100, 100),
    ],
)
async def test_page_size_above_the_maximum_is_clamped(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    path: str,
    asked: int,
    served: int,
) -> None:
    seed(emulator, 150)
    url = path.format(sid=emulator.config.default_service_sid)
    _, page = await get_json(emulator_http, f"{url}?PageSize={asked}")
    assert page["meta"]["page_size"] == served
    assert len(page["users"]) == served


async def test_default_page_size_is_50(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 60)
    _, page = await get_json(emulator_http, USERS)
    assert (page["meta"]["page_size"], len(page["users"])) == (50, 50)


@pytest.mark.parametrize("query", ["PageSize=0", "PageSize=abc", "Page=-1", "PageToken=garbage"])
async def test_invalid_paging_parameters_are_400(
    emulator_http: aiohttp.ClientSession, query: str
) -> None:
    status, body = await get_json(emulator_http, f"{USERS}?{query}")
    assert (status, body["code"]) == (400, 20001)


async def test_empty_list_has_no_next_page(emulator_http: aiohttp.ClientSession) -> None:
    _, page = await get_json(emulator_http, USERS)
    assert page["users"] == []
    assert page["meta"]["next_page_url"] is None


async def test_the_last_full_page_has_no_next_page_url(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 4)
    pages = await walk(emulator_http, f"{USERS}?PageSize=2")
    assert [len(p["users"]) for p in pages] == [2, 2]


async def test_page_token_is_opaque_and_carries_no_offset(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seed(emulator, 3)
    _, page = await get_json(emulator_http, f"{USERS}?PageSize=1")
    query = parse_qs(urlsplit(page["meta"]["next_page_url"]).query)
    assert query["PageToken"][0].startswith("PT")
    assert query["Page"] == ["1"]


async def test_a_hundred_thousand_users_page_from_any_depth(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    """Speed is measured in bench/bench_emulator.py; here only that deep lists page right."""
    seed(emulator, 100_000)
    _, first = await get_json(emulator_http, f"{USERS}?PageSize=50")
    _, second = await get_json(emulator_http, first["meta"]["next_page_url"])
    assert second["users"][0]["identity"] == "user00050"
    assert len(emulator.emulator.users()) == 100_000
