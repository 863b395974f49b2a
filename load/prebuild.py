"""Pre-signed raw requests for every scenario, and codes pre-minted through the API, made before any timing."""

from __future__ import annotations

import itertools
import json
import time

from actors import ITEM, Cast
from drive import Job, run
from signer import Actor, new_nonce, signature_headers
from wire import build_request

CODES = "/v1/codes"
VERIFICATIONS = "/v1/verifications"
ECHO = "/_load/echo"
PNG = "image/png"


class Factory:
    """Builds each request once, as bytes, each with its own nonce."""

    def __init__(self, cast: Cast, port: int) -> None:
        self.cast = cast
        self.port = port
        self.host = f"127.0.0.1:{port}"

    def signed(self, actor: Actor, path: str, body: bytes, accept: str = "application/json") -> bytes:
        headers = {"Content-Type": "application/json", "Accept": accept}
        headers.update(signature_headers(actor, "POST", path, body, int(time.time()), new_nonce()))
        return build_request("POST", path, self.host, headers, body)

    def mints(self, count: int, accept: str = "application/json") -> list[bytes]:
        """`count` code requests, the devices taking turns."""
        devices = itertools.cycle(self.cast.devices)
        return [self.signed(next(devices), CODES, b"{}", accept) for _ in range(count)]

    def verification_body(self, code: str) -> bytes:
        return json.dumps({"code": code, "item_code": ITEM}, separators=(",", ":")).encode()

    def verifications(self, codes: list[str]) -> list[bytes]:
        return [self.signed(self.cast.merchant, VERIFICATIONS, self.verification_body(code)) for code in codes]

    def echo(self, code: str) -> bytes:
        """The echo request: a verification's very bytes (body and signature headers) sent to the bare echo."""
        signed = self.signed(self.cast.merchant, VERIFICATIONS, self.verification_body(code))
        return signed.replace(f"POST {VERIFICATIONS} ".encode(), f"POST {ECHO} ".encode(), 1)


def mint_codes(factory: Factory, count: int, conns: int, within_s: float = float("inf")) -> tuple[list[str], float]:
    """Up to `count` fresh codes minted through POST /v1/codes as the devices (not timed), and the rate it went at."""
    job = Job(factory.port, factory.mints(count), expected=201, conns=conns, duration_s=within_s, keep_bodies=True)
    outcome = run(job)
    if set(outcome.statuses) - {201} or not outcome.bodies:
        raise RuntimeError(f"pre-minting codes: {dict(outcome.statuses)} {outcome.unexpected}")
    return [str(json.loads(body)["code"]) for body in outcome.bodies], outcome.rate
