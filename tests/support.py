"""What the tests play: operators, channels, merchants and devices talking to the service through its HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
from litestar import Litestar

from ecard.kit.audit import verify_chain
from ecard.kit.clock import MovableClock
from ecard.kit.signing import sign_request
from tests.clientkey import ClientKey, made_up_id_number

# the tests' parties are clients like any other: one key type, one id-number maker for all tools
Actor = ClientKey
ed25519_actor = ClientKey.ed25519
p256_actor = ClientKey.p256
id_number = made_up_id_number


# Where the run's controller tells its xdist workers the services and the template database (tests/conftest.py);
# an ECARD_* name, so that the processes tests start (which drop every ECARD_* setting) never see it.
SERVICES_ENV = "ECARD_TEST_SERVICES"


def template_database() -> str:
    """The name of this run's migrated template database, to copy for a live server's database of its own."""
    return str(json.loads(os.environ[SERVICES_ENV])["template"])


def totp_now(uri: str, at: float | None = None) -> str:
    """The one-time code an operator's authenticator app would show for `uri`."""
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp.at(int(at)) if at is not None else totp.now()


class Parties:
    """The parties around a service (operators, channels, merchants, devices), talking to it over `client`."""

    def __init__(self, client: httpx.AsyncClient, clock: MovableClock) -> None:
        self.client = client
        self.clock = clock
        self._token: str | None = None

    async def new_operator(self, username: str) -> tuple[str, str]:
        """(password, totp_uri) of a new operator, made the way an installation makes one."""
        raise NotImplementedError

    async def operator_token(self) -> str:
        if self._token is None:
            username = f"op{random.randint(0, 10**9)}"
            password, uri = await self.new_operator(username)
            answer = await self.client.post(
                "/v1/admin/sessions",
                json={"username": username, "password": password, "totp": totp_now(uri)},
            )
            assert answer.status_code == 201, answer.text
            self._token = answer.json()["token"]
        return self._token

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.operator_token()}"}
        return await self.client.request(method, path, json=body, headers=headers)

    async def signed(
        self,
        actor: Actor,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        created: float | None = None,
        nonce: str | None = None,
    ) -> httpx.Response:
        raw = b"" if body is None else json.dumps(body).encode()
        url = f"{str(self.client.base_url).rstrip('/')}{path}"
        signed = sign_request(
            method,
            url,
            raw,
            actor.key,
            actor.key_id,
            actor.alg,
            created=self.clock.now() if created is None else created,
            nonce=nonce,
        )
        all_headers = {"Content-Type": "application/json", **signed, **(headers or {})}
        return await self.client.request(method, path, content=raw, headers=all_headers)

    async def merchant(
        self,
        items: list[str],
        actor: Actor | None = None,
        name: str = "武隆区图书馆",
        functions: list[str] | None = None,
        region: str = "cq",
    ) -> Actor:
        """A merchant entitled to `items`; its functions are those of the items unless given."""
        actor = actor or ed25519_actor()
        if functions is None:
            listed = await self.client.get("/v1/catalog/items")
            by_code = {item["item_code"]: item for item in listed.json()["items"]}
            functions = sorted({f for code in items if code in by_code for f in by_code[code]["functions"]})
        body = {"name": name, "region": region, "items": items, "public_key": actor.jwk}
        if functions:
            body["functions"] = functions
        answer = await self.admin("POST", "/v1/admin/merchants", body)
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["key_id"]
        actor.ids["merchant_id"] = answer.json()["merchant_id"]
        return actor

    async def terminal(
        self, merchant: Actor, terminal_id: str, region: str = "wulong", actor: Actor | None = None
    ) -> Actor:
        """A terminal of `merchant` at a place in `region`, signing with its own key."""
        actor = actor or ed25519_actor()
        place = {
            "name": f"{terminal_id}服务台",
            "address": "武隆区芙蓉路1号",
            "region": region,
            "lat": 29.32,
            "lon": 107.76,
        }
        answer = await self.admin(
            "POST",
            f"/v1/admin/merchants/{merchant.ids['merchant_id']}/terminals",
            {"terminal_id": terminal_id, "place": place, "public_key": actor.jwk},
        )
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["key_id"]
        actor.ids.update(merchant_id=merchant.ids["merchant_id"], terminal_id=terminal_id, region=region)
        return actor

    async def channel(self, actor: Actor | None = None) -> Actor:
        actor = actor or ed25519_actor()
        answer = await self.admin("POST", "/v1/admin/channels", {"name": "某银行App", "public_key": actor.jwk})
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["key_id"]
        actor.ids["channel_id"] = answer.json()["channel_id"]
        return actor

    async def cardholder(self, name: str = "张小三", number: str | None = None, region: str = "cq") -> dict[str, str]:
        number = number or id_number()
        answer = await self.admin(
            "POST",
            "/v1/admin/cardholders",
            {"name": name, "id_number": number, "region": region, "card_serial": f"S{random.randint(0, 10**12)}"},
        )
        assert answer.status_code == 201, answer.text
        return {**answer.json(), "name": name, "id_number": number}

    async def device(
        self, name: str = "张小三", channel: Actor | None = None, actor: Actor | None = None, region: str = "cq"
    ) -> Actor:
        """A citizen with a card, enrolled on a P-256 phone key."""
        holder = await self.cardholder(name, region=region)
        channel = channel or await self.channel()
        actor = actor or p256_actor()
        answer = await self.signed(
            channel,
            "POST",
            "/v1/enrolments",
            {"id_number": holder["id_number"], "name": name, "device_public_key": actor.jwk, "device_name": "phone"},
        )
        assert answer.status_code == 201, answer.text
        actor.key_id = answer.json()["device_key_id"]
        actor.ids.update(
            device_id=answer.json()["device_id"],
            card_id=answer.json()["card_id"],
            id_number=holder["id_number"],
            name=name,
        )
        return actor

    async def code(self, device: Actor) -> str:
        answer = await self.signed(device, "POST", "/v1/codes", {})
        assert answer.status_code == 201, answer.text
        code: str = answer.json()["code"]
        return code

    async def verify(self, merchant: Actor, code: str, item_code: str = "wl-030", **extra: Any) -> httpx.Response:
        return await self.signed(merchant, "POST", "/v1/verifications", {"code": code, "item_code": item_code, **extra})

    async def set_status(self, card_id: str, status: str, reason: str = "test") -> httpx.Response:
        return await self.admin("POST", f"/v1/admin/cards/{card_id}/status", {"status": status, "reason": reason})

    async def portal(
        self,
        claims: list[str],
        redirect_uris: list[str],
        items: list[str] | None = None,
        name: str = "警快办",
        actor: Actor | None = None,
    ) -> Actor:
        """A portal (OpenID Connect client) signing its client assertions with a P-256 key; `client_id` in ids."""
        actor = actor or p256_actor()
        body = {
            "name": name,
            "redirect_uris": redirect_uris,
            "jwks": {"keys": [{**actor.jwk, "kid": "portal-key-1"}]},
            "claims": claims,
            "allowed_items": items or ["wl-010"],
        }
        answer = await self.admin("POST", "/v1/admin/portals", body)
        assert answer.status_code == 201, answer.text
        actor.key_id = "portal-key-1"
        actor.ids["client_id"] = answer.json()["client_id"]
        return actor


class World(Parties):
    """The service under test, run in the test's own event loop, and the parties around it."""

    def __init__(self, app: Litestar, client: httpx.AsyncClient, clock: MovableClock) -> None:
        super().__init__(client, clock)
        self.app = app

    async def new_operator(self, username: str) -> tuple[str, str]:
        password, uri = await self.app.state.operators.add(username)
        return password, uri

    async def audit_intact(self) -> bool:
        """Seal every audit entry written so far, then check the whole chain with the service's key."""
        for _ in range(100):
            while await self.app.state.audit_sealer.seal(wait=True):
                pass
            check = await verify_chain(self.app.state.pool, self.app.state.secret_keys.audit_key)
            if check.unsealed == 0 or not check.intact:
                return check.intact
            # an entry of a transaction still open (a background task's): it is sealed once that ends
            await asyncio.sleep(0.05)
        return False


def problem(answer: httpx.Response) -> tuple[int, str]:
    """(status, code) of a refusal, after checking it is RFC 9457 problem details."""
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    body = answer.json()
    assert {"status", "title", "detail", "code"} <= body.keys()
    assert body["status"] == answer.status_code
    return answer.status_code, body["code"]


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


async def ecard_cli(world: World, *args: str) -> CliRun:
    """`ecard <args>` in a process of its own, pointed at the service's database, cache, prefix and secret."""
    settings = world.app.state.settings
    env = {name: value for name, value in os.environ.items() if not name.startswith("ECARD_")}
    env.update(
        ECARD_DATABASE_URL=settings.database_url,
        ECARD_REDIS_URL=settings.redis_url,
        ECARD_REDIS_PREFIX=settings.redis_prefix,
        ECARD_SECRET_KEY=settings.secret_key,
        ECARD_ISSUER_ID=settings.issuer_id,
        ECARD_DATA_DIR=str(settings.data_dir),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecard.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return CliRun(process.returncode, out.decode(), err.decode())
