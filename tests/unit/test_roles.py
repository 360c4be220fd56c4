"""Role names and sids resolve to one of the Service's user roles, or to a clear refusal."""

from __future__ import annotations

import pytest

from service.domain.roles import RoleDirectory, UnknownRole, names_a_role
from service.domain.users import Role
from tests.unit.factories import ALL_ROLES, role_sid

EXACT = Role(sid=role_sid(10), friendly_name="Agent", type="service")
LOWER = Role(sid=role_sid(11), friendly_name="agent", type="service")
UPPER = Role(sid=role_sid(12), friendly_name="SUPERVISOR", type="service")
TITLE = Role(sid=role_sid(13), friendly_name="Supervisor", type="deployment")
CHANNEL = Role(sid=role_sid(14), friendly_name="Guest", type="channel")
CONVERSATION = Role(sid=role_sid(15), friendly_name="participant", type="conversation")
DIRECTORY = RoleDirectory([EXACT, LOWER, UPPER, TITLE, CHANNEL, CONVERSATION])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("Agent", EXACT, id="an exact name wins over a case-insensitive one"),
        pytest.param("agent", LOWER, id="each exact spelling finds its own role"),
        pytest.param("SUPERVISOR", UPPER, id="exact match first even among look-alikes"),
        pytest.param(EXACT.sid, EXACT, id="a listed user role sid resolves to itself"),
        pytest.param(EXACT.sid.upper().replace("RL", "RL"), EXACT, id="sid hex in any case"),
    ],
)
def test_role_names_and_sids_resolve_to_a_user_role(given: str, expected: Role) -> None:
    assert DIRECTORY.resolve(given) == expected.sid


@pytest.mark.parametrize(
    ("given", "words"),
    [
        pytest.param("AGENT", "ambiguous", id="a case-insensitive name matching two is ambiguous"),
        pytest.param("supervisor", "ambiguous", id="ambiguous across service and deployment"),
        pytest.param("guest", "not one of", id="a channel role name differing in case is unknown"),
        pytest.param("Guest", "is a channel role", id="a channel role is not a user role"),
        pytest.param("participant", "is a conversation role", id="nor is a conversation role"),
        pytest.param(CHANNEL.sid, "is a channel role", id="a channel role sid is refused"),
        pytest.param("RL" + "e" * 32, "role sid", id="an unlisted sid is refused"),
        pytest.param("nobody", "not one of", id="an unknown name is refused"),
    ],
)
def test_roles_that_do_not_resolve_say_why(given: str, words: str) -> None:
    with pytest.raises(UnknownRole, match=words):
        DIRECTORY.resolve(given)


def test_a_case_insensitive_name_resolves_when_it_is_unique() -> None:
    directory = RoleDirectory(ALL_ROLES)

    assert directory.resolve("ADMIN") == directory.resolve("Admin")


def _resolves(sid: str) -> bool:
    try:
        DIRECTORY.resolve(sid)
    except UnknownRole:
        return False
    return True


def test_the_directory_keeps_only_user_level_roles() -> None:
    listed = [EXACT, LOWER, UPPER, TITLE, CHANNEL, CONVERSATION]
    kept = [r.type for r in listed if _resolves(r.sid)]
    assert kept == ["service", "service", "service", "deployment"]


def test_an_empty_directory_says_the_service_lists_no_roles() -> None:
    with pytest.raises(UnknownRole, match="lists none"):
        RoleDirectory([]).resolve("user")


def test_an_unread_directory_refuses_to_resolve_rather_than_call_a_role_unknown() -> None:
    unread = RoleDirectory.unread()

    assert not unread.read
    with pytest.raises(RuntimeError, match="before the Service's Roles were read"):
        unread.resolve("user")


@pytest.mark.parametrize("role", [None, "", "   "])
def test_a_blank_role_names_none(role: str | None) -> None:
    assert not names_a_role(role)
