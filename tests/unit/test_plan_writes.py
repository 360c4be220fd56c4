"""The planner's creates and updates: what is missing, what differs, and nothing else."""

from __future__ import annotations

import pytest

from service.domain.actions import CreateUser, FieldChange, LinkUser, UpdateUser
from service.domain.cases import Case
from service.domain.plan import plan_case
from service.domain.policy import Policy
from tests.unit.factories import ADMIN, MODERATOR, ROLES, local, remote, synced

POLICY = Policy()


def only_action(case: Case) -> object:
    planned = plan_case(case, policy=POLICY, roles=ROLES)
    assert planned.problems == ()
    assert len(planned.actions) == 1, planned.actions
    return planned.actions[0]


def test_creates_a_user_missing_remotely() -> None:
    user = local("alice", friendly_name="Alice", role="Admin", attributes={"b": 1, "a": "é"})

    action = only_action(Case(local=user, state=None))

    assert action == CreateUser(
        user_id=user.id,
        identity="alice",
        friendly_name="Alice",
        attributes_json='{"a":"é","b":1}',
        role_sid=ADMIN.sid,
        retires=None,
        managed_keys=frozenset({"a", "b"}),
    )


@pytest.mark.parametrize(
    ("friendly_name", "role"),
    [
        pytest.param(None, None, id="no name and no role are left to the API's defaults"),
        pytest.param("", "", id="an empty name and a blank role are left out too"),
        pytest.param("", "   ", id="a whitespace role counts as no role"),
    ],
)
def test_create_omits_what_the_source_leaves_unset(
    friendly_name: str | None, role: str | None
) -> None:
    action = only_action(Case(local=local(friendly_name=friendly_name, role=role), state=None))

    assert isinstance(action, CreateUser)
    assert action.friendly_name is None
    assert action.role_sid is None
    assert action.attributes_json == "{}"


def test_create_sends_attributes_as_compact_sorted_json() -> None:
    nested = {"z": [1, 2, {"y": None, "x": True}], "a": {"é": "ü", "b": 1.5}}

    action = only_action(Case(local=local(attributes=nested), state=None))

    assert isinstance(action, CreateUser)
    assert action.attributes_json == '{"a":{"b":1.5,"é":"ü"},"z":[1,2,{"x":true,"y":null}]}'


def test_attributes_given_as_json_text_are_sent_compact() -> None:
    action = only_action(Case(local=local(attributes='{ "b" : 2,\n "a": 1 }'), state=None))

    assert isinstance(action, CreateUser)
    assert action.attributes_json == '{"a":1,"b":2}'


def test_a_user_equal_on_both_sides_plans_nothing() -> None:
    user = local(friendly_name="Alice", role="Admin", attributes={"a": 1})
    same = remote(friendly_name="Alice", role_sid=ADMIN.sid, attributes='{"a":1}')

    planned = plan_case(synced(user, same), policy=POLICY, roles=ROLES)

    assert planned.unchanged


@pytest.mark.parametrize(
    "remote_text",
    [
        pytest.param('{"b":[1,2],"a":{"y":1,"x":2}}', id="key order never causes an update"),
        pytest.param('{ "a" : {"x": 2, "y": 1},\n\t"b": [ 1, 2 ] }', id="whitespace never does"),
        pytest.param('{"a":{"x":2,"y":1},"b":[1,2]}', id="the compact text itself is equal"),
        pytest.param('{"a":{"x":2,"y":1},"b":[1,2],"a":{"x":2,"y":1}}', id="a repeated key too"),
    ],
)
def test_attributes_are_compared_as_json_values(remote_text: str) -> None:
    user = local(attributes={"a": {"x": 2, "y": 1}, "b": [1, 2]})

    planned = plan_case(synced(user, remote(attributes=remote_text)), policy=POLICY, roles=ROLES)

    assert planned.unchanged


@pytest.mark.parametrize(
    ("local_attributes", "remote_text", "sent"),
    [
        pytest.param({"a": True}, '{"a":1}', '{"a":true}', id="true is not the number one"),
        pytest.param({"a": 1}, '{"a":"1"}', '{"a":1}', id="a number is not a string"),
        pytest.param({"a": None}, "{}", '{"a":null}', id="a null value is not a missing key"),
        pytest.param({"a": [1, 2]}, '{"a":[2,1]}', '{"a":[1,2]}', id="list order matters"),
        pytest.param({}, "not json", "{}", id="remote text that is not JSON is rewritten"),
        pytest.param({}, "[]", "{}", id="a remote list is rewritten as an object"),
        pytest.param({}, '{"a":NaN}', "{}", id="remote NaN is not JSON and is rewritten"),
    ],
)
def test_attributes_that_differ_as_json_are_updated(
    local_attributes: object, remote_text: str, sent: str
) -> None:
    action = only_action(synced(local(attributes=local_attributes), remote(attributes=remote_text)))

    assert isinstance(action, UpdateUser)
    assert action.changes == (FieldChange("attributes", remote_text, sent),)


def test_update_names_only_the_fields_that_change() -> None:
    user = local(friendly_name="Alice", role="Admin", attributes={"a": 1})
    other = remote(friendly_name="Alice", role_sid=MODERATOR.sid, attributes='{"a":2}')

    action = only_action(synced(user, other))

    assert isinstance(action, UpdateUser)
    assert action.changes == (
        FieldChange("role_sid", MODERATOR.sid, ADMIN.sid),
        FieldChange("attributes", '{"a":2}', '{"a":1}'),
    )
    assert action.parameters() == {"role_sid": ADMIN.sid, "attributes": '{"a":1}'}
    assert not action.adopted


@pytest.mark.parametrize(
    "role",
    [
        pytest.param("Admin", id="a role named exactly resolves to its sid"),
        pytest.param("ADMIN", id="a role named in another case resolves too"),
        pytest.param(ADMIN.sid, id="a role given by a listed sid is used as is"),
        pytest.param("RL" + ADMIN.sid[2:].upper(), id="a sid with upper case hex digits too"),
    ],
)
def test_roles_resolve_through_the_services_roles(role: str) -> None:
    action = only_action(synced(local(role=role), remote(role_sid=MODERATOR.sid)))

    assert isinstance(action, UpdateUser)
    assert action.parameters() == {"role_sid": ADMIN.sid}


def test_a_null_local_role_never_fights_the_remote_role() -> None:
    planned = plan_case(
        synced(local(role=None), remote(role_sid=MODERATOR.sid)), policy=POLICY, roles=ROLES
    )

    assert planned.unchanged


@pytest.mark.parametrize(
    ("local_name", "remote_name", "expected"),
    [
        pytest.param(None, "Bob", None, id="no local name leaves the remote name alone"),
        pytest.param(None, None, None, id="no name on either side is equal"),
        pytest.param("", None, None, id="an empty name equals no remote name"),
        pytest.param("Al", "Al", None, id="the same name plans nothing"),
        pytest.param("Al", "Bob", FieldChange("friendly_name", "Bob", "Al"), id="a new name"),
        pytest.param("Al", None, FieldChange("friendly_name", None, "Al"), id="a first name"),
        pytest.param("", "Bob", FieldChange("friendly_name", "Bob", ""), id="empty clears it"),
    ],
)
def test_a_friendly_name_is_set_or_cleared_but_never_fought(
    local_name: str | None, remote_name: str | None, expected: FieldChange | None
) -> None:
    planned = plan_case(
        synced(local(friendly_name=local_name), remote(friendly_name=remote_name)),
        policy=POLICY,
        roles=ROLES,
    )

    changes = [c for a in planned.actions if isinstance(a, UpdateUser) for c in a.changes]
    assert changes == ([] if expected is None else [expected])


def test_a_synced_user_whose_state_is_out_of_date_is_linked_again() -> None:
    user = local(attributes={"a": 1})
    other = remote(attributes='{"a":1}')

    action = only_action(synced(user, other, managed_keys=frozenset({"old"})))

    assert action == LinkUser(
        user_id=user.id, sid=other.sid, identity="alice", managed_keys=frozenset({"a"})
    )
