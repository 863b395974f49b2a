"""The 渝快办 adapter: the one place that speaks the platform's protocol (docs/yukuai-protocol.md)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ecard.kit.problems import Refusal

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

    def __init__(self, base_url: str, signer: RequestSigner, http: httpx.AsyncClient, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._http = http
        self._timeout_s = timeout_s

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = f"{self._base}{path}"
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self._signer.sign(method, url, raw)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = await self._http.request(method, url, content=raw, headers=headers, timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            log.warning("yukuai platform unreachable", extra={"why": type(exc).__name__})
            raise Refusal("issuer_unavailable", "the 渝快办 platform could not be reached") from exc
        if answer.status_code >= 500:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform answered {answer.status_code}")
        return answer

    async def resolve(self, code: str) -> str:
        """The account a 渝快码 belongs to; the platform uses the code up in the same step."""
        answer = await self._call("POST", "/v1/codes/resolve", {"code": code})
        body = _json(answer)
        if answer.status_code == 200 and isinstance(body.get("account_id"), str):
            return str(body["account_id"])
        refusal = _CODE_REFUSALS.get(str(body.get("code")))
        if refusal is None:
            raise Refusal(
                "issuer_unavailable", f"the 渝快办 platform could not resolve the code ({answer.status_code})"
            )
        raise Refusal(*refusal)

    async def account(self, account_id: str) -> Account | None:
        answer = await self._call("GET", f"/v1/accounts/{account_id}")
        if answer.status_code == 404:
            return None
        body = _json(answer)
        if answer.status_code != 200 or body.get("account_id") != account_id:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform answered {answer.status_code} for an account")
        return Account(account_id, str(body.get("status", "active")))


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
