"""Portal login tests: the provider's issuer identifier is the test client's own base URL; two portals."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from ecard.config import Settings
from tests.portal.oidc import PortalClient
from tests.support import World

BASE = "http://testserver.local"
POLICE_CALLBACK = "https://jkb.gaj.cq.gov.cn/oidc/callback"
LIBRARY_CALLBACK = "https://lib.wulong.gov.cn/login/callback"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the ASGI transport answers any host; the issuer must still be the URL the portal reaches us at
    return dataclasses.replace(settings, public_url=BASE)


async def portal_client(world: World, claims: list[str], items: list[str], callback: str, name: str) -> PortalClient:
    """A registered portal, configured from the discovery document alone."""
    actor = await world.portal(claims, [callback], items, name=name)
    client = PortalClient(BASE, actor, callback, transport=httpx.ASGITransport(app=world.app))  # type: ignore[arg-type]
    await client.discover()
    return client


@pytest.fixture
async def police(world: World) -> AsyncIterator[PortalClient]:
    """警快办: registered for the name and ID number (its item wl-010 discloses them)."""
    client = await portal_client(world, ["name", "id_number"], ["wl-010"], POLICE_CALLBACK, "警快办")
    yield client
    await client.aclose()


@pytest.fixture
async def library(world: World) -> AsyncIterator[PortalClient]:
    """A library portal: a pairwise subject and the card's region only."""
    client = await portal_client(world, ["region"], ["wl-030"], LIBRARY_CALLBACK, "武隆区图书馆")
    yield client
    await client.aclose()
