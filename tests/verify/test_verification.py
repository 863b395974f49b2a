"""POST /v1/verifications: acceptance, every refusal code of API.md, single use and the card's status."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.codes import kid_of
from ecard.codes.token import CLAIM_EXP, PREFIX, mint
from ecard.kit.clock import to_datetime
from tests.support import World, problem


async def _count(world: World, table: str) -> int:
    count: int = await world.app.state.pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def _replays(world: World) -> list[dict[str, Any]]:
    rows = await world.app.state.pool.fetch(
        "SELECT kind, card_id, merchant_id FROM risk_events WHERE kind = 'code_replay' ORDER BY event_id"
    )
    return [dict(r) for r in rows]


def _forge(world: World, private: ed25519.Ed25519PrivateKey, kid: bytes, issuer: str | None = None) -> str:
    """A code in the EC1 format, signed with whatever key the test chooses."""
    now = int(world.clock.now())
    return mint(
        private,
        kid,
        issuer or world.app.state.settings.issuer_id,
        now,
        now + world.app.state.settings.code_ttl_s,
        os.urandom(16),
        os.urandom(64),
    )


def _rewrite(code: str, change: Callable[[bytes, dict[int, Any], bytes], tuple[bytes, bytes]]) -> str:
    """The code with its COSE_Sign1 parts changed but the signature left as it was signed."""
    outer = cbor2.loads(base45.b45decode(code[len(PREFIX) :]))
    protected, unprotected, payload, signature = outer.value
    payload, signature = change(payload, cbor2.loads(payload), signature)
    message = cbor2.dumps(cbor2.CBORTag(outer.tag, [protected, unprotected, payload, signature]))
    encoded: bytes = base45.b45encode(message)
    return PREFIX + encoded.decode("ascii")


def _flip_signature(payload: bytes, _claims: dict[int, Any], signature: bytes) -> tuple[bytes, bytes]:
    return payload, signature[:-1] + bytes([signature[-1] ^ 0x01])


def _extend_expiry(_payload: bytes, claims: dict[int, Any], signature: bytes) -> tuple[bytes, bytes]:
    return cbor2.dumps({**claims, CLAIM_EXP: claims[CLAIM_EXP] + 3600}), signature


def _to_start_of_second(world: World) -> None:
    """Move the clock just past a whole second, so a code minted now has issued_at == the clock, to the ms."""
    now = world.clock.now()
    world.clock.advance(math.ceil(now) - now + 0.001)


async def test_an_entitled_library_accepts_a_fresh_code(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    code = await world.code(device)

    answer = await world.verify(merchant, code, "wl-030")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "accepted"
    assert body["item_code"] == "wl-030"
    assert body["verification_id"].startswith("vrf_")
    assert abs(world.clock.now() - datetime.fromisoformat(body["verified_at"]).timestamp()) < 5
    row = await world.app.state.pool.fetchrow(
        "SELECT card_id, merchant_id, item_code FROM verifications WHERE verification_id = $1",
        body["verification_id"],
    )
    assert dict(row) == {
        "card_id": device.ids["card_id"],
        "merchant_id": merchant.ids["merchant_id"],
        "item_code": "wl-030",
    }


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda _code: "not a code at all", id="garbage"),
        pytest.param(lambda code: "EC2:" + code[len(PREFIX) :], id="wrong-prefix"),
        pytest.param(lambda code: code[len(PREFIX) :], id="no-prefix"),
        pytest.param(lambda code: code[:-7], id="truncated"),
        pytest.param(lambda code: code[: len(PREFIX) + 30], id="cut-short"),
        pytest.param(lambda _code: PREFIX + "::::", id="not-base45"),
    ],
)
async def test_a_malformed_code_is_refused_and_leaves_the_real_code_usable(
    world: World, spoil: Callable[[str], str]
) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)

    refused = await world.verify(merchant, spoil(code), "wl-030")

    assert problem(refused) == (400, "malformed_code")
    assert await _count(world, "verifications") == 0
    accepted = await world.verify(merchant, code, "wl-030")
    assert accepted.status_code == 200, accepted.text


async def test_a_code_whose_card_reference_does_not_open_is_malformed(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    active = world.app.state.key_ring.active()
    # Signed by the real issuer key, but the sealed card reference is random bytes.
    code = _forge(world, active.private, active.kid)

    assert problem(await world.verify(merchant, code, "wl-030")) == (400, "malformed_code")
    assert await _count(world, "verifications") == 0


async def test_a_code_from_another_issuer_is_refused(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    active = world.app.state.key_ring.active()
    code = _forge(world, active.private, active.kid, issuer="sc")

    assert problem(await world.verify(merchant, code, "wl-030")) == (400, "unknown_issuer")


async def test_a_code_signed_with_a_key_the_issuer_never_published_is_refused(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    stranger = ed25519.Ed25519PrivateKey.generate()
    raw = stranger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    code = _forge(world, stranger, kid_of(raw))

    assert problem(await world.verify(merchant, code, "wl-030")) == (400, "unknown_key")


async def test_codes_of_a_revoked_key_are_refused_and_codes_of_its_successor_accepted(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    before = await world.code(device)
    revoked_kid = world.app.state.key_ring.active().kid

    await world.app.state.key_ring.revoke(revoked_kid, "test")

    assert problem(await world.verify(merchant, before, "wl-030")) == (400, "key_revoked")
    assert world.app.state.key_ring.active().kid != revoked_kid
    after = await world.verify(merchant, await world.code(device), "wl-030")
    assert after.status_code == 200, after.text


async def test_a_code_signed_by_an_impostor_under_the_issuer_kid_is_refused(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    code = _forge(world, ed25519.Ed25519PrivateKey.generate(), world.app.state.key_ring.active().kid)

    assert problem(await world.verify(merchant, code, "wl-030")) == (400, "bad_signature")


@pytest.mark.parametrize("tamper", [_flip_signature, _extend_expiry], ids=["flipped-signature", "extended-expiry"])
async def test_a_tampered_code_is_refused_for_its_signature(
    world: World, tamper: Callable[[bytes, dict[int, Any], bytes], tuple[bytes, bytes]]
) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)

    assert problem(await world.verify(merchant, _rewrite(code, tamper), "wl-030")) == (400, "bad_signature")
    # the genuine code was never claimed by the forgery
    assert (await world.verify(merchant, code, "wl-030")).status_code == 200


async def test_a_code_is_refused_once_its_lifetime_and_the_clock_skew_have_passed(world: World) -> None:
    settings = world.app.state.settings
    grace = settings.code_ttl_s + settings.clock_skew_s
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    _to_start_of_second(world)
    late = await world.code(device)
    still_fine = await world.code(device)

    world.clock.advance(grace - 1)
    accepted = await world.verify(merchant, still_fine, "wl-030")
    world.clock.advance(2)
    refused = await world.verify(merchant, late, "wl-030")

    assert accepted.status_code == 200, accepted.text
    assert problem(refused) == (400, "code_expired")


async def test_a_code_from_a_clock_running_ahead_is_not_yet_valid(world: World) -> None:
    skew = world.app.state.settings.clock_skew_s
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    _to_start_of_second(world)
    within_skew = await world.code(device)
    too_early = await world.code(device)

    world.clock.advance(-(skew - 1))
    accepted = await world.verify(merchant, within_skew, "wl-030")
    world.clock.advance(-2)
    refused = await world.verify(merchant, too_early, "wl-030")

    assert accepted.status_code == 200, accepted.text
    assert problem(refused) == (400, "code_not_yet_valid")
    # once the verifier's clock is right again, the code is good
    world.clock.advance(skew + 1)
    assert (await world.verify(merchant, too_early, "wl-030")).status_code == 200


async def test_a_replayed_code_is_refused_and_raised_as_a_risk_event(world: World) -> None:
    library = await world.merchant(["wl-030"])
    other = await world.merchant(["wl-030"], name="武隆区文化馆")
    device = await world.device()
    code = await world.code(device)
    assert (await world.verify(library, code, "wl-030")).status_code == 200

    replay = await world.verify(other, code, "wl-030")

    assert problem(replay) == (409, "code_already_used")
    assert await _replays(world) == [
        {"kind": "code_replay", "card_id": device.ids["card_id"], "merchant_id": other.ids["merchant_id"]}
    ]
    assert await _count(world, "verifications") == 1

    again = await world.verify(library, code, "wl-030")

    assert problem(again) == (409, "code_already_used")
    assert [r["merchant_id"] for r in await _replays(world)] == [other.ids["merchant_id"], library.ids["merchant_id"]]
    assert await _count(world, "verifications") == 1


async def test_an_unknown_item_is_refused_without_using_up_the_code(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    code = await world.code(device)

    refused = await world.verify(merchant, code, "wl-999")

    assert problem(refused) == (404, "item_unknown")
    assert (await world.verify(merchant, code, "wl-030")).status_code == 200


async def test_an_item_not_yet_in_force_is_unknown_until_its_day_comes(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    await world.app.state.pool.execute(
        "UPDATE catalog_items SET effective_from = $1::date + 30 WHERE item_code = 'wl-030'",
        to_datetime(world.clock.now()).date(),
    )
    world.app.state.catalog.invalidate()

    assert problem(await world.verify(merchant, await world.code(device), "wl-030")) == (404, "item_unknown")

    world.clock.advance(31 * 86400)
    assert (await world.verify(merchant, await world.code(device), "wl-030")).status_code == 200


async def test_a_physical_card_only_item_refuses_the_e_card_without_using_up_the_code(world: World) -> None:
    merchant = await world.merchant(["wl-018", "wl-030"])
    device = await world.device()
    code = await world.code(device)

    refused = await world.verify(merchant, code, "wl-018")

    assert problem(refused) == (422, "card_mode_not_accepted")
    assert await _count(world, "verifications") == 0
    assert (await world.verify(merchant, code, "wl-030")).status_code == 200


async def test_a_merchant_is_refused_an_item_it_is_not_entitled_to_and_the_code_is_spent(world: World) -> None:
    hotel = await world.merchant(["wl-011"], name="武隆仙女山酒店")
    device = await world.device()
    code = await world.code(device)

    refused = await world.verify(hotel, code, "wl-030")

    assert problem(refused) == (403, "merchant_not_entitled")
    assert await _count(world, "verifications") == 0
    # the claim precedes the entitlement check: the code is spent even for the item the hotel has
    assert problem(await world.verify(hotel, code, "wl-011")) == (409, "code_already_used")
    assert (await world.verify(hotel, await world.code(device), "wl-011")).status_code == 200


async def test_a_suspended_card_is_refused_at_once_and_the_code_is_spent(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    minted_before = await world.code(device)
    assert (await world.verify(merchant, await world.code(device), "wl-030")).status_code == 200

    assert (await world.set_status(device.ids["card_id"], "suspended")).status_code == 200

    assert problem(await world.verify(merchant, minted_before, "wl-030")) == (403, "card_suspended")
    assert await _count(world, "verifications") == 1
    assert (await world.set_status(device.ids["card_id"], "active")).status_code == 200
    assert problem(await world.verify(merchant, minted_before, "wl-030")) == (409, "code_already_used")


async def test_a_reactivated_card_verifies_again_with_a_fresh_code(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    assert (await world.set_status(device.ids["card_id"], "suspended")).status_code == 200
    refused_mint = await world.signed(device, "POST", "/v1/codes", {})
    assert problem(refused_mint) == (403, "card_suspended")

    assert (await world.set_status(device.ids["card_id"], "active")).status_code == 200

    answer = await world.verify(merchant, await world.code(device), "wl-030")
    assert answer.status_code == 200, answer.text


async def test_a_cancelled_card_is_refused_for_good(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    minted_before = await world.code(device)

    assert (await world.set_status(device.ids["card_id"], "cancelled")).status_code == 200

    assert problem(await world.verify(merchant, minted_before, "wl-030")) == (403, "card_cancelled")
    assert problem(await world.set_status(device.ids["card_id"], "active")) == (409, "card_status_conflict")
    assert problem(await world.signed(device, "POST", "/v1/codes", {})) == (403, "card_cancelled")
    assert await _count(world, "verifications") == 0


async def test_a_card_reported_lost_from_the_phone_is_refused_at_once(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    minted_before = await world.code(device)

    answer = await world.signed(device, "POST", f"/v1/cards/{device.ids['card_id']}/report-lost")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "suspended"}
    assert problem(await world.verify(merchant, minted_before, "wl-030")) == (403, "card_suspended")
    assert await _count(world, "verifications") == 0


async def test_a_reused_nonce_is_refused_without_taking_the_fresh_code_it_carries(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    first, second = await world.code(device), await world.code(device)
    body = {"code": first, "item_code": "wl-030"}
    assert (await world.signed(merchant, "POST", "/v1/verifications", body, nonce="n-shared-000001")).status_code == 200

    replay = await world.signed(
        merchant, "POST", "/v1/verifications", {"code": second, "item_code": "wl-030"}, nonce="n-shared-000001"
    )

    assert problem(replay) == (401, "nonce_reused")
    assert (await world.verify(merchant, second)).status_code == 200
    replays = await world.app.state.pool.fetchval("SELECT count(*) FROM risk_events WHERE kind = 'code_replay'")
    assert replays == 0
