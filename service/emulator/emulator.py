"""The emulator as an object: its state and the control surface tests and the demo drive.

`Emulator` owns the Services and Users (`Directory`), the account's Configuration, the
per-Service write limit, the injected faults and the call counters. The HTTP layer
(`users_api`, `roles_api`, `configuration_api`, `control`) only translates requests into calls
on it. Everything here is synchronous and runs on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Literal

import simplejson

from service.emulator.config import DEFAULT_MESSAGING_SERVICE_SID, EmulatorConfig
from service.emulator.configuration import Configuration
from service.emulator.directory import Directory, UserFields
from service.emulator.errors import ApiError
from service.emulator.faults import FaultPlan, fault_rule
from service.emulator.load import Load, LoadCounts
from service.emulator.records import Service, User, timestamp
from service.emulator.representation import UrlForm, render_role, render_user
from service.emulator.sids import SidFactory
from service.emulator.stats import CallStats
from service.emulator.write_limit import WriteLimiter

_SEED_KEYS = frozenset({"identity", "friendly_name", "attributes", "role_sid"})


class Emulator:
    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or EmulatorConfig()
        self.public_base_url = f"http://{self.config.host}:{self.config.port}"
        """The origin used in URLs of snapshots (`users()`, `roles()`); set once serving."""
        self.counters = CallStats()
        self.request_ids = SidFactory()
        """Ids of answers (`Twilio-Request-Id`): random even with a seed, as they are unique."""
        self.limiter = WriteLimiter(self.config.write_limit_per_second, clock=clock)
        self._fault_random = random.Random(self.config.seed)
        self.faults = FaultPlan(chance=self._fault_random.random, spread=self._fault_random.gauss)
        self.directory = self._new_directory()
        self.configuration = _new_configuration()
        self.load: Load | None = None
        """Another client spending the Service's write budget (`start_load`), if any."""

    def _new_directory(self) -> Directory:
        sids = SidFactory(self.config.seed)
        return Directory(sids=sids, default_service_sid=self.config.default_service_sid)

    def reset(self) -> None:
        """Back to the start: one default service, no users, no faults, zero stats."""
        self.directory = self._new_directory()
        self.configuration = _new_configuration()
        self.limiter.per_second = self.config.write_limit_per_second
        self._fault_random.seed(self.config.seed)
        self.clear_faults()
        self.reset_stats()
        self.stop_load()

    @property
    def default_service_sid(self) -> str:
        """The account's default Conversation Service now: what `/v1/Users` means."""
        return self.directory.default_service_sid

    def service(self, service_sid: str | None = None) -> Service:
        """A service by sid (None: the default one); KeyError if there is none."""
        sid = service_sid or self.default_service_sid
        service = self.directory.service(sid)
        if service is None:
            raise KeyError(f"no service {sid}")
        return service

    def create_service(self, friendly_name: str = "Emulated Conversation Service") -> str:
        return self.directory.add_service(friendly_name).sid

    def seed_users(
        self, users: Iterable[Mapping[str, Any]], *, service_sid: str | None = None
    ) -> list[dict[str, Any]]:
        """Creates users directly, past limits and faults; all or none (ValueError names which)."""
        service = self.service(service_sid)
        now = timestamp()
        created: list[User] = []
        try:
            for spec in users:
                created.append(self.directory.create_user(service, _seed_fields(spec), now=now))
        except (ApiError, ValueError) as error:
            for user in created:
                self.directory.delete_user(user)
            raise ValueError(f"seed user #{len(created)}: {error}") from error
        return [self._snapshot(user) for user in created]

    def users(self, service_sid: str | None = None) -> list[dict[str, Any]]:
        """The service's users in the v1 representation, in creation order."""
        table = self.directory.users(self.service(service_sid).sid)
        return [self._snapshot(user) for user in table]

    def roles(self, service_sid: str | None = None) -> list[dict[str, Any]]:
        service = self.service(service_sid)
        return [
            render_role(
                role,
                form=UrlForm.CONVERSATIONS,
                origin=self.public_base_url,
                account_sid=self.config.account_sid,
            )
            for role in service.roles.values()
        ]

    def _snapshot(self, user: User) -> dict[str, Any]:
        return render_user(
            user,
            form=UrlForm.CONVERSATIONS,
            origin=self.public_base_url,
            account_sid=self.config.account_sid,
        )

    @property
    def stats(self) -> dict[str, int]:
        return self.counters.snapshot()

    def reset_stats(self) -> None:
        self.counters.reset()

    def set_write_limit(self, per_second: float | None) -> None:
        self.limiter.per_second = per_second

    def start_load(self, writes_per_second: float, *, service_sid: str | None = None) -> Load:
        """Another client writing to the Service at this rate (replacing any earlier one);
        must be called on the loop that serves the emulator."""
        sid = self.service(service_sid).sid
        load = Load(writes_per_second, service_sid=sid, admit=self.limiter.try_acquire)
        self.stop_load()  # a refused rate (Load raised) leaves the running one alone
        self.load = load
        return load

    def stop_load(self) -> LoadCounts | None:
        """Stop the other client; what it attempted and how many were refused."""
        load, self.load = self.load, None
        return load.stop() if load is not None else None

    def set_latency(
        self, seconds: float, *, jitter: float = 0.0, operations: Collection[str] | None = None
    ) -> None:
        self.faults.set_latency(seconds, jitter=jitter, operations=operations)

    def inject_fault(
        self,
        kind: Literal["status", "rate_limit", "drop"],
        *,
        count: int | None = None,
        fraction: float | None = None,
        status: int = 500,
        retry_after: float | None = None,
        operations: Collection[str] | None = None,
        after_processing: bool = False,
    ) -> None:
        rule = fault_rule(
            kind,
            count=count,
            fraction=fraction,
            status=status,
            retry_after=retry_after,
            operations=operations,
            after_processing=after_processing,
        )
        self.faults.add(rule)

    def clear_faults(self) -> None:
        self.faults.clear()


def _new_configuration() -> Configuration:
    return Configuration(default_messaging_service_sid=DEFAULT_MESSAGING_SERVICE_SID)


def _seed_fields(spec: Mapping[str, Any]) -> UserFields:
    unknown = set(spec) - _SEED_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(_SEED_KEYS)}")
    attributes = spec.get("attributes")
    if attributes is not None and not isinstance(attributes, str):
        attributes = simplejson.dumps(attributes)  # Decimals as exact numbers, as in the body
    return UserFields(
        identity=spec.get("identity"),
        friendly_name=spec.get("friendly_name"),
        attributes=attributes,
        role_sid=spec.get("role_sid"),
    )
