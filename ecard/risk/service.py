"""Raising risk events for the monitoring desk."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from ecard.risk import store

# What an event's detail may say: flat values, never personal data.
EventDetail = Mapping[str, str | int | float | bool]


class RiskEvents:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def raise_event(self, kind: str, card_id: str | None, merchant_id: str | None, detail: EventDetail) -> None:
        """Records an event other rooms observed (an offline double tap, a tap on a suspended card, ...)."""
        await store.insert_event(self._pool, kind, card_id, merchant_id, dict(detail))

    async def replay(self, card_id: str | None, merchant_id: str, cti_hex: str) -> None:
        await self.raise_event("code_replay", card_id, merchant_id, {"cti": cti_hex})
