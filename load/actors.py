"""Sets up the load's clients through the HTTP API: operator, channel, merchant, cardholders and devices."""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
from server import ecard_cli
from signer import Actor, ed25519_actor, id_number, p256_actor

from ecard.kit.signing import sign_request

ITEM = "wl-030"


@dataclass
class Cast:
    """Everyone the load speaks as."""

    merchant: Actor
    channel: Actor
    devices: list[Actor]


def totp_now(uri: str) -> str:
    totp = pyotp.parse_uri(uri)
    if not isinstance(totp, pyotp.TOTP):
        raise TypeError("the operator's TOTP URI is not time-based")
    return totp.now()


class Api:
    """A plain HTTP client of the service for setup (speed does not matter here)."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._token = ""

    def close(self) -> None:
        self._http.close()

    def _expect(self, answer: httpx.Response, status: int) -> dict[str, Any]:
        if answer.status_code != status:
            raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
        body: dict[str, Any] = answer.json()
        return body

    def login(self, operator: dict[str, str]) -> None:
        creds = {"username": operator["username"], "password": operator["password"]}
        answer = self._http.post("/v1/admin/sessions", json={**creds, "totp": totp_now(operator["totp_uri"])})
        self._token = self._expect(answer, 201)["token"]

    def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._http.post(path, json=body, headers={"Authorization": f"Bearer {self._token}"})
        return self._expect(answer, 201)

    def signed(self, actor: Actor, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        raw = json.dumps(body).encode()
        url = f"{self._http.base_url}".rstrip("/") + path
        headers = sign_request("POST", url, raw, actor.key, actor.key_id, actor.alg)
        answer = self._http.post(path, content=raw, headers={"Content-Type": "application/json", **headers})
        return self._expect(answer, status)


def add_operator(env: dict[str, str]) -> dict[str, str]:
    """`ecard operator add` with the run's environment: username, password, TOTP URI."""
    out: dict[str, str] = json.loads(ecard_cli(env, "operator", "add", "--username", f"loadop-{secrets.token_hex(4)}"))
    return out


def _merchant(api: Api) -> Actor:
    actor = ed25519_actor()
    body = {"name": "武隆区图书馆(压测)", "region": "cq", "items": [ITEM], "public_key": actor.jwk}
    answer = api.admin("/v1/admin/merchants", body)
    actor.key_id, actor.ids["merchant_id"] = answer["key_id"], answer["merchant_id"]
    return actor


def _channel(api: Api) -> Actor:
    actor = ed25519_actor()
    answer = api.admin("/v1/admin/channels", {"name": "压测渠道App", "public_key": actor.jwk})
    actor.key_id, actor.ids["channel_id"] = answer["key_id"], answer["channel_id"]
    return actor


def _device(api: Api, channel: Actor, rng: random.Random, index: int, region: str = "cq") -> Actor:
    name, number = f"压测{index:04d}", id_number(rng)
    serial = f"LOAD{rng.randrange(10**12):012d}"
    api.admin("/v1/admin/cardholders", {"name": name, "id_number": number, "region": region, "card_serial": serial})
    actor = p256_actor()
    body = {"id_number": number, "name": name, "device_public_key": actor.jwk, "device_name": "load"}
    answer = api.signed(channel, "/v1/enrolments", body)
    actor.key_id = answer["device_key_id"]
    actor.ids.update(device_id=answer["device_id"], card_id=answer["card_id"])
    return actor


def set_up(base_url: str, env: dict[str, str], devices: int) -> Cast:
    """An operator (command line, then TOTP login), a channel, a merchant for wl-030, and enrolled devices."""
    api = Api(base_url)
    try:
        api.login(add_operator(env))
        channel = _channel(api)
        merchant = _merchant(api)
        rng = random.Random(secrets.randbits(64))
        return Cast(merchant, channel, [_device(api, channel, rng, i) for i in range(devices)])
    finally:
        api.close()


def citizens(base_url: str, env: dict[str, str], devices: int, region: str) -> tuple[Actor, list[Actor]]:
    """An operator, a channel and `devices` devices of cardholders of `region`, enrolled through that channel."""
    api = Api(base_url)
    try:
        api.login(add_operator(env))
        channel = _channel(api)
        rng = random.Random(secrets.randbits(64))
        return channel, [_device(api, channel, rng, i, region) for i in range(devices)]
    finally:
        api.close()
