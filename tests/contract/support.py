"""What the contract tests send: API.md's requests with exactly the fields it shows, over a plain HTTP client.

`Integrator` plays operators, channels, merchants and phones as API.md tells them to, signing with
`ecard.kit.signing.sign_request` (the components, parameters and Content-Digest of "Signed requests").
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from ecard.kit.signing import sign_request
from tests.support import Actor, Parties, ed25519_actor, id_number, p256_actor

PIN = "135790"


def signers_for(method: str, path: str) -> tuple[str, ...]:
    """Who API.md says calls a route: the kinds of signed client, ("operator",) for a session, () when public."""
    if path.startswith("/v1/admin/") and path != "/v1/admin/sessions":
        return ("operator",)
    if path in (
        "/v1/enrolments",
        "/v1/enrolments/tickets",
        "/v1/devices/{device_id}/pin-reset",
        "/v1/family/{link_id}/consent",
    ):
        return ("channel",)
    if path == "/v1/verifications":
        return ("merchant", "terminal")
    if path == "/v1/offline-taps":
        return ("terminal",)
    if path == "/v1/federation/verifications":
        return ("partner",)
    if path == "/v1/bills/{bill_id}" and method == "GET":
        return ("merchant", "device")
    if path == "/v1/bills/{bill_id}/pay":
        return ("device",)
    if path.startswith(("/v1/bills", "/v1/statements")):
        return ("merchant",)
    if path.startswith(("/v1/codes", "/v1/devices/", "/v1/cards/", "/v1/logins/")):
        return ("device",)
    return ()


def problem_of(answer: httpx.Response) -> tuple[int, str]:
    """(status, code) of an RFC 9457 refusal, after checking the members API.md ("Errors") promises."""
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    body = answer.json()
    assert {"status", "title", "detail", "code"} <= body.keys(), body
    assert body["status"] == answer.status_code
    return answer.status_code, body["code"]


class Integrator:
    """The parties of API.md, each sending exactly what API.md shows."""

    def __init__(self, parties: Parties) -> None:
        self.parties = parties
        self.client = parties.client

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An operator call: `Authorization: Bearer <token>` from `POST /v1/admin/sessions`."""
        return await self.parties.admin(method, path, body)

    async def signed(self, actor: Actor, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        """A machine client's call, signed as API.md asks: JSON body, Content-Digest, Signature-Input, Signature."""
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        url = f"{str(self.client.base_url).rstrip('/')}{path}"
        signature = sign_request(method, url, raw, actor.key, actor.key_id, actor.alg, created=self.parties.clock.now())
        sent = {**({"Content-Type": "application/json"} if raw else {}), **signature, **headers}
        return await self.client.request(method, path, content=raw, headers=sent)

    async def merchant(self, items: list[str], name: str = "武隆区图书馆", actor: Actor | None = None) -> Actor:
        """`POST /v1/admin/merchants` `{"name","region","items","public_key"}`: those four fields, no others."""
        actor = actor or ed25519_actor()
        body = {"name": name, "region": "cq", "items": items, "public_key": actor.jwk}
        answer = await self.admin("POST", "/v1/admin/merchants", body)
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["key_id"]
        actor.ids["merchant_id"] = answer.json()["merchant_id"]
        return actor

    async def channel(self, actor: Actor | None = None) -> Actor:
        """`POST /v1/admin/channels` `{"name","public_key"}`."""
        actor = actor or ed25519_actor()
        answer = await self.admin("POST", "/v1/admin/channels", {"name": "某银行App", "public_key": actor.jwk})
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["key_id"]
        actor.ids["channel_id"] = answer.json()["channel_id"]
        return actor

    async def cardholder(self, name: str = "张小三", region: str = "cq") -> dict[str, str]:
        """`POST /v1/admin/cardholders` `{"name","id_number","region","card_serial"}`."""
        number = id_number()
        body = {"name": name, "id_number": number, "region": region, "card_serial": f"CQ-{random.randint(0, 10**12)}"}
        answer = await self.admin("POST", "/v1/admin/cardholders", body)
        assert answer.status_code == 201, answer.text
        return {"card_id": answer.json()["card_id"], "name": name, "id_number": number}

    async def phone(
        self, name: str = "张小三", channel: Actor | None = None, actor: Actor | None = None, region: str = "cq"
    ) -> Actor:
        """A cardholder's phone enrolled by a channel: `POST /v1/enrolments` with API.md's four fields."""
        holder = await self.cardholder(name, region)
        channel = channel or await self.channel()
        actor = actor or p256_actor()
        body = {
            "id_number": holder["id_number"],
            "name": name,
            "device_public_key": actor.jwk,
            "device_name": "张小三的手机",
        }
        answer = await self.signed(channel, "POST", "/v1/enrolments", body)
        assert answer.status_code == 201, answer.text
        made = answer.json()
        actor.key_id = made["device_key_id"]
        assert made["card_id"] == holder["card_id"], made
        actor.ids.update(holder, device_id=made["device_id"])
        return actor

    async def pin(self, phone: Actor, pin: str = PIN) -> httpx.Response:
        """`PUT /v1/devices/{device_id}/pin` `{"pin"}`."""
        return await self.signed(phone, "PUT", f"/v1/devices/{phone.ids['device_id']}/pin", {"pin": pin})

    async def code(self, phone: Actor) -> str:
        """`POST /v1/codes` `{}`: a fresh dynamic code."""
        answer = await self.signed(phone, "POST", "/v1/codes", {})
        assert answer.status_code == 201, answer.text
        code: str = answer.json()["code"]
        return code

    async def verify(self, venue: Actor, code: str, item_code: str, **optional: Any) -> httpx.Response:
        """`POST /v1/verifications` `{"code","item_code"}`, with `terminal_id` and `place` when given."""
        return await self.signed(venue, "POST", "/v1/verifications", {"code": code, "item_code": item_code, **optional})

    async def card_status(self, card_id: str, status: str) -> httpx.Response:
        """`POST /v1/admin/cards/{card_id}/status` `{"status","reason"}`."""
        body = {"status": status, "reason": "持卡人申请"}
        return await self.admin("POST", f"/v1/admin/cards/{card_id}/status", body)
