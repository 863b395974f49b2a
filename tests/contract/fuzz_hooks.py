"""Schemathesis hooks for tests/contract/fuzz.py: sign each request as the route's kind of client, and tally answers.

Loaded by the schemathesis command through SCHEMATHESIS_HOOKS; the keys, ids and operator token come from the file
named by ECARD_FUZZ_CREDENTIALS, and every answer is appended to the file named by ECARD_FUZZ_TALLY (one JSON line).
"""

from __future__ import annotations

import json
import os
import random
import threading
from functools import cache
from pathlib import Path
from typing import Any

import requests
import schemathesis
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.hooks import HookContext

from ecard.kit.jwk import PrivateKey, load_private_jwk
from ecard.kit.signing import sign_request
from tests.contract.support import signers_for

# how often a path or query parameter is the id of a real thing (else schemathesis' own value is sent)
REAL_ID_SHARE = 0.5
# how often a signed route's request goes unsigned, so that the refusals are fuzzed too
UNSIGNED_SHARE = 0.05
_lock = threading.Lock()
_rng = random.Random(int(os.environ.get("ECARD_FUZZ_SEED", "0")))


@cache
def _credentials() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(Path(os.environ["ECARD_FUZZ_CREDENTIALS"]).read_text(encoding="utf-8"))
    return loaded


@cache
def _key(kind: str) -> tuple[PrivateKey, str, str]:
    entry = _credentials()["keys"][kind]
    key, alg = load_private_jwk(entry["jwk"])
    return key, entry["key_id"], alg


def signer_for(method: str, path: str) -> str | None:
    """One of the kinds of client a route is for, "operator" for a session, None for a public route."""
    kinds = signers_for(method, path)
    return _rng.choice(kinds) if kinds else None


class Signed(requests.auth.AuthBase):
    """Signs the request exactly as it goes out (its final URL and body bytes), as API.md describes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if not isinstance(body, str | bytes):
            raise TypeError("schemathesis sends whole bodies, not streams")
        raw = body.encode() if isinstance(body, str) else body
        key, key_id, alg = _key(self.kind)
        request.headers.update(sign_request(request.method or "GET", request.url or "", raw, key, key_id, alg))
        return request


# Routes that suspend, cancel or disable what they name: handed the spare parties, so that the others stay usable.
SPARING = ("/status", "/report-lost", "/close")


def _fresh_code() -> str | None:
    """A dynamic code just minted by the fuzz's phone, or None when the card gets none (it may be suspended)."""
    credentials = _credentials()
    url = f"{credentials['base']}/v1/codes"
    key, key_id, alg = _key("device")
    headers = {"Content-Type": "application/json", **sign_request("POST", url, b"{}", key, key_id, alg)}
    answer = requests.post(url, data=b"{}", headers=headers, timeout=10)
    code = answer.json().get("code") if answer.status_code == 201 else None
    return code if isinstance(code, str) else None


def _real_values(case: Case[Any]) -> None:
    credentials = _credentials()
    sparing = case.path.endswith(SPARING)
    ids = credentials["spare_ids"] if sparing else credentials["ids"]
    for values in (case.path_parameters, case.query):
        if isinstance(values, dict):
            for name in list(values):
                if name in ids and _rng.random() < REAL_ID_SHARE:
                    values[name] = ids[name]
                elif sparing and name in ids and values[name] == credentials["ids"].get(name):
                    # schemathesis reuses ids it saw in answers: never the parties the other routes need
                    values[name] = ids[name]
    if isinstance(case.body, dict):
        if "pin" in case.body and _rng.random() < REAL_ID_SHARE:
            case.body["pin"] = credentials["pin"]
        if "item_code" in case.body and _rng.random() < REAL_ID_SHARE:
            case.body["item_code"] = _rng.choice(("wl-030", "wl-011", "wl-043", "wl-022", "wl-013"))
        if "code" in case.body and _rng.random() < REAL_ID_SHARE and (code := _fresh_code()) is not None:
            case.body["code"] = code


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    _real_values(case)
    kind = signer_for(case.method.upper(), case.path)
    if kind == "operator":
        case.headers["Authorization"] = f"Bearer {_credentials()['token']}"
    elif kind is not None and _rng.random() >= UNSIGNED_SHARE:
        kwargs["auth"] = Signed(kind)


@schemathesis.hook
def after_call(context: HookContext, case: Case[Any], response: Response) -> None:
    request = response.request
    body = request.body or b""
    code = None
    if response.status_code >= 400:
        try:
            code = json.loads(response.content or b"{}").get("code")
        except (ValueError, AttributeError):
            code = None
    entry = {
        "operation": case.operation.label,
        "method": request.method,
        "url": request.url,
        "status": response.status_code,
        "code": code,
        "body": (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))[:2000],
    }
    with _lock, Path(os.environ["ECARD_FUZZ_TALLY"]).open("a", encoding="utf-8") as tally:
        tally.write(json.dumps(entry, ensure_ascii=False) + "\n")
