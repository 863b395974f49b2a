"""The rules' queue: observations that arrive close together are taken as one batch (one round trip to Redis for
all of them), and a full batch is taken at once."""

from __future__ import annotations

import asyncio

from ecard.risk import RiskInbox, Verified


def seen(n: int) -> Verified:
    return Verified(f"crd_{n}", "mer_1", "wl-011", discloses_identity=False, lat=None, lon=None, at=float(n))


async def test_observations_arriving_just_after_the_first_join_its_batch() -> None:
    inbox = RiskInbox(100)
    inbox.verified(seen(0))
    first = await inbox.take()
    waiting = asyncio.ensure_future(inbox.gather(255, within_s=30))
    await asyncio.sleep(0)
    for n in range(1, 4):
        inbox.verified(seen(n))
    await asyncio.sleep(0)
    assert not waiting.done()  # still giving others the chance to join
    waiting.cancel()
    assert [first, *inbox.take_ready(255)] == [seen(n) for n in range(4)]


async def test_a_full_batch_is_taken_without_waiting() -> None:
    inbox = RiskInbox(1000)
    for n in range(300):
        inbox.verified(seen(n))
    async with asyncio.timeout(5):
        await inbox.gather(255, within_s=3600)
    assert len(inbox.take_ready(255)) == 255


async def test_no_window_means_no_wait() -> None:
    inbox = RiskInbox(10)
    async with asyncio.timeout(5):
        await inbox.gather(255, within_s=0)
