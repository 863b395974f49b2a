"""The card reference's AEAD key rotates by epoch: new codes name the new epoch, codes in flight still open, an
epoch nobody started (or one long closed) is a malformed code; every start of an epoch is audited."""

from __future__ import annotations

import json
import os

import base45
import cbor2
import pytest

from ecard.codes import keys as key_ring_module
from ecard.codes.token import mint
from ecard.kit.crypto import Keys, SealError, card_ref_epoch
from ecard.kit.ids import id_to_bytes
from tests.support import Actor, World, ecard_cli, problem

CLAIM_CARD_REF = -70001


@pytest.fixture(autouse=True)
def no_periodic_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers reload keys and epochs every few seconds; what is shown here must not owe anything to that."""
    monkeypatch.setattr(key_ring_module, "REFRESH_S", 3600.0)
    # a code naming an epoch this worker has not seen makes it look again, at most once a MISS_REFRESH_S; the
    # app of each test has only just loaded its epochs, so the look must not wait out that throttle here
    monkeypatch.setattr(key_ring_module, "MISS_REFRESH_S", 0.0)


def _card_ref(code: str) -> bytes:
    payload = cbor2.loads(base45.b45decode(code.removeprefix("EC1:"))).value[2]
    ref: bytes = cbor2.loads(payload)[CLAIM_CARD_REF]
    return ref


def _signed_code(world: World, device: Actor, epoch: int, lifetime_s: int = 60) -> str:
    """A code of this issuer, signed with its active key, whose card reference is sealed under `epoch`."""
    ring = world.app.state.key_ring
    keys: Keys = world.app.state.secret_keys
    active = ring.active()
    now = int(world.clock.now())
    plain = id_to_bytes(device.ids["card_id"]) + id_to_bytes(device.ids["device_id"])
    card_ref = keys.seal_card_ref(plain, world.app.state.settings.issuer_id, epoch)
    return mint(active.private, active.kid, "cq", now, now + lifetime_s, os.urandom(16), card_ref)


async def _new_epoch(world: World) -> int:
    run = await ecard_cli(world, "keys", "new-epoch")
    assert run.returncode == 0, run.stderr
    epoch: int = json.loads(run.stdout)["card_ref_epoch"]
    return epoch


async def test_codes_name_epoch_zero_until_an_epoch_is_started(world: World) -> None:
    device = await world.device()

    assert card_ref_epoch(_card_ref(await world.code(device))) == 0


async def test_a_new_epoch_seals_new_codes_and_codes_in_flight_still_verify(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    before = await world.code(device)

    assert await _new_epoch(world) == 1
    # what every worker's refresher does within a few seconds
    await world.app.state.key_ring.refresh()
    after = await world.code(device)

    assert card_ref_epoch(_card_ref(before)) == 0
    assert card_ref_epoch(_card_ref(after)) == 1
    for code in (before, after):
        accepted = await world.verify(merchant, code)
        assert accepted.status_code == 200, accepted.text
    assert await _new_epoch(world) == 2


async def test_a_worker_that_has_not_yet_seen_a_new_epoch_opens_its_codes(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    await _new_epoch(world)
    # minted by another worker that already seals under epoch 1; this one last read the epochs before it began
    code = _signed_code(world, device, 1)

    accepted = await world.verify(merchant, code)

    assert accepted.status_code == 200, accepted.text


async def test_a_code_sealed_under_an_epoch_never_started_is_malformed(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()

    refused = await world.verify(merchant, _signed_code(world, device, 7))

    assert problem(refused) == (400, "malformed_code")
    assert await world.app.state.pool.fetchval("SELECT count(*) FROM verifications") == 0
    # the card itself is fine
    assert (await world.verify(merchant, await world.code(device))).status_code == 200


async def test_an_epoch_closes_once_its_successor_has_been_current_for_a_codes_lifetime(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device()
    # a (misissued) code that lives for hours, so that only its epoch can refuse it
    soon, later = (_signed_code(world, device, 0, lifetime_s=4 * 3600) for _ in range(2))
    await _new_epoch(world)
    await world.app.state.key_ring.refresh()
    assert (await world.verify(merchant, soon)).status_code == 200

    world.clock.advance(60 + 30 + key_ring_module.REFRESH_S + 1)

    assert problem(await world.verify(merchant, later)) == (400, "malformed_code")


async def test_the_card_reference_of_one_epoch_does_not_open_under_another(world: World) -> None:
    keys: Keys = world.app.state.secret_keys
    sealed = keys.seal_card_ref(b"x" * 32, "cq", 3)
    moved = sealed[:1] + (4).to_bytes(2, "big") + sealed[3:]

    assert keys.open_card_ref(sealed, "cq", {3}) == b"x" * 32
    with pytest.raises(SealError, match="does not open"):
        keys.open_card_ref(moved, "cq", {3, 4})
    with pytest.raises(SealError, match="not open"):
        keys.open_card_ref(sealed, "cq", {4})
    with pytest.raises(SealError, match="does not open"):
        keys.open_card_ref(sealed, "sc", {3})


async def test_starting_an_epoch_is_audited(world: World) -> None:
    await _new_epoch(world)

    entry = await world.app.state.pool.fetchrow(
        "SELECT actor, action, subject FROM audit_log WHERE action = 'card_ref_epoch.started'"
    )

    assert entry["subject"] == "1"
    assert entry["actor"].startswith("cli:")
