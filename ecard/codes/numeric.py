"""The numeric code: 18 digits for 1D scanners and typing by hand, verified online only (docs/numeric-code.md).

    II VV HHHHHHH TTTTTT C
    |  |  |       |      └ Luhn check digit over the 17 digits before it
    |  |  |       └ RFC 6238 TOTP (HMAC-SHA-1, 30 s step, 6 digits) of the device's secret at the code's issue time
    |  |  └ handle: random, fresh for every code, naming the code's record in Redis for its lifetime (O(1) lookup)
    |  └ version of the numeric form (01)
    └ issuer (the GB/T 2260 province code: 50 for Chongqing)

The handle is drawn afresh for every code, so two codes of one device share nothing but their prefix; the TOTP
digits bind the code to the device whose sealed secret made them.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import dataclass

import asyncpg
import msgspec
import pyotp
import redis.asyncio as aioredis

from ecard.cards import Cards
from ecard.codes import store
from ecard.codes.service import Delegations
from ecard.kit import cache
from ecard.kit.clock import Clock
from ecard.kit.crypto import Keys
from ecard.kit.ids import id_to_bytes
from ecard.kit.principal import Principal
from ecard.kit.refusal import Refusal

LENGTH = 18
VERSION = "01"
HANDLE_DIGITS = 7
TOTP_DIGITS = 6
TOTP_STEP_S = 30
# A record outlives its code by this much, so that a code typed a little late is answered `code_expired`
# rather than as a wrong guess.
KEEP_S = 300
_MINT_TRIES = 8


@dataclass(frozen=True)
class NumericPolicy:
    issuer_digits: str
    ttl_s: int
    skew_s: int
    # wrong guesses a terminal (or merchant key) may make per window before it is refused for the window's rest
    guesses: int
    guess_window_s: int


@dataclass(frozen=True)
class NumericParts:
    issuer_digits: str
    handle: int
    totp: str


class NumericRecord(msgspec.Struct, frozen=True):
    """What the handle names in Redis while the code lives: ids, times, and the device's secret still sealed (so
    that verification needs no database read to check the digits)."""

    card_id: str
    # the device that minted it (whose secret made the digits), and who shows the card: that device's id bytes, or
    # the family link through which a guardian's device shows a member's card (ecard/family)
    device_id: str
    shown_by: bytes
    cti: bytes
    issued_at: int
    expires_at: int
    secret_sealed: bytes


@dataclass(frozen=True)
class MintedNumeric:
    code: str
    issued_at: int
    expires_at: int


def is_numeric_form(code: str) -> bool:
    """A code that starts with a digit is the numeric form (EC1 and other registered prefixes start with letters)."""
    return bool(code) and "0" <= code[0] <= "9"


def luhn_digit(body: str) -> str:
    """The Luhn (ISO/IEC 7812-1) check digit for a string of digits."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def compose(issuer_digits: str, handle: int, totp: str) -> str:
    body = f"{issuer_digits}{VERSION}{handle:0{HANDLE_DIGITS}d}{totp}"
    return body + luhn_digit(body)


def parse(code: str) -> NumericParts:
    """The parts of an 18-digit code; `malformed_code` for the wrong length, non-digits, version or check digit."""
    if len(code) != LENGTH or not all("0" <= char <= "9" for char in code):
        raise Refusal("malformed_code", f"a numeric code is exactly {LENGTH} digits")
    if code[2:4] != VERSION:
        raise Refusal("malformed_code", "this version of the numeric code is not known")
    if not hmac.compare_digest(luhn_digit(code[:-1]), code[-1]):
        raise Refusal("malformed_code", "the check digit does not match: the code was mistyped or misread")
    return NumericParts(code[:2], int(code[4 : 4 + HANDLE_DIGITS]), code[4 + HANDLE_DIGITS : -1])


def totp_at(secret: bytes, at: int) -> str:
    return pyotp.TOTP(base64.b32encode(secret).decode(), digits=TOTP_DIGITS, interval=TOTP_STEP_S).at(at)


class NumericCodes:
    """Mints numeric codes for devices and resolves them at verification in one Redis round trip."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        cards: Cards,
        clock: Clock,
        prefix: str,
        policy: NumericPolicy,
        delegations: Delegations | None = None,
    ) -> None:
        self._delegations = delegations
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._cards = cards
        self._clock = clock
        self._prefix = prefix
        self.policy = policy

    def _record_key(self, handle: int) -> str:
        return f"{self._prefix}num:{handle:0{HANDLE_DIGITS}d}"

    def _guess_key(self, guesser: str, now: float) -> str:
        window = int(now // self.policy.guess_window_s)
        # hash-tagged by the guesser, so that its counters live in one slot of a cluster
        return f"{self._prefix}numguess:{{{guesser}}}:{window}"

    async def mint(self, device: Principal, card_id: str | None = None) -> MintedNumeric:
        """A code for the device's own card, or for `card_id`: a card the device may show for its holder."""
        if not await store.claim_nonce(self._redis, device.nonce, cache.new_token()):
            raise Refusal("nonce_reused", "this nonce has been used already")
        card = await self._cards.device_card(device.owner_id)
        shown, shown_by = card.card_id, id_to_bytes(device.owner_id)
        if card_id is not None and card_id != card.card_id:
            if self._delegations is None:
                raise Refusal("forbidden", "a device may show its own card only")
            shown, shown_by = card_id, await self._delegations.link_to(device, card_id)
        sealed = await self._sealed_secret(device.owner_id)
        secret = self._keys.unwrap_secret(sealed, _context(device.owner_id))
        now = int(self._clock.now())
        expires = now + self.policy.ttl_s
        record = NumericRecord(shown, device.owner_id, shown_by, os.urandom(16), now, expires, sealed)
        keep_until_ms = (expires + self.policy.skew_s + KEEP_S) * 1000
        for _ in range(_MINT_TRIES):
            handle = secrets.randbelow(10**HANDLE_DIGITS)
            if await store.put_numeric(
                self._redis, self._record_key(handle), msgspec.msgpack.encode(record), keep_until_ms
            ):
                code = compose(self.policy.issuer_digits, handle, totp_at(secret, now))
                return MintedNumeric(code, now, expires)
        raise Refusal("overloaded", "no free numeric handle right now; try again", retry_after=1)

    async def resolve(self, code: str, guesser: str, now: float) -> NumericRecord:
        """The live record a numeric code names, once its digits prove the device; wrong guesses are counted."""
        parts = parse(code)
        if parts.issuer_digits != self.policy.issuer_digits:
            raise Refusal("unknown_issuer", "this numeric code comes from an issuer this service does not know")
        guess_key = self._guess_key(guesser, now)
        guesses, raw = await store.read_numeric(self._redis, guess_key, self._record_key(parts.handle))
        if guesses >= self.policy.guesses:
            retry = self.policy.guess_window_s - int(now % self.policy.guess_window_s)
            raise Refusal("too_many_requests", "too many wrong numeric codes from this terminal", retry_after=retry)
        record = msgspec.msgpack.decode(raw, type=NumericRecord) if raw is not None else None
        if record is None or not hmac.compare_digest(self._digits(record), parts.totp):
            await store.count_guess(self._redis, guess_key, 2 * self.policy.guess_window_s)
            raise Refusal("bad_signature", "no live numeric code has these digits")
        if now > record.expires_at + self.policy.skew_s:
            raise Refusal("code_expired", "the code has expired; ask the holder to refresh it")
        if now < record.issued_at - self.policy.skew_s:
            raise Refusal("code_not_yet_valid", "the code is not valid yet; check the terminal's clock")
        return record

    def _digits(self, record: NumericRecord) -> str:
        secret = self._keys.unwrap_secret(record.secret_sealed, _context(record.device_id))
        return totp_at(secret, record.issued_at)

    async def _sealed_secret(self, device_id: str) -> bytes:
        """The device's TOTP secret as stored (sealed), made at its first numeric code."""
        sealed = await store.totp_secret(self._pool, device_id)
        if sealed is None:
            # 160 bits, the RFC 4226 recommendation for HMAC-SHA-1; a concurrent first mint may win the insert
            await store.insert_totp_secret(
                self._pool, device_id, self._keys.wrap_secret(os.urandom(20), _context(device_id))
            )
            sealed = await store.totp_secret(self._pool, device_id)
        if sealed is None:  # pragma: no cover - the insert above, or a concurrent one, made it
            raise RuntimeError("a device's TOTP secret vanished")
        return sealed


def _context(device_id: str) -> str:
    """The sealed secret is bound to its device: moved to another device's record it does not open."""
    return f"totp:{device_id}"
