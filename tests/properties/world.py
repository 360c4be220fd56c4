"""Generated worlds for the engine properties: a source table in two generations and a remote side.

Generation one is what the source table holds at first; generation two is the same users after
renames, deactivations, removals and edits. Remote strangers exist only remotely (some of them
protected); adoptable users exist remotely before we ever ran, with the identity of a local user.
Identities are unicode and contain characters that must be percent-encoded in a URL path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import strategies as st

ROLE_NAMES = ("service admin", "service user")
"""The user-level roles (channel roles are refused for users: tests/e2e covers that)."""
PROTECTED = "^keep-"
CHANGES = ("same", "same", "rename", "deactivate", "remove", "edit", "reactivate")

_text = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\x00")
_alphabet = st.sampled_from("aZé漢ж ß@.-_+/%?#&=") | _text
identities = st.text(_alphabet, min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != "" and not s.startswith("keep-")
)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(_text, max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(_text, max_size=5), inner),
    max_leaves=5,
)
attributes = st.dictionaries(st.text(_text, max_size=6), _values, max_size=4)
names = st.none() | st.text(_text, max_size=10)
roles = st.none() | st.sampled_from(ROLE_NAMES)


@dataclass(frozen=True)
class Row:
    id: str
    identity: str
    friendly_name: str | None
    role: str | None
    attributes: dict[str, Any]
    active: bool

    def as_insert(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "friendly_name": self.friendly_name,
            "role": self.role,
            "attributes": self.attributes,
            "active": self.active,
        }


@dataclass
class World:
    first: list[Row]
    second: list[Row]
    strangers: list[str]
    """Identities only the remote side has; `keep-…` ones are protected."""
    adoptable: list[str]
    """Identities of first-generation users that exist remotely before any run."""
    delete_mode: str
    renamed_from: set[str] = field(default_factory=set)


@st.composite
def worlds(draw: st.DrawFn, *, max_users: int = 8) -> World:
    size = draw(st.integers(1, max_users))
    pool = draw(st.lists(identities, min_size=2 * size + 3, max_size=2 * size + 3, unique=True))
    world = World([], [], [], [], draw(st.sampled_from(["managed", "mirror", "never"])))
    for n in range(size):
        row = Row(
            id=f"u{n}",
            identity=pool[n],
            friendly_name=draw(names),
            role=draw(roles),
            attributes=draw(attributes),
            active=draw(st.sampled_from([True, True, True, False])),
        )
        world.first.append(row)
        if row.active and draw(st.integers(0, 4)) == 0:
            world.adoptable.append(row.identity)
        _second(draw, world, row, fresh=pool[size + n])
    for n, identity in enumerate(pool[2 * size :]):
        world.strangers.append(("keep-" if n % 2 else "") + identity)
    return world


def _second(draw: st.DrawFn, world: World, row: Row, *, fresh: str) -> None:
    change = draw(st.sampled_from(CHANGES))
    if change == "remove":
        return
    if change == "rename":
        world.renamed_from.add(row.identity)
        row = replace(row, identity=fresh)
    elif change == "deactivate":
        row = replace(row, active=False)
    elif change == "reactivate":
        row = replace(row, active=True)
    elif change == "edit":
        row = replace(row, friendly_name=draw(names), role=draw(roles), attributes=draw(attributes))
    world.second.append(row)


def expected_identities(world: World) -> set[str]:
    """Who must exist remotely after the second generation is synced."""
    wanted = {r.identity for r in world.second if r.active}
    mirror, never = world.delete_mode == "mirror", world.delete_mode == "never"
    for identity in world.strangers:
        if not mirror or identity.startswith("keep-"):
            wanted.add(identity)
    if never:  # users that were synced once and then went away locally stay
        gone = {r.identity for r in world.first} - {r.identity for r in world.second}
        once_remote = {r.identity for r in world.first if r.active} | set(world.adoptable)
        wanted |= (gone & once_remote) - world.renamed_from
        inactive = {r.identity for r in world.second if not r.active}
        wanted |= inactive & once_remote
    return wanted


def remote_matches(row: Row, remote: dict[str, Any], role_sids: dict[str, str]) -> list[str]:
    """What differs between a remote user and its active source row (empty: equal)."""
    wrong = []
    if json.loads(remote["attributes"]) != row.attributes:
        wrong.append("attributes")
    if row.friendly_name is not None and (remote["friendly_name"] or "") != row.friendly_name:
        wrong.append("friendly_name")
    if row.role is not None and remote["role_sid"] != role_sids[row.role]:
        wrong.append("role")
    return wrong
