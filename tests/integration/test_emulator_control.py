"""The control API under /__emulator/ and the Python control surface it mirrors."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from service.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.fixtures.emulator import account_auth

USERS = "/v1/Users"


async def control(
    running: RunningEmulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(base_url=running.base_url) as http,
        http.request(method, f"/__emulator/{path}", json=body) as response,
    ):
        payload = await response.read()
        return response.status, (await response.json()) if payload else None


async def test_seed_then_state_lists_the_users(emulator: RunningEmulator) -> None:
    users = [{"identity": "a", "attributes": {"x": 1}}, {"identity": "b", "friendly_name": "B"}]
    status, seeded = await control(emulator, "POST", "seed", {"users": users})
    assert (status, seeded["count"]) == (201, 2)
    status, state = await control(emulator, "GET", "state")
    assert status == 200
    [default] = state["services"]
    assert default["sid"] == state["default_service_sid"] == emulator.config.default_service_sid
    assert [(u["identity"], u["attributes"]) for u in default["users"]] == [
        ("a", '{"x": 1}'),
        ("b", "{}"),
    ]
    assert len(default["roles"]) == 4


async def test_seeded_attributes_given_as_an_object_keep_their_numbers_exactly(
    emulator: RunningEmulator,
) -> None:
    pi = "3.14159265358979323846264338327950288"
    body = f'{{"users": [{{"identity": "a", "attributes": {{"pi": {pi}, "tiny": 1e-400}}}}]}}'
    async with (
        aiohttp.ClientSession(base_url=emulator.base_url) as http,
        http.post("/__emulator/seed", data=body) as response,
    ):
        assert response.status == 201
    emulator.emulator.seed_users([{"identity": "b", "attributes": {"pi": Decimal(pi)}}])

    stored = {u["identity"]: u["attributes"] for u in emulator.emulator.users()}
    exact = {k: json.loads(v, parse_float=Decimal) for k, v in stored.items()}
    assert exact == {"a": {"pi": Decimal(pi), "tiny": Decimal("1e-400")}, "b": {"pi": Decimal(pi)}}


async def test_services_creates_a_service_to_seed_into(emulator: RunningEmulator) -> None:
    status, service = await control(emulator, "POST", "services", {"friendly_name": "Second"})
    assert status == 201
    assert service["sid"].startswith("IS")
    assert {r["friendly_name"] for r in service["roles"]} >= {"service user"}
    admin = next(r["sid"] for r in service["roles"] if r["friendly_name"] == "service admin")
    body = {"service_sid": service["sid"], "users": [{"identity": "z", "role_sid": admin}]}
    assert (await control(emulator, "POST", "seed", body))[0] == 201
    _, state = await control(emulator, "GET", f"state?service_sid={service['sid']}")
    assert [u["role_sid"] for u in state["services"][0]["users"]] == [admin]


async def test_seed_is_all_or_nothing(emulator: RunningEmulator) -> None:
    users = [{"identity": "ok"}, {"identity": "ok"}]
    status, body = await control(emulator, "POST", "seed", {"users": users})
    assert status == 400
    assert "already exists" in body["error"]
    assert emulator.emulator.users() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("seed", {"users": [{"friendly_name": "no identity"}]}),
        ("seed", {"users": [], "extra": 1}),
        ("faults", {"kind": "status", "status": 200}),
        ("faults", {"kind": "nope"}),
    ],
)
async def test_bad_control_requests_are_400(
    emulator: RunningEmulator, path: str, body: dict[str, Any]
) -> None:
    status, payload = await control(emulator, "POST", path, body)
    assert status == 400
    assert payload["error"]


async def test_unknown_service_in_control_is_404(emulator: RunningEmulator) -> None:
    body = {"service_sid": "IS" + "0" * 32, "users": [{"identity": "a"}]}
    assert (await control(emulator, "POST", "seed", body))[0] == 404


async def test_faults_and_limit_over_http(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    fault = {"kind": "rate_limit", "count": 1, "retry_after": 3, "operations": ["create_user"]}
    assert (await control(emulator, "POST", "faults", fault))[0] == 201
    async with emulator_http.post(USERS, data={"Identity": "a"}) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "3")

    assert (await control(emulator, "POST", "faults", {"kind": "status", "status": 503}))[0] == 201
    assert (await control(emulator, "DELETE", "faults"))[0] == 204
    assert (await control(emulator, "PUT", "limit", {"per_second": 1}))[0] == 200
    async with emulator_http.post(USERS, data={"Identity": "a"}) as response:
        assert response.status == 201
    async with emulator_http.post(USERS, data={"Identity": "b"}) as response:
        assert response.status == 429
    assert (await control(emulator, "PUT", "limit", {"per_second": None}))[0] == 200
    async with emulator_http.post(USERS, data={"Identity": "b"}) as response:
        assert response.status == 201


async def test_latency_over_http(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    body = {"kind": "latency", "seconds": 0.2, "operations": ["fetch_user"]}
    assert (await control(emulator, "POST", "faults", body))[0] == 201
    started = time.perf_counter()
    async with emulator_http.get(f"{USERS}/nobody") as response:
        assert response.status == 404
    assert time.perf_counter() - started >= 0.2


async def test_stats_count_calls_per_operation_and_reset(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    async with emulator_http.get(USERS), emulator_http.get("/v1/Roles"):
        pass
    async with emulator_http.get(f"{USERS}/nobody"):
        pass
    _, stats = await control(emulator, "GET", "stats")
    assert (stats["list_users"], stats["list_roles"], stats["fetch_user"]) == (1, 1, 1)
    assert stats["create_user"] == 0
    assert (await control(emulator, "DELETE", "stats"))[0] == 204
    _, stats = await control(emulator, "GET", "stats")
    assert set(stats.values()) == {0}


async def test_reset_returns_to_one_empty_default_service(emulator: RunningEmulator) -> None:
    running = emulator.emulator
    other = running.create_service("Other")
    running.seed_users([{"identity": "a"}])
    running.set_write_limit(1)
    running.inject_fault("status", status=500)
    assert (await control(emulator, "POST", "reset"))[0] == 204
    _, state = await control(emulator, "GET", "state")
    assert [s["sid"] for s in state["services"]] == [emulator.config.default_service_sid]
    assert state["services"][0]["users"] == []
    assert state["write_limit_per_second"] == 30
    assert other not in {s["sid"] for s in state["services"]}
    _, stats = await control(emulator, "GET", "stats")
    assert set(stats.values()) == {0}


async def test_a_seeded_emulator_makes_the_same_sids_every_time() -> None:
    sids = []
    for _ in range(2):
        async with running_emulator(EmulatorConfig(seed=7)) as running:
            running.emulator.seed_users([{"identity": "a"}, {"identity": "b"}])
            roles = [r["sid"] for r in running.emulator.roles()]
            sids.append((roles, [u["sid"] for u in running.emulator.users()]))
    assert sids[0] == sids[1]


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "seed", b"[" * 100_000),
        ("PUT", "limit", b'{"per_second": 1e400}'),
        ("POST", "faults", b'{"kind": "latency", "seconds": 1e400}'),
        ("POST", "faults", b'{"kind": "rate_limit", "retry_after": 1e400}'),
    ],
)
async def test_control_bodies_too_deep_or_infinite_are_400_and_change_nothing(
    emulator: RunningEmulator, method: str, path: str, raw: bytes
) -> None:
    async with (
        aiohttp.ClientSession(base_url=emulator.base_url) as http,
        http.request(method, f"/__emulator/{path}", data=raw) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]
    async with (
        aiohttp.ClientSession(base_url=emulator.base_url) as http,
        http.get("/v1/Users", headers=account_auth(emulator)) as listed,
    ):
        assert listed.status == 200  # no fault, no endless latency, the limit as it was
    assert emulator.emulator.limiter.per_second == emulator.config.write_limit_per_second


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_emulator_object_refuses_non_finite_seconds_and_limits(
    emulator: RunningEmulator, value: float
) -> None:
    with pytest.raises(ValueError, match="finite"):
        emulator.emulator.inject_fault("rate_limit", retry_after=value)
    with pytest.raises(ValueError, match="finite"):
        emulator.emulator.set_latency(value)
    with pytest.raises(ValueError, match="finite"):
        emulator.emulator.set_write_limit(value)
