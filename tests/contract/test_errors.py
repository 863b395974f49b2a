"""API.md, "Errors": RFC 9457 problem details with a stable `code`; bodies that do not validate are 400
`invalid_request` naming the field, on every route that reads a body, however malformed; no personal data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ecard.kit.signing import sign_request
from tests.contract.support import Integrator, problem_of, signers_for
from tests.support import Actor, World, ed25519_actor

NESTED_ARRAYS = b"[" * 5000 + b"]" * 5000
NESTED_OBJECTS = b'{"a":' * 3000 + b"1" + b"}" * 3000
BAD_BODIES = {
    "nested arrays": NESTED_ARRAYS,
    "nested objects": NESTED_OBJECTS,
    "nested in a field": b'{"name": ' + NESTED_ARRAYS + b"}",
    "not json": b'{"name": ',
    "not utf-8": b'{"name": "\xff\xfe"}',
    "not an object": b"[1, 2, 3]",
    "unknown fields only": b'{"zz_not_a_field": 123456789012345678901234567890}',
    "nan": b'{"name": NaN}',
}


async def test_a_refusal_is_problem_details_with_a_stable_code(api: Integrator) -> None:
    """`application/problem+json` (RFC 9457) with `status`, `title`, `detail`, and `code`."""
    answer = await api.client.get("/v1/catalog/items/wl-999")

    assert problem_of(answer) == (404, "item_unknown")
    assert isinstance(answer.json()["title"], str)
    assert isinstance(answer.json()["detail"], str)


async def test_a_body_that_does_not_validate_is_invalid_request_naming_the_field(api: Integrator) -> None:
    """Request bodies that do not validate are 400 `invalid_request` with the offending field named."""
    missing = await api.admin("POST", "/v1/admin/cardholders", {"name": "张小三", "region": "cq", "card_serial": "S1"})
    wrong_type = await api.admin(
        "POST",
        "/v1/admin/cardholders",
        {"name": "张小三", "id_number": 510107198505051230, "region": "cq", "card_serial": "S1"},
    )

    assert problem_of(missing) == (400, "invalid_request")
    assert "id_number" in missing.json()["fields"]
    assert problem_of(wrong_type) == (400, "invalid_request")
    assert "id_number" in wrong_type.json()["fields"]


async def test_no_error_carries_personal_data(api: Integrator) -> None:
    """No error carries personal data (the name and ID number sent are not echoed back)."""
    holder = await api.cardholder("王小明")
    channel = await api.channel()
    body = {
        "id_number": holder["id_number"],
        "name": "王大明",
        "device_public_key": ed25519_actor().jwk,
        "device_name": "phone",
    }

    answer = await api.signed(channel, "POST", "/v1/enrolments", body)

    assert problem_of(answer) == (403, "identity_mismatch")
    for personal in (holder["id_number"], "王小明", "王大明"):
        assert personal not in answer.text


class Callers:
    """A signed client of every kind and the ids of real things, so that each route gets as far as its body."""

    def __init__(self, api: Integrator, actors: dict[str, Actor], ids: dict[str, str]) -> None:
        self.api = api
        self.actors = actors
        self.ids = ids

    @classmethod
    async def make(cls, api: Integrator) -> Callers:
        channel = await api.channel()
        phone = await api.phone(channel=channel)
        merchant = await api.merchant(["wl-030", "wl-043"])
        partner = ed25519_actor()
        registered = await api.admin(
            "POST",
            "/v1/admin/partners",
            {"issuer": "tb", "name": "西藏电子社保卡", "base_url": "http://127.0.0.1:9", "public_key": partner.jwk},
        )
        assert registered.status_code == 201, registered.text
        partner.key_id = registered.json()["key_id"]
        ids = {
            "card_id": phone.ids["card_id"],
            "device_id": phone.ids["device_id"],
            "merchant_id": merchant.ids["merchant_id"],
            "channel_id": channel.ids["channel_id"],
            "terminal_id": "gate-1",
            "bill_id": "bil_notabill",
            "login_id": "lgn_notalogin",
            "complaint_id": "cmp_notacomplaint",
            "link_id": "fam_notalink",
            "batch_id": "dsb_notabatch",
            "event_id": "rsk_notanevent",
            "item_code": "wl-030",
            "issuer": "tb",
            "day": "2026-01-01",
        }
        terminal = await api.parties.terminal(merchant, "gate-1")
        actors = {"channel": channel, "device": phone, "merchant": merchant, "partner": partner, "terminal": terminal}
        return cls(api, actors, ids)

    async def send(self, method: str, template: str, body: bytes) -> httpx.Response:
        path = template.format(**self.ids)
        headers = {"Content-Type": "application/json"}
        kinds = signers_for(method, template)
        if kinds == ("operator",):
            headers["Authorization"] = f"Bearer {await self.api.parties.operator_token()}"
        elif kinds:
            actor = self.actors[kinds[0]]
            url = f"{self.api.client.base_url}{path}"
            headers.update(
                sign_request(
                    method, url, body, actor.key, actor.key_id, actor.alg, created=self.api.parties.clock.now()
                )
            )
        return await self.api.client.request(method, path, content=body, headers=headers)


async def routes_with_bodies(world: World) -> list[tuple[str, str]]:
    """Every operation of the served OpenAPI document that takes a JSON body, and `POST /v1/codes` (`{}`)."""
    document = (await world.client.get("/schema/openapi.json")).json()
    found = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("post", "put", "patch")
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    return [*found, ("POST", "/v1/codes")]


def refused_as_invalid(answer: httpx.Response) -> bool:
    if answer.status_code != 400:
        return False
    body: dict[str, Any] = answer.json()
    return body.get("code") == "invalid_request"


@pytest.mark.parametrize("kind", list(BAD_BODIES))
async def test_every_route_that_reads_a_body_refuses_a_bad_one_as_invalid_request(
    world: World, api: Integrator, kind: str
) -> None:
    """Bad input gets 400 `invalid_request`, never 500, deeply nested JSON included, on every route."""
    callers = await Callers.make(api)
    routes = await routes_with_bodies(world)
    assert len(routes) > 20

    answers = {f"{method} {path}": await callers.send(method, path, BAD_BODIES[kind]) for method, path in routes}

    wrong = {route: (a.status_code, a.text[:200]) for route, a in answers.items() if not refused_as_invalid(a)}
    assert wrong == {}
