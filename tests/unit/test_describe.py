"""One readable line per action for the dry run."""

from __future__ import annotations

import pytest

from service.domain.actions import (
    Action,
    CreateUser,
    DeleteReason,
    DeleteUser,
    FieldChange,
    LinkUser,
    UpdateUser,
    describe,
)
from service.domain.roles import RoleDirectory
from service.domain.users import UserId
from tests.unit.factories import ADMIN, CURRENT, OLD, USER

U1 = UserId("u1")


@pytest.mark.parametrize(
    ("action", "line"),
    [
        pytest.param(
            CreateUser(user_id=U1, identity="alice", friendly_name="Alice",
                       attributes_json='{"a":1}', role_sid=ADMIN.sid),
            f'create alice (user u1): friendly_name Alice, attributes {{"a":1}}, '
            f"role_sid {ADMIN.sid}",
            id="a create lists what it sends",
        ),
        pytest.param(
            CreateUser(user_id=U1, identity="alice", friendly_name=None, attributes_json="{}",
                       role_sid=None, retires=OLD),
            f"create alice (user u1): attributes {{}}, then delete the old identity's user {OLD}",
            id="a create that finishes a rename says so",
        ),
        pytest.param(
            UpdateUser(user_id=U1, sid=CURRENT, identity="alice", changes=(
                FieldChange("role_sid", USER.sid, ADMIN.sid),
                FieldChange("attributes", '{"a": 1}', '{"a":2}'),
            )),
            f"update alice (user u1) {CURRENT}: role_sid {USER.sid} → {ADMIN.sid}, "
            'attributes {"a": 1} → {"a":2}',
            id="an update shows each change old to new",
        ),
        pytest.param(
            UpdateUser(user_id=U1, sid=CURRENT, identity="alice", adopted=True,
                       changes=(FieldChange("friendly_name", None, "Al"),)),
            f"adopt and update alice (user u1) {CURRENT}: friendly_name none → Al",
            id="an adoption is named as one",
        ),
        pytest.param(
            LinkUser(user_id=U1, sid=CURRENT, identity="alice"),
            f"link alice (user u1) to {CURRENT}",
            id="a link names the remote user",
        ),
        pytest.param(
            DeleteUser(user_id=None, sid=CURRENT, identity="zed",
                       reason=DeleteReason.UNKNOWN_REMOTE),
            f"delete zed {CURRENT} (unknown locally)",
            id="a delete gives its reason",
        ),
        pytest.param(
            DeleteUser(user_id=U1, sid=CURRENT, identity=" odd\n", reason=DeleteReason.INACTIVE),
            f"delete ' odd\\n' (user u1) {CURRENT} (inactive locally)",
            id="an odd identity is quoted",
        ),
    ],
)  # fmt: skip
def test_each_action_reads_as_one_line(action: Action, line: str) -> None:
    assert describe(action) == line


def test_role_sids_the_service_listed_are_shown_with_their_names() -> None:
    roles = RoleDirectory([USER, ADMIN])
    update = UpdateUser(
        user_id=U1,
        sid=CURRENT,
        identity="alice",
        changes=(FieldChange("role_sid", USER.sid, ADMIN.sid),),
    )
    create = CreateUser(
        user_id=U1, identity="bob", friendly_name=None, attributes_json="{}", role_sid=ADMIN.sid
    )

    assert describe(update, roles) == (
        f"update alice (user u1) {CURRENT}: role_sid {USER.sid} ({USER.friendly_name})"
        f" → {ADMIN.sid} ({ADMIN.friendly_name})"
    )
    assert describe(create, roles).endswith(f"role_sid {ADMIN.sid} ({ADMIN.friendly_name})")


def test_describe_elides_long_values() -> None:
    action = CreateUser(
        user_id=U1,
        identity="a",
        friendly_name=None,
        attributes_json="{" + "x" * 500 + "}",
        role_sid=None,
    )

    assert len(describe(action)) < 200
    assert describe(action).endswith("…")
