"""Client key lookups stay cheap under a flood of made-up key ids: no database query per request, a bounded cache."""

from __future__ import annotations

import os

from ecard.clients import ClientDirectory
from ecard.kit.crypto import Keys
from ecard.kit.ids import encode, new_id
from ecard.kit.principal import ClientKind
from tests.support import World, ed25519_actor, problem

BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(world: World, max_entries: int = 64) -> tuple[ClientDirectory, Ticks]:
    ticks = Ticks()
    keys: Keys = world.app.state.secret_keys
    return ClientDirectory(world.app.state.pool, keys, max_entries=max_entries, monotonic=ticks), ticks


def made_up_key_id() -> str:
    """What an attacker sends: the shape of our key ids, random content."""
    return "key_" + encode(os.urandom(16))


async def test_a_flood_of_made_up_key_ids_is_refused_without_a_database_query(world: World) -> None:
    served: ClientDirectory = world.app.state.directory
    impostor = ed25519_actor()
    impostor.key_id = made_up_key_id()
    assert problem(await world.signed(impostor, "POST", "/v1/codes", {})) == (401, "unknown_client")
    before, cached = served.lookups, len(served)

    for _ in range(200):
        impostor.key_id = made_up_key_id()
        assert problem(await world.signed(impostor, "POST", "/v1/codes", {})) == (401, "unknown_client")

    assert served.lookups == before
    assert len(served) == cached


async def test_a_registered_key_still_gets_in_during_a_flood(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    impostor = ed25519_actor()
    for _ in range(50):
        impostor.key_id = made_up_key_id()
        await world.signed(impostor, "POST", "/v1/verifications", {"code": "x", "item_code": "wl-030"})

    answer = await world.verify(merchant, await world.code(device))

    assert answer.status_code == 200, answer.text


async def test_an_unknown_key_id_of_our_own_making_is_looked_up_once(world: World) -> None:
    lookups, _ticks = directory(world)
    never_registered = lookups.mint_key_id()

    for _ in range(100):
        assert await lookups.get(never_registered) is None

    assert lookups.lookups == 1


async def test_the_cache_stays_within_its_bound_and_keeps_what_is_in_use(world: World) -> None:
    lookups, _ticks = directory(world, max_entries=64)
    async with world.app.state.pool.acquire() as conn:
        in_use = await lookups.register(conn, ClientKind.MERCHANT, new_id("mch"), ed25519_actor().jwk)
    assert await lookups.get(in_use) is not None

    for i in range(500):
        assert await lookups.get(lookups.mint_key_id()) is None
        assert len(lookups) <= lookups.max_entries == 64
        if i % 10 == 0:
            assert await lookups.get(in_use) is not None

    # 500 distinct unknown ids, and the key in use only once: it never left the cache
    assert lookups.lookups == 501
    assert len(lookups) == 64


async def test_made_up_partner_key_ids_cost_at_most_one_query_a_second(world: World) -> None:
    lookups, ticks = directory(world)

    for _ in range(300):
        assert await lookups.get(f"zz:{os.urandom(8).hex()}") is None
    assert lookups.lookups == 1
    assert len(lookups) == 0

    ticks.now += 1.0
    for _ in range(300):
        assert await lookups.get(f"zz:{os.urandom(8).hex()}") is None
    assert lookups.lookups == 2


async def test_a_partner_key_registered_elsewhere_is_found_within_a_second(world: World) -> None:
    elsewhere, _ = directory(world)
    here, ticks = directory(world)
    assert await here.get("sc:not-yet") is None
    async with world.app.state.pool.acquire() as conn:
        await elsewhere.register(conn, ClientKind.PARTNER, new_id("ptn"), ed25519_actor().jwk, key_id="sc:kid-1")

    ticks.now += 1.0

    found = await here.get("sc:kid-1")
    assert found is not None
    assert found.kind is ClientKind.PARTNER


async def test_a_key_id_issued_before_tags_keeps_working(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    # the key id an earlier release gave this merchant: random, without a tag
    legacy = new_id("key")
    await world.app.state.pool.execute(
        "UPDATE client_keys SET key_id = $2, minted = false WHERE key_id = $1", merchant.key_id, legacy
    )
    merchant.key_id = legacy

    answer = await world.verify(merchant, await world.code(device))

    assert answer.status_code == 200, answer.text
    served: ClientDirectory = world.app.state.directory
    before = served.lookups
    impostor = ed25519_actor()
    for _ in range(50):
        impostor.key_id = made_up_key_id()
        assert problem(await world.signed(impostor, "POST", "/v1/codes", {})) == (401, "unknown_client")
    assert served.lookups == before


async def test_another_spelling_of_a_minted_key_id_is_refused_unseen(world: World) -> None:
    lookups, _ticks = directory(world)
    real = lookups.mint_key_id()
    # 26 base32 characters carry 130 bits: a first character 24 places further spells the same 128 bits
    first = BASE32.index(real[len("key_")])
    respelled = "key_" + BASE32[first + 24] + real[len("key_") + 1 :]
    assert await lookups.get(made_up_key_id()) is None  # reads the set of ids from before tags, once
    assert lookups.lookups == 1

    assert await lookups.get(respelled) is None

    assert lookups.lookups == 1
