"""Numbers in attributes survive exactly: read as Decimals, sent with their own digits and
exponent, and compared without a float in between, so a no-change run never rewrites them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from service.db.rows import decode_attributes
from service.domain import attributes
from service.domain.actions import CreateUser, UpdateUser
from service.domain.cases import Case
from service.domain.plan import plan_case
from service.domain.policy import AttributesMode, Policy
from tests.unit.factories import ROLES, local, remote, synced

POSTGRES_TINY = "0." + "0" * 399 + "1"
"""How Postgres prints the jsonb number `1e-400` (jsonb keeps numbers as `numeric`)."""
POSTGRES_HUGE = "1" + "0" * 400
"""How Postgres prints the jsonb number `1e400`."""
LONG_INT = "9" * 5000
"""An integer past the 4300 digits Python's int() converts from text."""
PI = "3.14159265358979323846264338327950288"


def exact(text: str) -> object:
    """The test's own Decimal-aware reading of a JSON text (the standard library's)."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def from_source(text: str) -> attributes.Attributes:
    """The source column's JSON text as the gather decodes it and validation renders it."""
    return attributes.from_value(decode_attributes(text))


@pytest.mark.parametrize(
    ("source_text", "sent"),
    [
        pytest.param(f'{{"pi": {PI}}}', f'{{"pi":{PI}}}',
                     id="pi to 36 digits is not cut to a float's 16"),
        pytest.param('{"n": 123456789012345678.5}', '{"n":123456789012345678.5}',
                     id="a large number keeps its fraction"),
        pytest.param('{"tiny": 1e-400}', '{"tiny":1E-400}', id="1e-400 is not 0.0"),
        pytest.param(f'{{"tiny": {POSTGRES_TINY}}}', '{"tiny":1E-400}',
                     id="Postgres's text of 1e-400 is the same number"),
        pytest.param('{"huge": 1e400}', '{"huge":1E+400}', id="1e400 is not infinity"),
        pytest.param(f'{{"huge": {POSTGRES_HUGE}}}', f'{{"huge":{POSTGRES_HUGE}}}',
                     id="Postgres's text of 1e400 is an integer of 401 digits"),
        pytest.param('{"neg": -2.5e-10, "avogadro": 6.02214076E+23}',
                     '{"avogadro":6.02214076E+23,"neg":-2.5E-10}',
                     id="negative and positive exponents"),
        pytest.param('{"z": -0.0}', '{"z":-0.0}', id="negative zero keeps its sign"),
        pytest.param('{"z": -0e0}', '{"z":-0}', id="negative zero without a fraction too"),
        pytest.param('{"big": 12345678901234567890123456789012345678901234567890}',
                     '{"big":12345678901234567890123456789012345678901234567890}',
                     id="an integer past 64 bits"),
        pytest.param(f'{{"long": {LONG_INT}}}', f'{{"long":{LONG_INT}}}',
                     id="an integer past Python's 4300 digits"),
        pytest.param('{"a": [1.10, {"b": [1e-400, true, null, -0.5]}], "c": {"d": 0.1}}',
                     '{"a":[1.10,{"b":[1E-400,true,null,-0.5]}],"c":{"d":0.1}}',
                     id="in nested lists and objects"),
    ],
)  # fmt: skip
def test_numbers_survive_decoding_and_the_compact_text_exactly(source_text: str, sent: str) -> None:
    rendered = from_source(source_text)

    assert rendered.text == sent
    assert exact(rendered.text) == exact(source_text)
    assert attributes.from_remote(rendered.text) == rendered  # what the API returns is equal


@pytest.mark.parametrize(
    ("source_text", "remote_text"),
    [
        pytest.param(f'{{"pi": {PI}}}', f'{{"pi":{PI}}}', id="the text we sent comes back equal"),
        pytest.param(f'{{"tiny": {POSTGRES_TINY}}}', '{"tiny":1E-400}',
                     id="Postgres's digits and our exponent are one number"),
        pytest.param('{"tiny": 1E-400}', '{"tiny":1e-400}', id="the case of the e does not matter"),
        pytest.param('{"huge": 1E+400}', '{ "huge" : 1e400 }', id="nor a plus sign or whitespace"),
        pytest.param('{"b": 123456789012345678.5, "a": [1e-400]}',
                     '{"a":[1E-400],"b":123456789012345678.5}', id="nor the order of keys"),
        pytest.param(f'{{"long": {LONG_INT}}}', f'{{"long":{LONG_INT}}}',
                     id="an integer of 5000 digits is equal to itself"),
    ],
)  # fmt: skip
def test_a_remote_text_equal_in_value_plans_no_update(source_text: str, remote_text: str) -> None:
    user = local(attributes=decode_attributes(source_text))

    planned = plan_case(synced(user, remote(attributes=remote_text)), policy=Policy(), roles=ROLES)

    assert planned.unchanged


@pytest.mark.parametrize(
    ("source_text", "remote_text", "sent"),
    [
        pytest.param(f'{{"a": {PI}}}', '{"a":3.141592653589793}', f'{{"a":{PI}}}',
                     id="a remote rounded to a float is rewritten exactly"),
        pytest.param('{"a": 1e-400}', '{"a":0.0}', '{"a":1E-400}',
                     id="a remote 0.0 is not 1e-400"),
        pytest.param('{"a": 100}', '{"a":100.0}', '{"a":100}', id="100 is not 100.0"),
        pytest.param('{"a": 100.0}', '{"a":100}', '{"a":100.0}', id="nor 100.0 100"),
        pytest.param('{"a": 100}', '{"a":1e2}', '{"a":100}', id="nor 1e2 100"),
        pytest.param('{"a": 1.5}', '{"a":1.50}', '{"a":1.5}', id="a trailing zero is a change"),
        pytest.param('{"a": 0.0}', '{"a":-0.0}', '{"a":0.0}', id="and so is the sign of zero"),
        pytest.param('{"a": true}', '{"a":1}', '{"a":true}', id="true is not the number one"),
        pytest.param('{"a": 1}', '{"a":true}', '{"a":1}', id="nor one true"),
    ],
)  # fmt: skip
def test_numbers_that_differ_as_json_texts_are_updated(
    source_text: str, remote_text: str, sent: str
) -> None:
    user = local(attributes=decode_attributes(source_text))

    planned = plan_case(synced(user, remote(attributes=remote_text)), policy=Policy(), roles=ROLES)

    (action,) = planned.actions
    assert isinstance(action, UpdateUser)
    assert action.parameters() == {"attributes": sent}


def test_merge_keeps_the_numbers_others_set_exactly() -> None:
    theirs = f'{{"ours":1,"theirs":{PI},"tiny":1e-400,"huge":{LONG_INT}}}'
    user = local(attributes=decode_attributes('{"ours": 2}'))
    case = synced(user, remote(attributes=theirs))

    planned = plan_case(case, policy=Policy(attributes_mode=AttributesMode.MERGE), roles=ROLES)

    (action,) = planned.actions
    assert isinstance(action, UpdateUser)
    sent = action.parameters()["attributes"]
    assert sent == f'{{"huge":{LONG_INT},"ours":2,"theirs":{PI},"tiny":1E-400}}'


@pytest.mark.parametrize(
    ("digits", "problem"),
    [
        pytest.param(16376, None, id="a number that makes 16384 bytes is sent"),
        pytest.param(16377, "are 16385 bytes as compact JSON", id="one digit more is too long"),
    ],
)  # fmt: skip
def test_the_size_limit_counts_every_digit_of_a_number(digits: int, problem: str | None) -> None:
    user = local(attributes=decode_attributes(f'{{"n": 0.{"1" * digits}}}'))

    planned = plan_case(Case(local=user, state=None), policy=Policy(), roles=ROLES)

    if problem is None:
        assert [type(a) for a in planned.actions] == [CreateUser]
    else:
        assert planned.problem is not None
        assert problem in planned.problem.message


@pytest.mark.parametrize(
    ("source", "words"),
    [
        pytest.param('{"a": NaN}', "not valid JSON", id="NaN as text"),
        pytest.param('{"a": Infinity}', "not valid JSON", id="Infinity as text"),
        pytest.param('{"a": -Infinity}', "not valid JSON", id="minus Infinity as text"),
        pytest.param({"a": Decimal("NaN")}, "cannot be written", id="a Decimal NaN"),
        pytest.param({"a": Decimal("-Infinity")}, "cannot be written", id="a Decimal infinity"),
        pytest.param({"a": float("inf")}, "cannot be written", id="a float infinity"),
    ],
)  # fmt: skip
def test_nan_and_infinities_are_refused_as_not_json(source: object, words: str) -> None:
    user = local(attributes=decode_attributes(source))

    planned = plan_case(Case(local=user, state=None), policy=Policy(), roles=ROLES)

    assert planned.problem is not None
    assert planned.problem.field == "attributes"
    assert words in planned.problem.message


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        pytest.param(1e16, '{"a":1E+16}', id="a float's 1e+16 is the Decimal 1E+16"),
        pytest.param(1e-7, '{"a":1E-7}', id="a float's 1e-07 is the Decimal 1E-7"),
        pytest.param(0.1, '{"a":0.1}', id="a float prints its shortest digits"),
        pytest.param(Decimal("1.10"), '{"a":1.10}', id="a Decimal keeps its trailing zero"),
    ],
)  # fmt: skip
def test_numbers_given_in_a_python_dict_are_sent_as_the_decimal_they_print(
    value: object, sent: str
) -> None:
    rendered = attributes.from_value({"a": value})

    assert rendered.text == sent
    assert attributes.from_remote(sent) == rendered
