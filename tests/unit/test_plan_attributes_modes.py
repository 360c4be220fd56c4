"""Who owns a remote user's attributes: `replace` takes them all, `merge` only our keys."""

from __future__ import annotations

import json

import pytest

from service.domain.actions import CreateUser, LinkUser, UpdateUser
from service.domain.cases import Case
from service.domain.plan import plan_case
from service.domain.policy import AttributesMode, Policy
from tests.unit.factories import ROLES, local, remote, state

REPLACE = Policy(attributes_mode=AttributesMode.REPLACE)
MERGE = Policy(attributes_mode=AttributesMode.MERGE)


def sent_attributes(case: Case, policy: Policy) -> dict[str, object] | None:
    """The attributes the plan writes, or None when it writes none."""
    planned = plan_case(case, policy=policy, roles=ROLES)
    assert planned.problems == ()
    for action in planned.actions:
        if isinstance(action, UpdateUser):
            text = action.parameters().get("attributes")
            return None if text is None else dict(json.loads(text))
        if isinstance(action, CreateUser):
            return dict(json.loads(action.attributes_json))
    return None


def managed(case: Case, policy: Policy) -> frozenset[str]:
    (action,) = plan_case(case, policy=policy, roles=ROLES).actions
    assert isinstance(action, (CreateUser, UpdateUser, LinkUser))
    return action.managed_keys


def case(local_attributes: dict[str, object], remote_text: str, *, managed: set[str]) -> Case:
    return Case(
        local=local(attributes=local_attributes),
        state=state(managed_keys=frozenset(managed)),
        remote=remote(attributes=remote_text),
    )


@pytest.mark.parametrize(
    ("policy", "before", "local_attributes", "managed_before", "expected"),
    [
        pytest.param(REPLACE, {"theirs": 1, "ours": 1}, {"ours": 2}, {"ours"}, {"ours": 2},
                     id="replace drops keys others set"),
        pytest.param(MERGE, {"theirs": 1, "ours": 1}, {"ours": 2}, {"ours"},
                     {"theirs": 1, "ours": 2},
                     id="merge keeps keys others set and writes ours"),
        pytest.param(MERGE, {"theirs": 1, "gone": 1}, {"ours": 1}, {"gone"},
                     {"theirs": 1, "ours": 1},
                     id="merge removes a key we managed that is no longer local"),
        pytest.param(MERGE, {"theirs": 1, "same": 0}, {"same": 1}, set(),
                     {"theirs": 1, "same": 1},
                     id="merge overwrites a remote key the source now sets"),
        pytest.param(MERGE, {"theirs": 1}, {}, {"theirs"}, {},
                     id="merge removes every key we managed once the source has none"),
        pytest.param(REPLACE, {"theirs": 1}, {}, set(), {},
                     id="replace empties attributes the source has none of"),
    ],
)  # fmt: skip
def test_each_attributes_mode_writes_what_it_owns(
    policy: Policy,
    before: dict[str, object],
    local_attributes: dict[str, object],
    managed_before: set[str],
    expected: dict[str, object],
) -> None:
    planned = case(local_attributes, json.dumps(before), managed=managed_before)

    assert sent_attributes(planned, policy) == expected


def test_merge_plans_nothing_when_our_keys_already_hold_our_values() -> None:
    planned = case({"ours": 1}, '{"theirs": 2, "ours": 1}', managed={"ours"})

    assert plan_case(planned, policy=MERGE, roles=ROLES).unchanged


def test_merge_adoption_keeps_every_remote_key_since_none_was_ours() -> None:
    adopted = Case(
        local=local(attributes={"ours": 1}), state=None, remote=remote(attributes='{"x":1}')
    )

    assert sent_attributes(adopted, MERGE) == {"x": 1, "ours": 1}


@pytest.mark.parametrize(
    "policy", [pytest.param(REPLACE, id="in replace mode"), pytest.param(MERGE, id="in merge mode")]
)
def test_the_plan_carries_the_local_keys_as_the_managed_keys_to_store(policy: Policy) -> None:
    planned = case({"a": 1, "b": 2}, '{"c":3}', managed={"old"})

    assert managed(planned, policy) == {"a", "b"}


def test_merge_refuses_a_result_over_the_size_limit_before_any_call() -> None:
    theirs = json.dumps({"theirs": "x" * 16000})
    planned = plan_case(
        case({"ours": "y" * 1000}, theirs, managed=set()), policy=MERGE, roles=ROLES
    )

    assert planned.actions == ()
    assert planned.problem is not None
    assert planned.problem.field == "attributes"
    assert "merged" in planned.problem.message
