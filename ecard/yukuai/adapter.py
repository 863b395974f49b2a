"""The 渝快办 adapter: the one place that speaks the platform's protocol (docs/yukuai-protocol.md)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ecard.kit import peers
from ecard.kit.refusal import Refusal

log = logging.getLogger("ecard.yukuai")

# what the platform says about a 渝快码, and what a terminal is told for it
_CODE_REFUSALS = {
    "code_unknown": ("malformed_code", "the 渝快办 platform does not know this code"),
    "code_expired": ("code_expired", "the 渝快码 has expired; ask the holder to refresh it"),
    "code_used": ("code_already_used", "this 渝快码 has been used already"),
}


class RequestSigner(Protocol):
    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]: ...


@dataclass(frozen=True)
class Account:
    account_id: str
    status: str


class YukuaiPlatform:
    """The 渝快办 platform over HTTP: resolves 渝快码 to accounts and tells whether an account exists."""

    def __init__(self, base_url: str, signer: RequestSigner, http: aiohttp.ClientSession, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._http = http
        self._timeout_s = timeout_s

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self._base}{path}"
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self._signer.sign(method, url, raw)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = await peers.call(self._http, method, url, raw, headers, self._timeout_s)
        except peers.PeerUnreachableError as exc:
            log.warning("yukuai platform unreachable", extra={"why": str(exc)})
            raise Refusal("issuer_unavailable", "the 渝快办 platform could not be reached") from exc
        if answer.status >= 500:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform answered {answer.status}")
        return answer.status, answer.body if isinstance(answer.body, dict) else {}

    async def resolve(self, code: str) -> str:
        """The account a 渝快码 belongs to; the platform uses the code up in the same step."""
        status, body = await self._call("POST", "/v1/codes/resolve", {"code": code})
        if status == 200 and isinstance(body.get("account_id"), str):
            return str(body["account_id"])
        refusal = _CODE_REFUSALS.get(str(body.get("code")))
        if refusal is None:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform could not resolve the code ({status})")
        raise Refusal(*refusal)

    async def account(self, account_id: str) -> Account | None:
        status, body = await self._call("GET", f"/v1/accounts/{account_id}")
        if status == 404:
            return None
        if status != 200 or body.get("account_id") != account_id:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform answered {status} for an account")
        return Account(account_id, str(body.get("status", "active")))
