"""Bootstrapping a database (schema, catalog, issuer key) and the demo data of the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecard.cards import Cards
from ecard.catalog import Catalog
from ecard.catalog.seed import catalog_rows
from ecard.catalog.store import seed as seed_catalog
from ecard.clients import ClientDirectory
from ecard.codes import KeyRing
from ecard.config import Settings
from ecard.kit.clock import SystemClock
from ecard.kit.crypto import Keys, load_master_key, write_private_file
from ecard.kit.infra import connections, migrate
from ecard.kit.jwk import private_jwk, public_jwk
from ecard.merchants import Merchants
from ecard.operators import Operators
from ecard.portal import NewPortal, Portals

DEMO_DIR = "demo"
DEMO_MARKER = "demo.json"
# An invented person with a well-formed, check-digit-valid ID number: demo data, not anyone's.
DEMO_HOLDER = {
    "name": "张小三",
    "id_number": "500101199001010018",
    "region": "cq",
    "card_serial": "DEMO-0001",
}
DEMO_ITEMS = ["wl-030", "wl-031", "wl-011", "wl-040"]
# The demo 警快办 portal: an OpenID Connect client on a loopback redirect, for trying portal login (docs/portal.md).
DEMO_PORTAL_REDIRECT = "http://127.0.0.1:8765/callback"
DEMO_PORTAL_KID = "jkb-demo-1"


async def bootstrap(settings: Settings) -> list[str]:
    """Migrate, seed the catalog and make sure an issuer key exists. Idempotent."""
    assert settings.database_url
    assert settings.redis_url
    applied = await migrate(settings.database_url)
    async with connections(settings.database_url, settings.redis_url) as (pool, redis):
        async with pool.acquire() as conn, conn.transaction():
            await seed_catalog(conn, catalog_rows())
        keys = Keys.from_master(load_master_key(settings))
        await KeyRing.from_settings(pool, redis, keys, SystemClock(), settings).ensure_active()
    return applied


async def seed_demo(settings: Settings) -> dict[str, Any] | None:
    """Once per data folder: a demo operator, channel, merchant and cardholder. Returns what to print, else None."""
    marker = settings.data_dir / DEMO_DIR / DEMO_MARKER
    if marker.exists():
        return None
    assert settings.database_url
    assert settings.redis_url
    async with connections(settings.database_url, settings.redis_url) as (pool, redis):
        keys = Keys.from_master(load_master_key(settings))
        clock = SystemClock()
        directory = ClientDirectory(pool, keys)
        merchants = Merchants(pool, directory, Catalog(pool))
        operators = Operators(pool, redis, keys, clock, settings.redis_prefix, settings.session_ttl_s)
        password, totp_uri = await operators.add("demo-operator")
        channel_key = ed25519.Ed25519PrivateKey.generate()
        merchant_key = ed25519.Ed25519PrivateKey.generate()
        channel = await merchants.register_channel(
            "seed", "演示渠道 Demo channel", public_jwk(channel_key.public_key())
        )
        merchant = await merchants.register(
            "seed",
            "武隆区图书馆 Wulong library (demo)",
            "cq",
            DEMO_ITEMS,
            public_jwk(merchant_key.public_key()),
        )
        # the demo holder's card is issued where this instance issues cards (cq, or sc for a Sichuan instance)
        cards = Cards(pool, keys, directory, clock, pin_reset_ttl_s=settings.pin_reset_ttl_s)
        holder = await cards.register("seed", **{**DEMO_HOLDER, "region": settings.issuer_id})
        portal_key = ec.generate_private_key(ec.SECP256R1())
        portal = await Portals(pool, Catalog(pool)).register(
            "seed",
            NewPortal(
                name="警快办 (demo)",
                redirect_uris=[DEMO_PORTAL_REDIRECT],
                jwks={"keys": [{**public_jwk(portal_key.public_key()), "kid": DEMO_PORTAL_KID}]},
                claims=["name", "id_number", "region"],
                allowed_items=["wl-010"],
            ),
        )
    folder = settings.data_dir / DEMO_DIR
    write_private_file(
        folder / "portal.jwk.json", json.dumps({**private_jwk(portal_key), "kid": DEMO_PORTAL_KID}).encode()
    )
    write_private_file(
        folder / "channel.jwk.json", json.dumps({**private_jwk(channel_key), "kid": channel.key_id}).encode()
    )
    write_private_file(
        folder / "merchant.jwk.json",
        json.dumps({**private_jwk(merchant_key), "kid": merchant.key_id}).encode(),
    )
    operator = {"username": "demo-operator", "totp_uri": totp_uri}
    summary: dict[str, Any] = {
        "operator": operator,
        "channel": {
            "channel_id": channel.channel_id,
            "key_id": channel.key_id,
            "private_jwk": str(folder / "channel.jwk.json"),
        },
        "merchant": {
            "merchant_id": merchant.merchant_id,
            "key_id": merchant.key_id,
            "items": merchant.items,
            "private_jwk": str(folder / "merchant.jwk.json"),
        },
        "portal": {
            "client_id": portal.client_id,
            "name": portal.name,
            "redirect_uris": portal.redirect_uris,
            "claims": portal.claims,
            "private_jwk": str(folder / "portal.jwk.json"),
        },
        "cardholder": {
            "card_id": holder.card_id,
            "name": DEMO_HOLDER["name"],
            "id_number": DEMO_HOLDER["id_number"],
        },
    }
    write_private_file(marker, json.dumps(summary, ensure_ascii=False, indent=2).encode())
    return {**summary, "operator": {**operator, "password": password}}


def demo_summary(data_dir: Path) -> dict[str, Any] | None:
    marker = data_dir / DEMO_DIR / DEMO_MARKER
    return json.loads(marker.read_text()) if marker.exists() else None
