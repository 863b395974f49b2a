"""The raw routes in front of Litestar (ecard/kit/raw.py), driven as a server drives them: the body in pieces, a
body too large, a client that leaves mid-request. Whatever they hand on, Litestar answers as before."""

from __future__ import annotations

import json
from typing import Any

from ecard.kit.signing import sign_request
from tests.support import Actor, World

PATH = "/v1/verifications"


def _signed(world: World, merchant: Actor, body: bytes, path: str = PATH) -> list[tuple[bytes, bytes]]:
    headers = sign_request(
        "POST",
        f"http://testserver.local{path}",
        body,
        merchant.key,
        merchant.key_id,
        merchant.alg,
        created=world.clock.now(),
    )
    headers = {"Content-Type": "application/json", "Host": "testserver.local", **headers}
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def _call(
    world: World, headers: list[tuple[bytes, bytes]], pieces: list[bytes], *, leave: bool = False, path: str = PATH
) -> list[Any]:
    """The app's messages for a request whose body arrives in `pieces`; with `leave` the client goes away after them."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
    }
    incoming = [
        {"type": "http.request", "body": piece, "more_body": leave or n < len(pieces) - 1}
        for n, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "http.disconnect"}

    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await world.app(scope, receive, send)  # type: ignore[arg-type]  # a server speaks plain dicts
    return sent


def _answer(sent: list[Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    start = sent[0]
    assert start["type"] == "http.response.start"
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], headers, json.loads(body)


async def _recorded(world: World, card_id: str) -> int:
    count: int = await world.app.state.pool.fetchval("SELECT count(*) FROM verifications WHERE card_id = $1", card_id)
    return count


async def test_a_body_arriving_in_pieces_is_one_request_and_is_accepted(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    body = json.dumps({"code": await world.code(device), "item_code": "wl-030"}).encode()

    sent = await _call(world, _signed(world, merchant, body), [body[:10], body[10:50], body[50:]])

    status, headers, answer = _answer(sent)
    assert status == 200, answer
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode())
    assert answer["result"] == "accepted"
    assert await _recorded(world, device.ids["card_id"]) == 1


async def test_a_body_over_the_limit_is_refused_by_litestar_and_spends_nothing(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    body = json.dumps({"code": code, "item_code": "wl-030", "place": {"note": "x" * 70_000}}).encode()

    sent = await _call(
        world, _signed(world, merchant, body), [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    )

    status, headers, problem = _answer(sent)
    assert (status, headers["content-type"]) == (413, "application/problem+json"), problem
    assert await _recorded(world, device.ids["card_id"]) == 0
    assert (await world.verify(merchant, code)).status_code == 200


async def test_a_body_that_is_not_a_request_is_answered_by_the_controller_naming_the_field(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    body = json.dumps({"code": "EC1:X", "item_code": "wl-030", "colour": "blue"}).encode()

    sent = await _call(world, _signed(world, merchant, body), [body[:7], body[7:]])

    status, headers, problem = _answer(sent)
    assert (status, problem["code"], problem["fields"]) == (400, "invalid_request", ["colour"])
    assert headers["content-type"] == "application/problem+json"


async def test_a_client_that_leaves_before_its_body_is_whole_gets_nothing_and_spends_nothing(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    body = json.dumps({"code": code, "item_code": "wl-030"}).encode()

    sent = await _call(world, _signed(world, merchant, body), [body[:20]], leave=True)

    assert sent == []
    assert await _recorded(world, device.ids["card_id"]) == 0
    assert (await world.verify(merchant, code)).status_code == 200


async def test_a_refusal_of_the_raw_route_is_a_problem_with_its_code_and_counted_once(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)
    assert (await world.verify(merchant, code)).status_code == 200
    before = await world.client.get("/metrics")

    again = await world.verify(merchant, code)

    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "code_already_used"
    after = await world.client.get("/metrics")
    line = 'ecard_request_seconds_count{method="POST",route="/v1/verifications",status="409"}'
    assert _value(after.text, line) - _value(before.text, line) == 1


def _value(exposition: str, line: str) -> float:
    for row in exposition.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


async def test_a_code_minted_through_the_raw_route_is_json_not_to_be_stored_and_verifies(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    body = b'{"form": "ec1"}'

    sent = await _call(world, _signed(world, device, body, "/v1/codes"), [body[:5], body[5:]], path="/v1/codes")

    status, headers, answer = _answer(sent)
    assert (status, headers["content-type"], headers["cache-control"]) == (201, "application/json", "no-store")
    assert set(answer) == {"code", "expires_at", "refresh_after"}
    assert (await world.verify(merchant, answer["code"])).status_code == 200


async def test_a_code_request_the_raw_route_declines_is_checked_for_its_signature_first(world: World) -> None:
    device = await world.device()
    body = b'{"form": "hex"}'
    unsigned = [(b"content-type", b"application/json"), (b"host", b"testserver.local")]

    refused = _answer(await _call(world, unsigned, [body], path="/v1/codes"))
    wrong = _answer(await _call(world, _signed(world, device, body, "/v1/codes"), [body], path="/v1/codes"))

    assert (refused[0], refused[2]["code"]) == (401, "signature_missing")
    assert (wrong[0], wrong[2]["code"]) == (400, "invalid_request")
