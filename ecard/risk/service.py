"""Raising risk events for the monitoring desk."""

from __future__ import annotations

import asyncpg

from ecard.risk import store


class RiskEvents:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def replay(self, card_id: str | None, merchant_id: str, cti_hex: str) -> None:
        await store.insert_event(self._pool, "code_replay", card_id, merchant_id, {"cti": cti_hex})
