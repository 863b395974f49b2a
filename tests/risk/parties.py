"""What the risk tests play: venues at real places, a holder's verifications, the risk desk."""

from __future__ import annotations

from typing import Any

from tests.support import Actor, World, ed25519_actor

# registered places (lat, lon) of venues the tests put terminals at
WULONG = (29.3255, 107.7600)
WULONG_NORTH = (29.3300, 107.7620)  # another door of the same library, half a kilometre away
CHENGDU = (30.6586, 104.0647)
LIBRARY = "wl-030"
HOTEL = "wl-011"  # 宾旅馆住宿: discloses name and ID number


async def terminal_at(
    world: World, merchant: Actor, terminal_id: str, where: tuple[float, float], region: str = "wulong"
) -> Actor:
    """A terminal of `merchant` registered at `where`, signing with its own key."""
    actor = ed25519_actor()
    place = {"name": f"{terminal_id}服务台", "address": "某路1号", "region": region, "lat": where[0], "lon": where[1]}
    answer = await world.admin(
        "POST",
        f"/v1/admin/merchants/{merchant.ids['merchant_id']}/terminals",
        {"terminal_id": terminal_id, "place": place, "public_key": actor.jwk},
    )
    assert answer.status_code == 201, answer.text
    actor.key_id = answer.json()["key_id"]
    actor.ids.update(merchant_id=merchant.ids["merchant_id"], terminal_id=terminal_id)
    return actor


async def verified(world: World, venue: Actor, holder: Actor, item_code: str = LIBRARY) -> None:
    """The holder shows a fresh code at the venue, and it is accepted."""
    answer = await world.verify(venue, await world.code(holder), item_code)
    assert answer.status_code == 200, answer.text


async def settled(world: World) -> None:
    """Until the rules have seen every observation made so far (they run in the background)."""
    await world.app.state.risk.inbox.settled()


async def events(world: World, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    answer = await world.admin("GET", f"/v1/admin/risk/events?{query}")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def notices(world: World, holder: Actor) -> list[dict[str, Any]]:
    answer = await world.signed(holder, "GET", f"/v1/cards/{holder.ids['card_id']}/notices")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items
