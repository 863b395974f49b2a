"""Whatever a portal or a stranger sends, the OAuth endpoints answer an OAuth error, never a 500."""

from __future__ import annotations

import weakref
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.portal.oidc import PortalClient
from tests.support import Actor, World, problem

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(max_size=200)
# Authlib's client cannot sign a form holding non-ASCII text; the unsigned tests send any text
ASCII = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=200)
FORM_NAMES = st.sampled_from(
    [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "state",
        "nonce",
        "prompt",
        "display",
        "token",
    ]
)


def assert_oauth_error(answer: Any) -> None:
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"], answer.text


@FUZZ
@given(client_assertion=TEXT, client_id=st.none() | TEXT)
async def test_any_client_assertion_that_is_not_a_portals_is_invalid_client(
    world: World, police: PortalClient, client_assertion: str, client_id: str | None
) -> None:
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion,
    }
    if client_id is not None:
        form["client_id"] = client_id
    for endpoint in ("pushed_authorization_request_endpoint", "token_endpoint", "revocation_endpoint"):
        answer = await world.client.post(police.metadata[endpoint], data=form)
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), answer.text


@FUZZ
@given(form=st.dictionaries(FORM_NAMES, ASCII, max_size=8))
async def test_any_authenticated_form_gets_an_oauth_answer(
    world: World, police: PortalClient, form: dict[str, str]
) -> None:
    pushed = await police.push_raw(form)
    if pushed.status_code != 201:
        assert_oauth_error(pushed)
    assert_oauth_error(await police.token_raw(form))


@FUZZ
@given(body=st.binary(max_size=300))
async def test_any_body_at_the_par_endpoint_is_refused_cleanly(world: World, police: PortalClient, body: bytes) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await world.client.post(
        police.metadata["pushed_authorization_request_endpoint"], content=body, headers=headers
    )
    assert_oauth_error(answer)


_DEVICES: weakref.WeakKeyDictionary[World, Actor] = weakref.WeakKeyDictionary()
# what a path segment holds unencoded (the signing library insists on an encoded URL)
LOGIN_IDS = st.from_regex(r"[A-Za-z0-9_~-]{1,60}", fullmatch=True)


async def _device(world: World) -> Actor:
    """One citizen for all of a test's examples (hypothesis runs them against the same world)."""
    if world not in _DEVICES:
        _DEVICES[world] = await world.device()
    return _DEVICES[world]


@FUZZ
@given(login_id=LOGIN_IDS, number=st.none() | st.integers())
async def test_any_login_id_and_number_get_a_problem(world: World, login_id: str, number: int | None) -> None:
    answer = await world.signed(await _device(world), "POST", f"/v1/logins/{login_id}/approve", {"number": number})
    assert problem(answer)[0] in {400, 404}, answer.text
