"""A write's answer is remembered (`seen_*`) only when it is what the write meant: fields sent
as sent, fields not sent as the plan saw them. Another client's change between our read and our
write would otherwise be remembered as ours, and full runs would skip it in SQL."""

from __future__ import annotations

from service.domain.actions import CreateUser, FieldChange, UpdateUser
from service.domain.users import RemoteUser, RoleSid, UserId, UserSid

SEEN = RemoteUser(
    sid=UserSid("US1"),
    identity="alice",
    friendly_name="Alice",
    role_sid=RoleSid("RL1"),
    attributes='{"a": 1}',
)


def update(*changes: FieldChange) -> UpdateUser:
    return UpdateUser(user_id=UserId("u1"), sid=SEEN.sid, identity="alice", changes=changes)


def answer(**fields: object) -> RemoteUser:
    values = {
        "sid": SEEN.sid,
        "identity": "alice",
        "friendly_name": SEEN.friendly_name,
        "role_sid": SEEN.role_sid,
        "attributes": SEEN.attributes,
        **fields,
    }
    return RemoteUser(**values)  # type: ignore[arg-type]


def test_an_update_answered_with_what_was_sent_and_the_rest_as_seen_is_as_meant():
    action = update(FieldChange("friendly_name", "Alice", "Alice B"))
    assert action.answered_as_meant(answer(friendly_name="Alice B"), planned_from=SEEN)


def test_an_answer_showing_another_change_to_a_field_not_sent_is_not_as_meant():
    action = update(FieldChange("friendly_name", "Alice", "Alice B"))
    drifted = answer(friendly_name="Alice B", attributes='{"a": 1, "theirs": 2}')
    assert not action.answered_as_meant(drifted, planned_from=SEEN)
    assert not action.answered_as_meant(answer(friendly_name="Other"), planned_from=SEEN)


def test_an_update_planned_from_nothing_known_is_not_as_meant():
    action = update(FieldChange("attributes", "{}", '{"a": 1}'))
    assert not action.answered_as_meant(answer(), planned_from=None)


def test_a_create_is_as_meant_when_what_was_sent_came_back():
    create = CreateUser(
        user_id=UserId("u1"),
        identity="alice",
        friendly_name=None,
        attributes_json='{"a": 1}',
        role_sid=None,
    )
    assert create.answered_as_meant(answer(friendly_name=None, role_sid=RoleSid("RLdefault")))
    assert not create.answered_as_meant(answer(attributes='{"a":1}'))
