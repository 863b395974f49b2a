"""Whatever a signed terminal sends to POST /v1/verifications, the answer is a 4xx problem or an accept, never a 5xx."""

from __future__ import annotations

import json
import weakref
from typing import Any

import base45
import cbor2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecard.codes.token import PREFIX
from ecard.kit.signing import sign_request
from tests.support import Actor, World, problem

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELDS = ("code", "item_code", "terminal_id", "place")
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
CBOR = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.integers(-70002, 8), children, max_size=6),
    max_leaves=12,
)
# Codes that reach further into the parser: COSE_Sign1 shapes whose header and claims are partly right.
COSE_PARTS = st.fixed_dictionaries(
    {
        "alg": st.sampled_from([-8, -7, 0]) | CBOR,
        "kid": st.none() | st.binary(min_size=7, max_size=9),  # None: the issuer's active kid
        "claims": st.fixed_dictionaries(
            {},
            optional={
                1: st.sampled_from(["cq", "sc", ""]) | CBOR,
                4: st.integers() | CBOR,
                6: st.integers() | CBOR,
                7: st.binary(min_size=11, max_size=33) | CBOR,
                -70001: st.binary(max_size=80) | CBOR,
            },
        ),
        "signature": st.binary(max_size=70),
        "tag": st.sampled_from([18, 98]) | st.none(),
    }
)
_MERCHANTS: weakref.WeakKeyDictionary[World, Actor] = weakref.WeakKeyDictionary()
_HOLDERS: weakref.WeakKeyDictionary[World, Actor] = weakref.WeakKeyDictionary()


async def _library(world: World) -> Actor:
    """One merchant for all of a test's examples (hypothesis runs them against the same world)."""
    if world not in _MERCHANTS:
        _MERCHANTS[world] = await world.merchant(["wl-030"])
    return _MERCHANTS[world]


async def _holder(world: World) -> Actor:
    if world not in _HOLDERS:
        _HOLDERS[world] = await world.device()
    return _HOLDERS[world]


def _is_valid_text(value: Any, longest: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= longest


def _assert_invalid_request(body: dict[str, Any], status_and_code: tuple[int, str], wrong: set[str]) -> None:
    assert status_and_code == (400, "invalid_request")
    assert body["fields"], body
    assert set(body["fields"]) <= wrong, body


def _numbers_as_floats(value: Any) -> Any:
    """A JSON value as jsonb gives it back, up to the precision of its numbers (stored as numeric)."""
    if isinstance(value, dict):
        return {key: _numbers_as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _cose_code(parts: dict[str, Any], active_kid: bytes) -> str:
    kid = active_kid if parts["kid"] is None else parts["kid"]
    protected = cbor2.dumps({1: parts["alg"], 4: kid})
    sign1 = [protected, {}, cbor2.dumps(parts["claims"]), parts["signature"]]
    message = sign1 if parts["tag"] is None else cbor2.CBORTag(parts["tag"], sign1)
    encoded: bytes = base45.b45encode(cbor2.dumps(message))
    return PREFIX + encoded.decode("ascii")


@FUZZ
@given(body=JSON)
async def test_any_json_body_gets_a_problem_and_shapes_other_than_a_request_are_invalid(
    world: World, body: Any
) -> None:
    answer = await world.signed(await _library(world), "POST", "/v1/verifications", body)

    status, code = problem(answer)
    assert 400 <= status < 500, answer.text
    if not isinstance(body, dict) or not {"code", "item_code"} <= body.keys() or not body.keys() <= set(FIELDS):
        assert (status, code) == (400, "invalid_request"), answer.text


@FUZZ
@given(code=JSON, item_code=JSON)
async def test_code_and_item_code_of_any_type_are_named_when_wrong(world: World, code: Any, item_code: Any) -> None:
    answer = await world.verify(await _library(world), code, item_code)

    wrong = {
        name
        for name, value, longest in (("code", code, 2048), ("item_code", item_code, 64))
        if not _is_valid_text(value, longest)
    }
    if wrong:
        _assert_invalid_request(answer.json(), problem(answer), wrong)
    else:
        # well-shaped, but no string hypothesis makes up is a signed EC1 code
        assert problem(answer) == (400, "malformed_code"), answer.text


@FUZZ
@given(
    code=st.text(min_size=1, max_size=2048)
    | st.text(BASE45_ALPHABET, max_size=300).map(lambda tail: PREFIX + tail)
    | st.binary(max_size=300).map(lambda raw: PREFIX + base45.b45encode(raw).decode("ascii"))
    | CBOR.map(lambda value: PREFIX + base45.b45encode(cbor2.dumps(value)).decode("ascii"))
)
async def test_any_code_string_is_malformed(world: World, code: str) -> None:
    answer = await world.verify(await _library(world), code, "wl-030")

    assert problem(answer) == (400, "malformed_code"), answer.text


@FUZZ
@given(parts=COSE_PARTS)
async def test_a_forged_cose_code_is_refused_with_a_code_error(world: World, parts: dict[str, Any]) -> None:
    code = _cose_code(parts, world.app.state.key_ring.active().kid)

    answer = await world.verify(await _library(world), code, "wl-030")

    status, refusal = problem(answer)
    assert (status, refusal) in {
        (400, "malformed_code"),
        (400, "unknown_issuer"),
        (400, "unknown_key"),
        (400, "bad_signature"),
    }, answer.text
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM verifications") == 0


@settings(FUZZ, max_examples=60)
@given(
    terminal_id=st.none() | st.text(max_size=80),
    place=st.none() | st.dictionaries(st.text(max_size=12), JSON, max_size=4),
)
async def test_any_terminal_id_and_place_with_a_real_code_is_recorded_or_refused_before_the_code_is_spent(
    world: World, terminal_id: str | None, place: dict[str, Any] | None
) -> None:
    library = await _library(world)
    code = await world.code(await _holder(world))

    answer = await world.verify(library, code, "wl-030", terminal_id=terminal_id, place=place)

    if answer.status_code == 200:
        row = await world.app.state.pool.fetchrow(
            "SELECT terminal_id, place FROM verifications WHERE verification_id = $1", answer.json()["verification_id"]
        )
        assert row["terminal_id"] == terminal_id
        assert _numbers_as_floats(row["place"]) == _numbers_as_floats(place)
        return
    body = answer.json()
    _assert_invalid_request(body, problem(answer), {"terminal_id", "place"})
    assert terminal_id is not None or place is not None
    # refused while parsing: the holder's code is still good
    assert (await world.verify(library, code, "wl-030")).status_code == 200, answer.text


@FUZZ
@given(raw=st.binary(max_size=200).filter(lambda raw: not _parses_as_json(raw)))
@example(raw=b"")
@example(raw=b'"\x80"')
@example(raw=b'{"code": "EC1:\xff", "item_code": "wl-030"}')
@example(raw=b"\xef\xbb\xbf{}")
@example(raw=b'{"code": "EC1:", "item_code": "wl-030",}')
async def test_a_body_that_is_not_json_is_an_invalid_request(world: World, raw: bytes) -> None:
    library = await _library(world)
    url = "http://testserver.local/v1/verifications"
    headers = sign_request("POST", url, raw, library.key, library.key_id, library.alg, created=world.clock.now())

    answer = await world.client.post(
        "/v1/verifications", content=raw, headers={"Content-Type": "application/json", **headers}
    )

    assert problem(answer) == (400, "invalid_request"), answer.text


def _parses_as_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"code": 5, "item_code": "wl-030"}, "code", id="code-not-a-string"),
        pytest.param({"code": "", "item_code": "wl-030"}, "code", id="code-empty"),
        pytest.param({"code": "EC1:" + "0" * 2048, "item_code": "wl-030"}, "code", id="code-too-long"),
        pytest.param({"code": "EC1:x", "item_code": ["wl-030"]}, "item_code", id="item-code-a-list"),
        pytest.param({"code": "EC1:x", "item_code": "w" * 65}, "item_code", id="item-code-too-long"),
        pytest.param(
            {"code": "EC1:x", "item_code": "wl-030", "terminal_id": 7}, "terminal_id", id="terminal-id-number"
        ),
        pytest.param(
            {"code": "EC1:x", "item_code": "wl-030", "terminal_id": "T\x00"}, "terminal_id", id="terminal-nul"
        ),
        pytest.param({"code": "EC1:x", "item_code": "wl-030", "place": [1]}, "place", id="place-a-list"),
        pytest.param({"code": "EC1:x", "item_code": "wl-030", "place": {"a": ["\x00"]}}, "place", id="place-nul"),
        pytest.param({"item_code": "wl-030"}, "code", id="code-missing"),
        pytest.param({"code": "EC1:x"}, "item_code", id="item-code-missing"),
        pytest.param({"code": "EC1:x", "item_code": "wl-030", "card_id": "crd_x"}, "card_id", id="unknown-field"),
    ],
)
async def test_an_invalid_body_is_refused_naming_the_offending_field(
    world: World, body: dict[str, Any], field: str
) -> None:
    answer = await world.signed(await _library(world), "POST", "/v1/verifications", body)

    assert problem(answer) == (400, "invalid_request"), answer.text
    assert answer.json()["fields"] == [field], answer.text
