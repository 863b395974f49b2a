"""What only the console needs: CSRF tokens bound to the operator's session, masked ID numbers, audited reveals.

Every other console action is the room service the admin API calls, with the logged-in operator as actor."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import asyncpg

from ecard.cards import CardHolder, Cards
from ecard.console.models import Bar, Chart, Tick
from ecard.kit import audit
from ecard.kit.crypto import b64u
from ecard.kit.refusal import Refusal

_CSRF_REFUSED = "this form's CSRF token is missing or wrong: reload the page and try again"


def mask_id_number(id_number: str) -> str:
    """500101199001011234 -> 500101********1234: the region and the last four characters only."""
    shown = 10
    if len(id_number) <= shown:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - shown) + id_number[-4:]


class Console:
    def __init__(self, pool: asyncpg.Pool, csrf_key: bytes, cards: Cards, session_ttl_s: int) -> None:
        self._pool = pool
        self._key = csrf_key
        self._cards = cards
        self.session_ttl_s = session_ttl_s

    def _tag(self, purpose: bytes, value: str) -> str:
        return b64u(hmac.new(self._key, purpose + b"|" + value.encode(), hashlib.sha256).digest())

    def csrf_for(self, session_token: str) -> str:
        """The hidden `csrf` field of every form of this session: only this service can compute it."""
        return self._tag(b"session", session_token)

    def check_csrf(self, session_token: str, sent: str) -> None:
        """403 `forbidden` unless `sent` is this session's token (compared in constant time)."""
        if not hmac.compare_digest(self.csrf_for(session_token).encode(), sent.encode()):
            raise Refusal("forbidden", _CSRF_REFUSED)

    def login_csrf(self) -> tuple[str, str]:
        """A fresh (cookie, form field) pair for the login form, before there is a session."""
        cookie = secrets.token_urlsafe(32)
        return cookie, self._tag(b"login", cookie)

    def check_login_csrf(self, cookie: str, sent: str) -> None:
        if not cookie or not hmac.compare_digest(self._tag(b"login", cookie).encode(), sent.encode()):
            raise Refusal("forbidden", _CSRF_REFUSED)

    async def reveal(self, operator: str, card_id: str) -> CardHolder:
        """The card's holder with the full ID number, for an operator who asked to see it; audited first."""
        holder = await self._cards.holder(card_id)
        if holder is None:
            raise Refusal("card_not_found", "no card has this id")
        async with self._pool.acquire() as conn, conn.transaction():
            await audit.record(conn, operator, "cardholder.revealed", card_id, {"cardholder_id": holder.cardholder_id})
        return holder


_WIDTH, _HEIGHT, _TOP, _BOTTOM, _LEFT = 640, 300, 20, 60, 48


def bar_chart(
    chart_id: str, title: str, values: Sequence[tuple[str, float, float | None]], top: float, unit: str = ""
) -> Chart:
    """Bars for (label, value, target or None) on a scale from 0 to `top`, with four gridlines."""
    plot = _HEIGHT - _TOP - _BOTTOM
    slot = (_WIDTH - _LEFT) / max(1, len(values))

    def y_of(value: float) -> float:
        return round(_TOP + plot * (1 - min(value, top) / top), 1)

    bars = []
    for n, (label, value, target) in enumerate(values):
        y = y_of(value)
        bars.append(
            Bar(
                label=label,
                shown=f"{value:g}{unit}",
                x=round(_LEFT + n * slot + slot * 0.2, 1),
                y=y,
                width=round(slot * 0.6, 1),
                height=round(_TOP + plot - y, 1),
                target_y=None if target is None else y_of(target),
                target_shown="" if target is None else f"{target:g}{unit}",
            )
        )
    ticks = [Tick(y=y_of(top * k / 4), shown=f"{top * k / 4:g}{unit}") for k in range(5)]
    return Chart(chart_id, title, _WIDTH, _HEIGHT, _TOP + plot, bars, ticks)
