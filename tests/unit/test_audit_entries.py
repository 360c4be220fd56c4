"""The audit trail's entries from actions and answers (pure): what changed, and no values."""

from __future__ import annotations

import pytest

from service.domain.actions import (
    CreateUser,
    DeleteReason,
    DeleteUser,
    FieldChange,
    LinkUser,
    UpdateUser,
)
from service.domain.audit import (
    Answer,
    AuditPolicy,
    change_summary,
    entries_of,
    held_entries,
    key_changes,
    planned_entries,
)
from service.domain.roles import RoleDirectory
from service.domain.users import Role, RoleSid, UserId, UserSid

USER = RoleSid("RL" + "1" * 32)
ADMIN = RoleSid("RL" + "2" * 32)
ROLES = RoleDirectory(
    [
        Role(sid=USER, friendly_name="service user", type="service"),
        Role(sid=ADMIN, friendly_name="service admin", type="service"),
    ]
)

SID, OLD_SID = UserSid("US" + "a" * 32), UserSid("US" + "b" * 32)


def create(**extra: object) -> CreateUser:
    values: dict[str, object] = {
        "user_id": UserId("u1"),
        "identity": "alice",
        "friendly_name": "Alice",
        "attributes_json": '{"dept":"eng","level":3}',
        "role_sid": ADMIN,
    }
    values.update(extra)
    return CreateUser(**values)  # type: ignore[arg-type]


def update(*changes: FieldChange, retires: UserSid | None = None) -> UpdateUser:
    return UpdateUser(
        user_id=UserId("u1"), sid=SID, identity="alice", changes=changes, retires=retires
    )


def test_a_create_sets_every_field_it_sends_from_none_with_role_names():
    summary = change_summary(create(), roles=ROLES)

    assert summary == {
        "friendly_name": {"old": None, "new": "Alice"},
        "role": {"old": None, "new": {"sid": ADMIN, "name": "service admin"}},
        "attributes": {"added": ["dept", "level"], "removed": [], "changed": []},
    }


def test_an_update_names_old_and_new_role_and_friendly_name():
    action = update(
        FieldChange("friendly_name", "Al", "Alice"), FieldChange("role_sid", USER, ADMIN)
    )

    summary = change_summary(action, roles=ROLES)

    assert summary["friendly_name"] == {"old": "Al", "new": "Alice"}
    assert summary["role"]["old"] == {"sid": USER, "name": "service user"}
    assert summary["role"]["new"] == {"sid": ADMIN, "name": "service admin"}


@pytest.mark.parametrize(
    ("old", "new", "added", "removed", "changed"),
    [
        ('{"a":1,"b":2}', '{"a":1,"b":3,"c":4}', ["c"], [], ["b"]),
        ('{"a":1,"b":2}', '{"a":1}', [], ["b"], []),
        ('{"a":100}', '{"a":100.0}', [], [], ["a"]),
        ('{"b":1, "a":2}', '{"a":2,"b":1}', [], [], []),
        (None, '{"x":{"y":1}}', ["x"], [], []),
        ('"not an object"', '{"k":true}', ["k"], [], []),
    ],
)
def test_attribute_changes_are_keys_added_removed_and_changed(
    old: str | None, new: str, added: list[str], removed: list[str], changed: list[str]
):
    summary = key_changes(old, new, policy=AuditPolicy())

    assert summary == {"added": added, "removed": removed, "changed": changed}


def test_attribute_values_are_kept_only_when_the_policy_asks():
    action = update(FieldChange("attributes", '{"ssn":"123"}', '{"ssn":"456"}'))

    quiet = change_summary(action, roles=ROLES)
    loud = change_summary(action, roles=ROLES, policy=AuditPolicy(values=True))

    assert "123" not in repr(quiet) and "456" not in repr(quiet)
    assert loud["attributes"]["old"] == '{"ssn":"123"}'
    assert loud["attributes"]["new"] == '{"ssn":"456"}'


def test_each_write_is_paired_with_its_answer_and_a_rename_with_its_delete():
    answers = [
        Answer(operation="create_user", status=201, request_id="RQ1"),
        Answer(operation="delete_user", status=204, request_id="RQ2"),
    ]

    entries = entries_of(
        [create(retires=OLD_SID)], answers, roles=ROLES, policy=AuditPolicy(), created=SID
    )

    assert [(e.action, e.outcome, e.sid, e.http_status, e.request_id) for e in entries] == [
        ("create", "created", SID, 201, "RQ1"),
        ("delete", "deleted", OLD_SID, 204, "RQ2"),
    ]
    assert entries[1].reason == "rename"


def test_a_refused_create_and_the_adoption_that_follows_are_two_entries():
    adopt = UpdateUser(
        user_id=UserId("u1"),
        sid=SID,
        identity="alice",
        changes=(FieldChange("friendly_name", None, "Alice"),),
        adopted=True,
    )
    answers = [
        Answer(operation="create_user", status=409, twilio_code=50201, request_id="RQ1"),
        Answer(operation="update_user", status=200, request_id="RQ2"),
    ]

    entries = entries_of([create(), adopt], answers, roles=ROLES, policy=AuditPolicy())

    assert [(e.outcome, e.twilio_code, e.reason) for e in entries] == [
        ("exists", 50201, None),
        ("updated", None, "adopted"),
    ]


def test_a_failed_write_keeps_status_code_message_and_request_id():
    answer = Answer(
        operation="update_user", status=500, twilio_code=20500, request_id="RQ9", message="boom"
    )

    [entry] = entries_of(
        [update(FieldChange("friendly_name", "a", "b"))],
        [answer],
        roles=ROLES,
        policy=AuditPolicy(),
    )

    assert (entry.outcome, entry.http_status, entry.twilio_code) == ("failed", 500, 20500)
    assert (entry.request_id, entry.message) == ("RQ9", "boom")


def test_a_link_writes_nothing_and_a_delete_of_a_gone_user_is_gone():
    delete = DeleteUser(
        user_id=UserId("u1"), sid=SID, identity="alice", reason=DeleteReason.INACTIVE
    )
    link = LinkUser(user_id=UserId("u2"), sid=OLD_SID, identity="bob")

    entries = entries_of(
        [link, delete],
        [Answer(operation="delete_user", status=404)],
        roles=ROLES,
        policy=AuditPolicy(),
    )

    assert [(e.user_id, e.action, e.outcome, e.reason) for e in entries] == [
        ("u1", "delete", "gone", "inactive")
    ]


def test_held_and_planned_entries_say_what_was_not_written():
    delete = DeleteUser(
        user_id=UserId("u1"), sid=SID, identity="alice", reason=DeleteReason.REMOVED
    )

    [held] = held_entries([delete])
    planned = planned_entries([create(), delete], roles=ROLES)

    assert (held.outcome, held.sid, held.reason) == ("held", SID, "removed")
    assert [(e.action, e.outcome) for e in planned] == [
        ("create", "planned"),
        ("delete", "planned"),
    ]
