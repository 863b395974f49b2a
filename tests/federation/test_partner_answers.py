"""What a partner issuer says is believed only when it is signed, well formed and within what the item discloses;
what a partner asks is heard only when it is signed for this protocol and this server. A scripted partner, `zz`,
plays every misbehaviour on a loopback port."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.app import create_app
from ecard.codes import kid_of
from ecard.codes.token import mint
from ecard.config import Settings
from ecard.kit.crypto import b64u
from ecard.kit.jwk import ALG_ED25519, parse_public_jwk, public_jwk, thumbprint
from ecard.kit.peers import MAX_ANSWER_BYTES, insecure
from ecard.kit.signing import sign_answer, sign_request, verify_answer
from tests.support import Actor, World, problem

BASE = "http://testserver.local"
JOINT = "wl-030"  # discloses a pseudonym and the masked name
TAG = "ecard-federation"

# (status, body, headers) a partner sends back, given the headers and body of our request
Answer = Callable[[dict[str, str], bytes], tuple[int, bytes, dict[str, str]]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # partners' requests reach this service at the test client's host; every misbehaviour must reach the
    # partner, so the circuit breaker must not open in between
    return dataclasses.replace(settings, public_url=BASE, partner_breaker_failures=1000)


class ScriptedPartner:
    """Partner issuer `zz` (region `sc`): publishes a code key, answers verifications as `answer` says."""

    issuer = "zz"

    def __init__(self) -> None:
        self.code_key = ed25519.Ed25519PrivateKey.generate()
        self.request_key = ed25519.Ed25519PrivateKey.generate()
        self.request_jwk = public_jwk(self.request_key.public_key())
        self.keyid = f"{self.issuer}:{thumbprint(self.request_jwk)}"
        self.answer: Answer = self.signed_accept({"region": "sc", "pseudonym": "psn_abcdefgh", "name_masked": "李*明"})
        self.asked: list[tuple[dict[str, str], bytes]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def code(self) -> str:
        """An EC1 code of this issuer, good under its published key (the partner alone knows whose card it is)."""
        now = int(time.time())
        raw = self.code_key.public_key().public_bytes_raw()
        return mint(self.code_key, kid_of(raw), self.issuer, now, now + 60, os.urandom(16), os.urandom(60))

    def sign(self, status: int, body: bytes, request_headers: dict[str, str], **change: Any) -> dict[str, str]:
        key = change.get("key", self.request_key)
        return sign_answer(status, body, request_headers, key, self.keyid, ALG_ED25519, change.get("tag", TAG))

    def signed_accept(self, card: Any, **fields: Any) -> Answer:
        def answer(request_headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
            body = accept_body(card, **fields)
            return 200, body, self.sign(200, body, request_headers)

        return answer

    def _keys(self) -> bytes:
        raw = self.code_key.public_key().public_bytes_raw()
        jwk = {**public_jwk(self.code_key.public_key()), "kid": b64u(kid_of(raw)), "status": "active"}
        return json.dumps({"issuer": self.issuer, "keys": [jwk]}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send(200, partner._keys(), {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                partner.asked.append((headers, body))
                self._send(*partner.answer(headers, body))

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def accept_body(card: Any, **fields: Any) -> bytes:
    answer = {
        "result": "accepted",
        "verification_id": "vrf_remote_1",
        "item_code": JOINT,
        "verified_at": "2025-06-01T08:00:00Z",
        "card": card,
        **fields,
    }
    return json.dumps(answer, ensure_ascii=False).encode()


@pytest.fixture
async def partner(world: World) -> AsyncIterator[ScriptedPartner]:
    with ScriptedPartner() as scripted:
        registered = await world.admin(
            "POST",
            "/v1/admin/partners",
            {
                "issuer": scripted.issuer,
                "name": "某省电子社保卡",
                "base_url": scripted.base,
                "public_key": {**scripted.request_jwk, "kid": scripted.keyid.partition(":")[2]},
                "region": "sc",
            },
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["code_keys"], registered.text
        yield scripted


async def test_a_partners_accept_reaches_the_terminal_cut_to_what_the_item_discloses(
    world: World, partner: ScriptedPartner
) -> None:
    library = await world.merchant([JOINT])
    # a partner telling more than a library may learn: the full name, the ID number, something unheard of
    partner.answer = partner.signed_accept(
        {
            "region": "sc",
            "pseudonym": "psn_abcdefgh",
            "name_masked": "李*明",
            "name": "李小明",
            "id_number": "510107198505051230",
            "photo": "data:image/png;base64,AAAA",
        }
    )
    answer = await world.verify(library, partner.code(), JOINT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"] == {"region": "sc", "pseudonym": "psn_abcdefgh", "name_masked": "李*明"}
    assert answer.json()["verification_id"] != "vrf_remote_1"  # our own id; the partner's is kept beside it
    async with world.app.state.pool.acquire() as conn:
        disclosed = await conn.fetchval("SELECT disclosed FROM forwarded_verifications")
    assert disclosed == ["name_masked", "pseudonym"]


async def test_accepts_arriving_together_are_each_recorded_under_the_id_their_terminal_was_given(
    world: World, partner: ScriptedPartner
) -> None:
    library = await world.merchant([JOINT])
    card = {"region": "sc", "pseudonym": "psn_abcdefgh"}

    def fresh_accept(request_headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = accept_body(card, verification_id=f"vrf_remote_{os.urandom(6).hex()}")
        return 200, body, partner.sign(200, body, request_headers)

    partner.answer = fresh_accept
    # as many at once as the scripted partner's listen backlog (http.server's 5) lets through
    answers = await asyncio.gather(*(world.verify(library, partner.code(), JOINT) for _ in range(5)))

    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers if a.status_code != 200]
    async with world.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT verification_id, remote_verification_id FROM forwarded_verifications")
    assert sorted(r["verification_id"] for r in rows) == sorted(a.json()["verification_id"] for a in answers)
    assert len({r["remote_verification_id"] for r in rows}) == 5


async def test_an_accept_under_a_verification_id_the_partner_gave_before_is_issuer_unavailable(
    world: World, partner: ScriptedPartner
) -> None:
    library = await world.merchant([JOINT])
    # every answer signed afresh for its own request, every one under the same verification id
    partner.answer = partner.signed_accept({"region": "sc", "pseudonym": "psn_abcdefgh"}, verification_id="vrf_r_1")
    assert (await world.verify(library, partner.code(), JOINT)).status_code == 200

    refused = await world.verify(library, partner.code(), JOINT)

    assert problem(refused) == (503, "issuer_unavailable"), refused.text
    assert refused.headers.get("retry-after")
    async with world.app.state.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM forwarded_verifications") == 1
    metrics = (await world.client.get("/metrics")).text
    assert 'ecard_partner_calls_total{issuer="zz",outcome="malformed"} 1.0' in metrics


def _replayed(partner: ScriptedPartner) -> Answer:
    """The partner's genuine signed answer to an earlier request, sent again as the answer to this one."""
    earlier: list[tuple[bytes, dict[str, str]]] = []

    def answer(request_headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        if not earlier:
            body = accept_body({"region": "sc", "pseudonym": "psn_abcdefgh"})
            earlier.append((body, partner.sign(200, body, request_headers)))
        return 200, *earlier[0]

    return answer


def _misbehaviours(partner: ScriptedPartner) -> dict[str, Answer]:
    good = {"region": "sc", "pseudonym": "psn_abcdefgh", "name_masked": "李*明"}

    def unsigned(_: dict[str, str], __: bytes) -> tuple[int, bytes, dict[str, str]]:
        return 200, accept_body(good), {}

    def signed_by_another_key(headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = accept_body(good)
        return 200, body, partner.sign(200, body, headers, key=ed25519.Ed25519PrivateKey.generate())

    def signed_for_another_protocol(headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = accept_body(good)
        return 200, body, partner.sign(200, body, headers, tag="ecard-bank")

    def body_changed_after_signing(headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        signed = partner.sign(200, accept_body(good), headers)
        return 200, accept_body({**good, "name_masked": "王*五"}), signed

    def not_json(headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        return 200, b"<html>accepted</html>", partner.sign(200, b"<html>accepted</html>", headers)

    def too_large(headers: dict[str, str], _: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = accept_body(good, padding="x" * MAX_ANSWER_BYTES)
        return 200, body, partner.sign(200, body, headers)

    return {
        "unsigned": unsigned,
        "signed by another key": signed_by_another_key,
        "signed for another protocol": signed_for_another_protocol,
        "body changed after signing": body_changed_after_signing,
        "not JSON": not_json,
        "too large": too_large,
        "not an accept": partner.signed_accept(good, result="maybe"),
        "no verification id": partner.signed_accept(good, verification_id=None),
        "a verification id that is not an id": partner.signed_accept(good, verification_id="vrf 1; drop"),
        "a card that is not an object": partner.signed_accept(["region", "sc"]),
        "a value that is not a string": partner.signed_accept({**good, "pseudonym": 12345678}),
        "no region": partner.signed_accept({"pseudonym": "psn_abcdefgh", "name_masked": "李*明"}),
        "a region nobody knows": partner.signed_accept({**good, "region": "atlantis"}),
        "a pseudonym of the wrong shape": partner.signed_accept({**good, "pseudonym": "<script>"}),
        "a masked name of 200 characters": partner.signed_accept({**good, "name_masked": "李" * 200}),
        "a masked name with control characters": partner.signed_accept({**good, "name_masked": "李\x1b[2J"}),
    }


async def test_an_accept_that_is_unsigned_malformed_or_beyond_bounds_is_issuer_unavailable(
    world: World, partner: ScriptedPartner
) -> None:
    library = await world.merchant([JOINT])
    code = partner.code()
    for name, answer in _misbehaviours(partner).items():
        partner.answer = answer
        asked = len(partner.asked)
        refused = await world.verify(library, code, JOINT)
        assert len(partner.asked) == asked + 1, name  # the partner was asked, and said this
        assert problem(refused) == (503, "issuer_unavailable"), (name, refused.text)
        assert refused.headers.get("retry-after"), name
    # the replayed answer is refused although it was the partner's genuine answer the first time
    partner.answer = _replayed(partner)
    assert (await world.verify(library, code, JOINT)).status_code == 200
    assert problem(await world.verify(library, code, JOINT)) == (503, "issuer_unavailable")
    async with world.app.state.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM forwarded_verifications") == 1
    metrics = (await world.client.get("/metrics")).text
    assert 'ecard_partner_calls_total{issuer="zz",outcome="malformed"}' in metrics


async def test_a_partners_refusal_is_relayed_in_our_words_and_an_unknown_one_is_issuer_unavailable(
    world: World, partner: ScriptedPartner
) -> None:
    library = await world.merchant([JOINT])

    def refusal(code: str, detail: str) -> Answer:
        body = json.dumps({"status": 409, "code": code, "detail": detail}).encode()
        return lambda _, __: (409, body, {})

    partner.answer = refusal("code_already_used", "<img src=x onerror=alert(1)> " * 100)
    relayed = await world.verify(library, partner.code(), JOINT)
    assert problem(relayed) == (409, "code_already_used")
    assert "<img" not in relayed.text
    partner.answer = refusal("approved_anyway", "trust me")
    assert problem(await world.verify(library, partner.code(), JOINT)) == (503, "issuer_unavailable")


async def test_a_partners_request_signed_as_api_md_shows_is_heard(world: World, partner: ScriptedPartner) -> None:
    """API.md's partner request: RFC 9421 "as above" (no tag, no @authority) is still a partner's request."""
    citizen: Actor = await world.device(name="王小红")
    merchant = {"id": "m-1", "name": "成都图书馆", "region": "sc"}
    body = {"code": await world.code(citizen), "item_code": JOINT, "merchant": merchant}
    answer = await _ask_as_partner(world, partner, body, tag=None)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["name_masked"] == "王*红"


async def _ask_as_partner(
    world: World, partner: ScriptedPartner, body: dict[str, Any], *, tag: str | None = TAG, url: str | None = None
) -> httpx.Response:
    raw = json.dumps(body).encode()
    signed_for = url or f"{BASE}/v1/federation/verifications"
    headers = sign_request("POST", signed_for, raw, partner.request_key, partner.keyid, ALG_ED25519, tag=tag)
    return await world.client.post(
        "/v1/federation/verifications", content=raw, headers={"Content-Type": "application/json", **headers}
    )


async def test_a_partners_request_is_heard_only_signed_for_this_protocol_and_this_server(
    world: World, partner: ScriptedPartner
) -> None:
    citizen: Actor = await world.device(name="王小红")
    code = await world.code(citizen)
    body = {"code": code, "item_code": JOINT, "merchant": {"id": "m-1", "name": "成都图书馆", "region": "sc"}}

    for refused in (
        await _ask_as_partner(world, partner, body, tag="ecard-bank"),  # made for another protocol
        # made for another server, sent here
        await _ask_as_partner(world, partner, body, url="https://ecard.other.example/v1/federation/verifications"),
    ):
        assert problem(refused) == (401, "signature_invalid"), refused.text
    # none of those used the code up; this one does, and its answer is signed by our key for partners
    answer = await _ask_as_partner(world, partner, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["name_masked"] == "王*红"
    keys = (await world.client.get("/v1/issuer/request-keys", params={"audience": "federation"})).json()
    (ours,) = keys["keys"]
    key, alg, _ = parse_public_jwk({k: ours[k] for k in ("kty", "crv", "x")})
    sent = dict(answer.request.headers)
    verify_answer(200, answer.headers, answer.content, sent, key, alg, f"cq:{ours['kid']}", TAG, time.time(), 300)
    assert problem(await _ask_as_partner(world, partner, body)) == (409, "code_already_used")


async def test_partner_base_urls_are_https_unless_on_loopback(world: World) -> None:
    jwk = {**public_jwk(ed25519.Ed25519PrivateKey.generate().public_key()), "kid": "k1"}
    for issuer, base_url in (("aa", "http://ecard.sc.example.cn"), ("ab", "http://10.1.2.3:8000")):
        refused = await world.admin(
            "POST", "/v1/admin/partners", {"issuer": issuer, "name": "某省", "base_url": base_url, "public_key": jwk}
        )
        assert problem(refused) == (400, "invalid_request"), base_url
        assert refused.json()["fields"] == ["base_url"]
    for issuer, base_url in (("ac", "https://127.0.0.1:1"), ("ad", "http://127.0.0.1:1")):
        made = await world.admin(
            "POST", "/v1/admin/partners", {"issuer": issuer, "name": "某省", "base_url": base_url, "public_key": jwk}
        )
        assert made.status_code == 201, made.text
    assert insecure("http://localhost.attacker.example") is not None
    assert insecure("http://[::1]:8000") is None


def test_a_yukuai_platform_over_plain_http_off_loopback_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="ECARD_YUKUAI_URL"):
        create_app(dataclasses.replace(settings, yukuai_url="http://ykb.cq.example.cn"))
    create_app(dataclasses.replace(settings, yukuai_url="https://ykb.cq.example.cn"))
    create_app(dataclasses.replace(settings, yukuai_url="http://127.0.0.1:8200"))
