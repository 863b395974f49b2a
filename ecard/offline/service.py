"""Judging an offline terminal's uploaded taps, each as of its own time, once per tap_id."""

from __future__ import annotations

import asyncpg

from ecard.kit.clock import Clock
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal
from ecard.offline import store
from ecard.offline.models import Tap, TapResult
from ecard.verify import VerifyDeps, verify_offline_tap


class OfflineTaps:
    def __init__(self, pool: asyncpg.Pool, verify_deps: VerifyDeps, clock: Clock, grace_s: int, skew_s: int) -> None:
        self._pool = pool
        self._verify = verify_deps
        self._clock = clock
        self._grace_s = grace_s
        self._skew_s = skew_s

    async def upload(self, terminal: Principal, taps: list[Tap]) -> list[TapResult]:
        """One answer per tap, in the upload's order; a tap_id answered before gets its first answer again.

        New taps are judged in the order they were made, so that of two taps of one code the later is the
        second use. A tap's answer is kept as soon as it is known: an upload cut off halfway resumes when sent again.
        """
        async with store.terminal_turn(self._pool, terminal.owner_id):
            known = await store.results(self._pool, terminal.owner_id, [tap.tap_id for tap in taps])
            first: dict[str, Tap] = {}
            for tap in taps:
                if tap.tap_id not in known:
                    first.setdefault(tap.tap_id, tap)
            for tap in sorted(first.values(), key=lambda t: (t.tapped_at, t.tap_id)):
                result = await self._judge(terminal, tap)
                await store.keep(self._pool, terminal.owner_id, result, tap.tapped_at)
                known[tap.tap_id] = result
        return [known[tap.tap_id] for tap in taps]

    async def _judge(self, terminal: Principal, tap: Tap) -> TapResult:
        tapped_at = tap.tapped_at.timestamp()
        if tapped_at > self._clock.now() + self._skew_s:
            return TapResult(tap.tap_id, "tap_in_future")
        try:
            verification = await verify_offline_tap(
                terminal, tap.code, tap.item_code, tapped_at, self._grace_s, self._verify
            )
        except Refusal as refusal:
            return TapResult(tap.tap_id, refusal.code)
        return TapResult(tap.tap_id, "accepted", verification.verification_id)
