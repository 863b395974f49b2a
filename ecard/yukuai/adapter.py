"""The 渝快办 adapter: the one place that speaks the platform's protocol (docs/yukuai-protocol.md)."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec

from ecard.kit import peers
from ecard.kit.refusal import Refusal
from ecard.yukuai.models import LinkProof, ResolvedCode

log = logging.getLogger("ecard.yukuai")

T = TypeVar("T")

# what the platform says about a 渝快码, and what a terminal is told for it
_CODE_REFUSALS = {
    "code_unknown": ("malformed_code", "the 渝快办 platform does not know this code"),
    "code_expired": ("code_expired", "the 渝快码 has expired; ask the holder to refresh it"),
    "code_used": ("code_already_used", "this 渝快码 has been used already"),
}
# what the platform says about a link token: to the holder, each means "get a fresh one in the 渝快办 app"
_TOKEN_REFUSALS = {"token_unknown", "token_expired", "token_used"}


class RequestSigner(Protocol):
    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]: ...


def check_platform_url(base_url: str) -> None:
    """Refuse a platform URL that is not https (plain http to a loopback stand-in alone): checked at start."""
    insecure = peers.insecure(base_url)
    if insecure is not None:
        raise ValueError(f"ECARD_YUKUAI_URL: {insecure}")


class YukuaiPlatform:
    """The 渝快办 platform over HTTP: resolves 渝快码 to accounts and redeems the link tokens it gave its users.

    Its answers are believed only in the shape the protocol gives them (anything else is `issuer_unavailable`),
    and only over https (plain http to a loopback stand-in alone)."""

    def __init__(self, base_url: str, signer: RequestSigner, http: aiohttp.ClientSession, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._http = http
        self._timeout_s = timeout_s

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> peers.PeerAnswer:
        url = f"{self._base}{path}"
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **self._signer.sign(method, url, raw)}
        try:
            answer = await peers.call(self._http, method, url, raw, headers, self._timeout_s)
        except peers.PeerUnreachableError as exc:
            log.warning("yukuai platform unreachable", extra={"why": str(exc)})
            raise Refusal("issuer_unavailable", "the 渝快办 platform could not be reached") from exc
        if answer.status >= 500:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform answered {answer.status}")
        return answer

    @staticmethod
    def _read(answer: peers.PeerAnswer, shape: type[T]) -> T:
        try:
            return msgspec.json.decode(answer.raw, type=shape)
        except msgspec.DecodeError as exc:
            log.warning("yukuai platform answer refused", extra={"status": answer.status})
            raise Refusal("issuer_unavailable", "the 渝快办 platform answered what it may not") from exc

    @staticmethod
    def _code(answer: peers.PeerAnswer) -> str | None:
        code = answer.body.get("code") if isinstance(answer.body, dict) else None
        return code if isinstance(code, str) else None

    async def resolve(self, code: str) -> str:
        """The account a 渝快码 belongs to; the platform uses the code up in the same step."""
        answer = await self._call("POST", "/v1/codes/resolve", {"code": code})
        if answer.status == 200:
            return self._read(answer, ResolvedCode).account_id
        refusal = _CODE_REFUSALS.get(self._code(answer) or "")
        if refusal is None:
            raise Refusal("issuer_unavailable", f"the 渝快办 platform could not resolve the code ({answer.status})")
        raise Refusal(*refusal)

    async def redeem_link_token(self, link_token: str) -> LinkProof:
        """Whose account a link token proves, with its real name; the platform uses the token up in the same step."""
        answer = await self._call("POST", "/v1/link-tokens/redeem", {"link_token": link_token})
        if answer.status == 200:
            return self._read(answer, LinkProof)
        if self._code(answer) in _TOKEN_REFUSALS:
            raise Refusal(
                "link_token_invalid",
                "the 渝快办 platform does not vouch for this link token (unknown, expired or used): get a fresh one",
                extra={"fields": ["link_token"]},
            )
        raise Refusal("issuer_unavailable", f"the 渝快办 platform could not redeem the link token ({answer.status})")
