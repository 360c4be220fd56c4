"""Rows the API would refuse are caught before any call, each with a sentence naming the field."""

from __future__ import annotations

import pytest

from service.domain.actions import CreateUser
from service.domain.cases import Case
from service.domain.plan import plan_case
from service.domain.policy import Policy
from service.domain.users import LocalUser
from tests.unit.factories import ADMIN, CHANNEL_ADMIN, ROLES, local, remote, state
from tests.unit.planning import plan

US_SID = "US" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("user", "field", "words"),
    [
        pytest.param(local(""), "identity", "is empty", id="an empty identity"),
        pytest.param(local("  "), "identity", "is empty", id="a blank identity"),
        pytest.param(local("a" * 257), "identity", "257 characters", id="an identity over 256"),
        pytest.param(local(US_SID), "identity", "looks like a user sid",
                     id="an identity shaped like a user sid"),
        pytest.param(local("al\nice"), "identity", "U+000A", id="an identity with a newline"),
        pytest.param(local("al\x00ice"), "identity", "U+0000", id="an identity with a NUL"),
        pytest.param(local("al\x85ice"), "identity", "U+0085", id="a C1 control character"),
        pytest.param(local("al\ud800"), "identity", "surrogate", id="a lone surrogate"),
        pytest.param(local(attributes=[1]), "attributes", "got a list", id="attributes as a list"),
        pytest.param(local(attributes=3), "attributes", "got a number",
                     id="attributes as a number"),
        pytest.param(local(attributes=True), "attributes", "got a boolean",
                     id="attributes as a boolean"),
        pytest.param(local(attributes="[1, 2]"), "attributes", "got a list",
                     id="attributes as text holding a list"),
        pytest.param(local(attributes="{oops"), "attributes", "not valid JSON",
                     id="attributes as text that is not JSON"),
        pytest.param(local(attributes='"{}"'), "attributes", "got a str",
                     id="attributes as text holding a string"),
        pytest.param(local(attributes={"n": float("nan")}), "attributes", "cannot be written",
                     id="attributes holding NaN"),
        pytest.param(local(attributes={"s": {1, 2}}), "attributes", "cannot be written",
                     id="attributes holding a set"),
        pytest.param(local(attributes={"a": "x" * 16384}), "attributes", "16392 bytes",
                     id="attributes over 16 KB"),
        pytest.param(local(attributes={"a": "é" * 8189}), "attributes", "16386 bytes",
                     id="attributes over 16 KB counted in UTF-8 bytes"),
        pytest.param(local(friendly_name="n" * 257), "friendly_name", "257 characters",
                     id="a friendly name over 256"),
        pytest.param(local(role="owner"), "role", "not one of the Service's user roles",
                     id="an unknown role name"),
        pytest.param(local(role="RL" + "f" * 32), "role", "not one of the Service's user roles",
                     id="an unknown role sid"),
        pytest.param(local(role="channel admin"), "role", "is a channel role",
                     id="a channel role named for a user"),
        pytest.param(local(role=CHANNEL_ADMIN.sid), "role", "is a channel role",
                     id="a channel role given by sid"),
    ],
)  # fmt: skip
def test_invalid_users_get_a_problem_and_no_action(user: LocalUser, field: str, words: str) -> None:
    planned = plan_case(Case(local=user, state=None), policy=Policy(), roles=ROLES)

    assert planned.actions == ()
    assert planned.problem is not None
    assert planned.problem.field == field
    assert planned.problem.user_id == user.id
    assert words in planned.problem.message
    assert planned.problem.message.startswith(f"user {user.id}: {field} ")


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(local("a" * 256), id="an identity of exactly 256 characters"),
        pytest.param(local("álîçé 😀 +@._-"), id="an identity in any script"),
        pytest.param(local("US123"), id="an identity starting with US that is no sid"),
        pytest.param(local(friendly_name="n" * 256), id="a friendly name of exactly 256"),
        pytest.param(local(friendly_name="line\nbreak"), id="a friendly name over two lines"),
        pytest.param(local(attributes={"a": "x" * 16376}), id="attributes of exactly 16384 bytes"),
        pytest.param(local(attributes={"a": "é" * 8188}), id="16384 bytes of two-byte characters"),
        pytest.param(local(attributes='{"a": 1}'), id="attributes as text holding an object"),
        pytest.param(local(attributes=None), id="null attributes, taken as an empty object"),
        pytest.param(local(role="admin"), id="a role named in another case"),
        pytest.param(local(role=ADMIN.sid), id="a user role given by sid"),
        pytest.param(local(role="moderator"), id="a Chat v2 deployment role"),
    ],
)
def test_valid_users_plan_normally(user: LocalUser) -> None:
    planned = plan_case(Case(local=user, state=None), policy=Policy(), roles=ROLES)

    assert planned.problems == ()
    assert [type(a) for a in planned.actions] == [CreateUser]


def test_every_problem_of_a_user_is_reported() -> None:
    user = local("", friendly_name="n" * 300, role="nope", attributes=[])

    planned = plan_case(Case(local=user, state=None), policy=Policy(), roles=ROLES)

    fields = [p.field for p in planned.problems]
    assert fields == ["identity", "friendly_name", "role", "attributes"]


def test_one_invalid_user_does_not_stop_the_others() -> None:
    bad = local("bad\tidentity", user_id="u1")
    good = local("good", user_id="u2")

    planned = plan(
        [Case(local=bad, state=None), Case(local=good, state=None)], policy=Policy(), roles=ROLES
    )

    assert [p.user_id for p in planned.problems] == ["u1"]
    assert [a.identity for a in planned.actions] == ["good"]


def test_an_inactive_user_with_a_bad_identity_is_reported_not_deleted() -> None:
    user = local("", active=False)

    planned = plan_case(
        Case(local=user, state=state(), remote=remote()), policy=Policy(), roles=ROLES
    )

    assert planned.actions == ()
    assert planned.problem is not None
    assert planned.problem.field == "identity"


def test_a_problem_reads_as_a_sentence() -> None:
    planned = plan_case(Case(local=local(attributes=[1]), state=None), policy=Policy(), roles=ROLES)

    assert str(planned.problem) == "user u1: attributes must be a JSON object, got a list."
